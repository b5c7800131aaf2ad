"""The local Vertex AI server: the REST v1 methods droptune uses, on 127.0.0.1.

    with VertexServer(Path("state"), env={"STORAGE_EMULATOR_HOST": gcs.url}) as vertex:
        client = aiplatform_v1.JobServiceClient(
            transport="rest", client_options={"api_endpoint": vertex.url},
            credentials=AnonymousCredentials())

It speaks the API the Python clients (`transport="rest"`) and Cloud Workflows connectors
speak: the aiplatform v1 JSON, long-running operations, and Google's error shape.

The HTTP layer is the standard library's `ThreadingHTTPServer`, not FastAPI/uvicorn: every
handler is a few dictionary look-ups under a lock (or, for predict, one blocking call to a
serving process), so a thread per connection answers many concurrent polls quickly; the
server starts and stops synchronously in the caller's thread with no event loop to manage;
and it needs no dependency beyond google-cloud-aiplatform's protobuf types.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from droptune.config import DEFAULT_CUSTOM_MODEL
from droptune.local.storage_emulator import free_port
from droptune.local.vertex import fields
from droptune.local.vertex.emulation import EmulatedTuning
from droptune.local.vertex.endpoints import Endpoints
from droptune.local.vertex.errors import ApiError, invalid
from droptune.local.vertex.jobs import CustomJobs
from droptune.local.vertex.models import Models
from droptune.local.vertex.routing import Request, Route, Runtime
from droptune.local.vertex.tuning import Tuner, TuningJobs
from droptune.log import get_logger

log = get_logger("droptune.local.vertex")
DEPLOY_TIMEOUT = 1200.0  # seconds a model may take to become healthy, unless it says otherwise
STOP_GRACE = 5.0  # seconds a process gets between SIGTERM and SIGKILL when the server stops


class VertexServer:
    """Vertex AI's REST API on 127.0.0.1:`port`; state and logs under `root`.

    `env` is added to the environment of every job and serving process it starts (droptune
    passes STORAGE_EMULATOR_HOST, GOOGLE_CLOUD_PROJECT and the like). Gemini tuning jobs and
    `generateContent` go to `tuner`; by default they are emulated with `standin`, a small
    open model (`DROPTUNE_EMULATED_GEMINI` in `env`, else droptune's default base model).
    """

    def __init__(
        self,
        root: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        deploy_timeout: float = DEPLOY_TIMEOUT,
        tuner: Tuner | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime = Runtime(self.root, dict(env or {}))
        self.jobs = CustomJobs(self.runtime)
        self.models = Models(self.runtime)
        self.endpoints = Endpoints(self.runtime, self.models, deploy_timeout)
        standin = self.runtime.env.get("DROPTUNE_EMULATED_GEMINI") or DEFAULT_CUSTOM_MODEL
        self.tuning = TuningJobs(
            self.runtime, tuner or EmulatedTuning(self.runtime, standin, deploy_timeout)
        )
        self.routes: list[Route] = [
            *self.jobs.routes(),
            *self.models.routes(),
            *self.endpoints.routes(),
            *self.tuning.routes(),
            # The Python clients' operations stub polls under /ui/, the connectors under /v1/.
            Route.of(
                "GET", r"/(?:v1|ui)/(?P<name>projects/[^:]+/operations/[^/:]+)", self._operation
            ),
        ]
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> VertexServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._http = _HttpServer(("127.0.0.1", self.port), _Handler)
        self._http.vertex = self
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        log.info("local vertex ai server started", url=self.url, root=str(self.root))
        return self

    def stop(self) -> None:
        """Stop answering, then stop every job and serving process (their process groups)."""
        self.runtime.stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.jobs.stop_all(STOP_GRACE)
        self.endpoints.stop_all(STOP_GRACE)
        self.tuning.stop_all(STOP_GRACE)
        log.info("local vertex ai server stopped", url=self.url)

    def __enter__(self) -> VertexServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) of one request."""
        url = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(url.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        known_path = False
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            known_path = True
            if route.method == method:
                try:
                    request = Request(method, path, match.groupdict(), query, _decode(body))
                    answer = route.handler(request)
                    if "fields" in query:  # a partial response (fields.py)
                        answer = fields.select(answer, query["fields"])
                    return 200, answer
                except ApiError as exc:
                    return exc.http_status, exc.body()
        if known_path:
            return 405, ApiError("UNIMPLEMENTED", f"{method} is not allowed on {path}.").body()
        return 404, ApiError(
            "NOT_FOUND", f"The local Vertex AI server has no method at {method} {path}."
        ).body()

    def _operation(self, request: Request) -> dict[str, Any]:
        return self.runtime.operations.get(request.params["name"])


def _decode(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise invalid(f"Invalid JSON payload received. {exc}") from None


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many workflow steps and clients poll at once
    vertex: VertexServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, answer = self.server.vertex.handle(self.command, self.path, body)
        except Exception as exc:  # a bug here must still answer, in Google's shape
            log.error("request failed", exc_info=True, path=self.path)
            status, answer = 500, ApiError("INTERNAL", f"Internal error: {exc}").body()
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per poll would drown the state-change logs
