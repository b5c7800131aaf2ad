"""One deployed model's serving process: started on a free port, ready once its health route
answers 200, and the target of the predictions forwarded to it.

The process follows Vertex AI's custom container contract: it reads `AIP_HTTP_PORT`,
`AIP_HEALTH_ROUTE`, `AIP_PREDICT_ROUTE` and `AIP_STORAGE_URI`. The routes default to
Vertex's `/v1/endpoints/ENDPOINT/deployedModels/DEPLOYED_MODEL` (health) and the same with
`:predict` (predictions), as the custom-container requirements describe. Vertex's API
reference gives `:predict` for the health default too; containers that rely on the default
read AIP_HEALTH_ROUTE anyway. The port is a free one, not `containerSpec.ports[0]`: several
models share this machine.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from droptune.local.processes import Process
from droptune.local.storage_emulator import free_port
from droptune.local.vertex import schema
from droptune.local.vertex.errors import ApiError, status_for_http
from droptune.local.vertex.processes import container_argv, process_env

PREDICT_TIMEOUT = 600.0  # seconds: a small model generating on a CPU is slow
HEALTH_POLL = 0.1  # seconds between health checks while a model starts


class StartFailed(Exception):
    """The serving process exited or never became healthy; the message says which."""


@dataclass
class Serving:
    """A running serving process of one deployed model."""

    deployed_model_id: str
    process: Process
    port: int
    health_route: str
    predict_route: str

    @classmethod
    def start(
        cls,
        model: Any,
        endpoint_name: str,
        deployed_model_id: str,
        runtime_env: dict[str, str],
        log_path: Path,
        machine_type: str,
    ) -> Serving:
        spec = model.container_spec
        endpoint_id = endpoint_name.rsplit("/", 1)[1]
        default_route = f"/v1/endpoints/{endpoint_id}/deployedModels/{deployed_model_id}"
        port = free_port()
        health_route = spec.health_route or default_route
        predict_route = spec.predict_route or default_route + ":predict"
        vertex = {
            "AIP_HTTP_PORT": str(port),
            "AIP_HEALTH_ROUTE": health_route,
            "AIP_PREDICT_ROUTE": predict_route,
            "AIP_STORAGE_URI": model.artifact_uri,
            "AIP_ENDPOINT_ID": endpoint_id,
            "AIP_DEPLOYED_MODEL_ID": deployed_model_id,
            "AIP_PROJECT_NUMBER": endpoint_name.split("/")[1],
            "AIP_MACHINE_TYPE": machine_type,
            "AIP_MODE": "PREDICTION",
            "AIP_MODE_VERSION": "1.0.0",
        }
        env = process_env(runtime_env, schema.env_list(spec.env), vertex)
        argv = container_argv(list(spec.command), list(spec.args), env)
        try:
            process = Process.start(argv, env, log_path, log_path.parent / "work")
        except OSError as exc:
            raise StartFailed(f"The serving container could not start: {exc}") from None
        return cls(deployed_model_id, process, port, health_route, predict_route)

    def wait_healthy(self, timeout: float, stopping: Any) -> None:
        """Return once the health route answers 200; StartFailed if the process exits first,
        or `timeout` seconds pass, or `stopping` (an Event) is set."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stopping.is_set():
            status = self.process.poll()
            if status is not None:
                raise StartFailed(
                    f"The serving container exited with status {status} before it was healthy. "
                    f"Last lines of its output:\n{self.process.tail()}"
                )
            if self._healthy():
                return
            time.sleep(HEALTH_POLL)
        raise StartFailed(
            f"The serving container did not answer {self.health_route} with 200 within "
            f"{timeout:g} s. Last lines of its output:\n{self.process.tail()}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self._url(self.health_route), timeout=2) as answer:
                return answer.status == 200
        except (OSError, ValueError):
            return False

    def predict(self, instances: Any, parameters: Any) -> Any:
        """The container's `predictions` for `instances`; its errors as ApiError."""
        return self.call(instances, parameters)["predictions"]

    def call(self, instances: Any, parameters: Any) -> dict[str, Any]:
        """The container's whole answer (`predictions`, and `metadata` if it sends any)."""
        payload: dict[str, Any] = {"instances": instances}
        if parameters is not None:
            payload["parameters"] = parameters
        request = urllib.request.Request(
            self._url(self.predict_route),
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=PREDICT_TIMEOUT) as answer:
                body = answer.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:2000]
            raise ApiError(
                status_for_http(exc.code), f"The model's container answered {exc.code}: {text}"
            ) from None
        except OSError as exc:
            raise ApiError("UNAVAILABLE", f"The model's container did not answer: {exc}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "predictions" not in answer:
            raise ApiError(
                "INTERNAL",
                f"The model's container answered without JSON predictions: {body[:500]!r}",
            ) from None
        return answer

    def _url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.port}{route}"
