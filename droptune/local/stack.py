"""The local stack: a droptune deployment's services on one machine, wired as in the cloud.

    upload ─▶ fake-gcs-server ─(OBJECT_FINALIZE notification)─▶ event bus
    event bus ─(storage.object.v1.finalized CloudEvent, HTTP)─▶ upload function
              (functions-framework serving functions/main.py, unchanged)
    upload function ─(Pub/Sub Publish, gRPC)─▶ event bus
    event bus ─(Eventarc Pub/Sub CloudEvent)─▶ workflow engine running
              workflows/pipeline.workflows.yaml
    workflow ─(googleapis.storage.*)─▶ fake-gcs-server
             ─(googleapis.aiplatform.*, tuningJobs)─▶ local Vertex AI server ─▶ trainer and
                                                      serving processes
             ─(HTTP)─▶ evaluation function (functions/main.py `evaluate`, gemini runs)
                       ─(google-genai)─▶ local Vertex AI server (emulated Gemini)

Real: the function's code, the workflow file, the trainer and serving entry points, the
Cloud Storage and Pub/Sub client libraries and wire protocols. Stand-ins: the storage
emulator, the bus (Pub/Sub + Eventarc), the engine (Workflows), the Vertex AI server (jobs
and endpoints as local processes; machine types and images are recorded, not used; Gemini
tuning emulated by a small open model, and labelled so).

Everything lives under one folder (`StackConfig.home`): `state.json` (ports, pid), logs,
the Vertex server's job and endpoint folders, and each workflow execution's record.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

import droptune
from droptune.local import processes
from droptune.local.bus import EventBus, Message, RetryPolicy
from droptune.local.bus.events import (
    binary_http,
    is_finalize_notification,
    storage_finalized_event,
    workflow_argument,
)
from droptune.local.home import UNDELIVERED, StackConfig, StackError, StackState
from droptune.local.processes import Process
from droptune.local.storage_emulator import StorageEmulator, free_port
from droptune.local.vertex import VertexServer
from droptune.local.workflows.engine import Engine, Execution, load_workflow
from droptune.local.workflows.stdlib import Runtime, json_encode_to_string
from droptune.log import get_logger

log = get_logger("droptune.local.stack")
REPO = Path(droptune.__file__).resolve().parents[1]
FUNCTION_SOURCE = REPO / "functions" / "main.py"
PIPELINE = REPO / "workflows" / "pipeline.workflows.yaml"


class LocalStack:
    """Starts, wires and stops the local services. `start()` returns when all answer."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.home = config.home
        self.bus = EventBus(retry=RetryPolicy(max_attempts=5, initial_backoff=1.0))
        self.storage = StorageEmulator(
            root=self.home / "storage",
            pubsub_project=config.project,
            pubsub_topic=config.notifications_topic,
            notify_bucket=config.uploads_bucket,
            env={"PUBSUB_EMULATOR_HOST": self.bus.host},
        )
        self.vertex = VertexServer(self.home / "vertex", env=self.service_env())
        self.function_port = free_port()
        self.function: Process | None = None
        self.evaluation_port = free_port()
        self.evaluation: Process | None = None
        self.executions: dict[str, Execution] = {}
        self._threads: list[threading.Thread] = []
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}  # the upload function's failures per notification

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> LocalStack:
        self.home.mkdir(parents=True, exist_ok=True)
        for path in (FUNCTION_SOURCE, PIPELINE):
            if not path.is_file():
                raise StackError(f"{path} is missing: run droptune local from a droptune checkout")
        self.workflow = load_workflow(str(PIPELINE))
        try:
            self.bus.start()
            for name in (self.config.notifications_topic, self.config.runs_topic):
                self.bus.create_topic(self.config.topic(name), exist_ok=True)
            self.storage.start()
            self._create_buckets()
            self.vertex.start()
            # Both at once: the upload function's start is the longer (it preloads a tokenizer).
            self.function = self._start_function(
                "on_upload", "cloudevent", self.function_port, self.function_env(), "function"
            )
            self.evaluation = self._start_function(
                "evaluate", "http", self.evaluation_port, self.evaluation_env(), "evaluation"
            )
            self._wait_answering(self.function, self.function_port, "function")
            self._wait_answering(self.evaluation, self.evaluation_port, "evaluation")
        except BaseException:
            self.stop()
            raise
        self.bus.subscribe(
            self.config.topic(self.config.notifications_topic), self._to_function, name="upload"
        )
        self.bus.subscribe(
            self.config.topic(self.config.runs_topic), self._start_execution, name="pipeline"
        )
        log.info("local stack up", **asdict(self.state()))
        return self

    def stop(self) -> None:
        for function in (self.function, self.evaluation):
            if function is not None:
                function.stop()
        self.vertex.stop()  # also ends training and serving processes
        self.bus.stop()
        self.storage.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def state(self) -> StackState:
        return StackState(
            pid=os.getpid(),
            storage=self.storage.url,
            pubsub=self.bus.host,
            vertex=self.vertex.url,
            function=f"http://127.0.0.1:{self.function_port}",
            project=self.config.project,
            location=self.config.location,
            uploads_bucket=self.config.uploads_bucket,
            runs_bucket=self.config.runs_bucket,
            started_at=time.time(),
        )

    def wait_idle(self, timeout: float) -> bool:
        """Wait for every delivered message and every workflow execution to finish."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.bus.wait_idle(max(0.0, deadline - time.monotonic())):
                return False
            running = [t for t in self._threads if t.is_alive()]
            if not running:
                return True
            for thread in running:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return False

    # --- environments -------------------------------------------------------------------
    def service_env(self) -> dict[str, str]:
        """What every local process sees: the emulators, in place of Google's services."""
        return {
            "STORAGE_EMULATOR_HOST": self.storage.url,
            "PUBSUB_EMULATOR_HOST": self.bus.host,
            "GOOGLE_CLOUD_PROJECT": self.config.project,
            "GOOGLE_CLOUD_LOCATION": self.config.location,
            "PYTHONUNBUFFERED": "1",
        }

    def function_env(self) -> dict[str, str]:
        """The upload function's settings, as Terraform sets them in the cloud."""
        return {
            **self.service_env(),
            "DROPTUNE_UPLOADS_BUCKET": self.config.uploads_bucket,
            "DROPTUNE_RUNS_BUCKET": self.config.runs_bucket,
            "DROPTUNE_TOPIC": self.config.topic(self.config.runs_topic),
            "DROPTUNE_PRELOAD_TOKENIZER": "true",
        }

    def evaluation_env(self) -> dict[str, str]:
        """The Gemini evaluation function's settings: google-genai on the local Vertex server."""
        return {
            **self.service_env(),
            "DROPTUNE_RUNS_BUCKET": self.config.runs_bucket,
            "DROPTUNE_VERTEX_API": self.vertex.url,
            "GOOGLE_GENAI_USE_VERTEXAI": "true",
        }

    def workflow_env(self) -> dict[str, str]:
        """The workflow's variables: the service's own and droptune's deployment settings."""
        return {
            "GOOGLE_CLOUD_PROJECT_ID": self.config.project,
            "GOOGLE_CLOUD_LOCATION": self.config.location,
            "GOOGLE_CLOUD_WORKFLOW_ID": "droptune-pipeline",
            "DROPTUNE_RUNS_BUCKET": self.config.runs_bucket,
            "DROPTUNE_TRAINER_IMAGE": "droptune-trainer:local",
            "DROPTUNE_VERTEX_API": self.vertex.url,
            "DROPTUNE_POLL_SECONDS": "1",  # local jobs are short and polls are free
            "DROPTUNE_POLL_MAX_SECONDS": "5",
            "DROPTUNE_EVALUATION_URL": f"http://127.0.0.1:{self.evaluation_port}/",
        }

    # --- services -----------------------------------------------------------------------
    def _create_buckets(self) -> None:
        for bucket in (self.config.uploads_bucket, self.config.runs_bucket):
            request = urllib.request.Request(
                f"{self.storage.url}/storage/v1/b?project={self.config.project}",
                data=json.dumps({"name": bucket}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as exc:
                if exc.code != 409:  # already there (a persistent storage folder)
                    raise

    def _start_function(
        self, target: str, signature: str, port: int, env: dict[str, str], name: str
    ) -> Process:
        """functions-framework serving one function of functions/main.py (started, not yet
        answering: see `_wait_answering`)."""
        return Process.start(
            [
                sys.executable, "-m", "functions_framework",
                "--source", str(FUNCTION_SOURCE),
                "--target", target,
                "--signature-type", signature,
                "--host", "127.0.0.1",
                "--port", str(port),
            ],
            {**os.environ, **env},
            self.home / f"{name}.log",
        )  # fmt: skip

    def _wait_answering(self, process: Process, port: int, name: str) -> None:
        log_file = self.home / f"{name}.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"the {name} process exited while starting; see {log_file}")
            try:  # any answer will do; the first one may wait for imports
                self._session.get(f"http://127.0.0.1:{port}/", timeout=10)
                return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        process.stop()
        raise StackError(f"the {name} function did not start; see {log_file}")

    # --- event routing ------------------------------------------------------------------
    def _to_function(self, event: dict[str, Any]) -> None:
        """A storage notification, as Eventarc delivers it: a finalized CloudEvent over HTTP."""
        message = Message.from_event(event)
        if not is_finalize_notification(message):
            return
        try:
            headers, body = binary_http(storage_finalized_event(message))
            response = self._session.post(
                f"http://127.0.0.1:{self.function_port}/", data=body, headers=headers, timeout=900
            )
            response.raise_for_status()  # the bus redelivers, as Eventarc retries a failed push
        except Exception as exc:
            self._failed_delivery(message, exc)
            raise

    def _failed_delivery(self, message: Message, exc: Exception) -> None:
        """Count the function's failures on a notification; at the last attempt the bus
        makes, record the object in undelivered.jsonl (`local run` reports it from there)."""
        with self._lock:
            attempts = self._failures[message.id] = self._failures.get(message.id, 0) + 1
        if attempts < self.bus.retry.max_attempts:
            return
        attributes = message.attributes
        entry = {
            "object": f"gs://{attributes.get('bucketId')}/{attributes.get('objectId')}",
            "generation": attributes.get("objectGeneration"),
            "attempts": attempts,
            "error": str(exc)[:500],
        }
        with self._lock, (self.home / UNDELIVERED).open("a") as records:
            records.write(json.dumps(entry) + "\n")

    def _start_execution(self, event: dict[str, Any]) -> None:
        """A run message starts a workflow execution, as an Eventarc Workflows trigger does."""
        message = Message.from_event(event)
        run_id = message.attributes.get("run_id", message.id)
        thread = threading.Thread(
            target=self._execute, args=(run_id, message.id, event), name=f"workflow-{run_id}"
        )
        self._threads.append(thread)
        thread.start()

    def _execute(self, run_id: str, message_id: str, event: dict[str, Any]) -> None:
        # Like the service, each execution knows its own id (the workflow marks its writes).
        execution_id = f"{run_id}-{message_id}"
        runtime = Runtime(
            env={**self.workflow_env(), "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": execution_id},
            connector_roots={"storage": self.storage.url, "aiplatform": self.vertex.url},
        )
        started = time.time()
        execution = Engine(self.workflow, runtime).run(workflow_argument(event))
        self.executions[f"{run_id}/{message_id}"] = execution
        record = {
            "run_id": run_id,
            "message_id": message_id,
            "state": execution.state,
            "result": execution.result,
            "error": execution.error,
            "context": execution.context,
            "steps": execution.step_count,
            "started_at": started,
            "seconds": time.time() - started,
            "logs": execution.logs,
        }
        folder = self.home / "executions"
        folder.mkdir(exist_ok=True)
        (folder / f"{run_id}-{message_id}.json").write_text(json_encode_to_string(record))
        severity = log.info if execution.state == "SUCCEEDED" else log.error
        severity(f"workflow execution {execution.state}", run_id=run_id, steps=execution.step_count)


def serve(home: Path) -> None:
    """Run the stack in this process until SIGTERM/SIGINT (`droptune local up` starts this)."""
    processes.record_in(home / "processes")  # what a killed stack leaves, `down` stops
    stack = LocalStack(StackConfig(home=home))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack.start()
    state_file = home / "state.json"
    try:
        state_file.write_text(json.dumps(asdict(stack.state()), indent=2))
        stop.wait()
    finally:
        state_file.unlink(missing_ok=True)
        stack.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
