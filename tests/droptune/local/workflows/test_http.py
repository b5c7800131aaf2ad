"""`http.*` and `googleapis.*` connectors against real local servers: a small HTTP server for
the http functions and long-running operations, fake-gcs-server for the Cloud Storage API."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from droptune.local.workflows.engine import Engine, parse_workflow
from droptune.local.workflows.stdlib import Runtime, VirtualClock


class Api(BaseHTTPRequestHandler):
    """/json, /text, /bytes, /sized?bytes=N (N bytes of text), /flaky (503 twice, then 200),
    /slow, /echo (POST), and a Vertex-style long-running operation for models:upload."""

    protocol_version = "HTTP/1.1"
    calls: ClassVar[dict[str, int]] = {}
    polls = 0

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        Api.calls[path] = Api.calls.get(path, 0) + 1
        if path == "/json":
            self.reply(200, json.dumps({"ok": True, "query": self.path.partition("?")[2]}).encode())
        elif path == "/text":
            self.reply(200, b"plain words", "text/plain; charset=utf-8")
        elif path == "/bytes":
            self.reply(200, b"\x00\x01", "application/octet-stream")
        elif path == "/sized":
            size = int(self.path.partition("bytes=")[2])
            self.reply(200, b"x" * size, "text/plain; charset=utf-8")
        elif path == "/flaky":
            code = 503 if Api.calls[path] <= 2 else 200
            self.reply(code, json.dumps({"attempt": Api.calls[path]}).encode())
        elif path == "/missing":
            self.reply(404, json.dumps({"error": "no such thing"}).encode())
        elif path == "/slow":
            time.sleep(1.0)
            with contextlib.suppress(BrokenPipeError):  # the caller has timed out and gone
                self.reply(200, b"{}")
        elif path.startswith("/v1/projects/p/locations/l/operations/"):
            Api.polls += 1
            done = Api.polls >= 2
            failed = path.endswith("/bad")
            operation = {"name": path[len("/v1/") :], "done": done}
            if done:
                operation["error" if failed else "response"] = (
                    {"code": 3, "message": "bad model"}
                    if failed
                    else {"model": "projects/p/locations/l/models/7"}
                )
            self.reply(200, json.dumps(operation).encode())
        else:
            self.reply(404, b"{}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/v1/projects/p/locations/l/models:upload"):
            payload = json.loads(body)
            suffix = "bad" if payload["model"].get("displayName") == "bad" else "ok"
            operation = {"name": f"projects/p/locations/l/operations/{suffix}", "done": False}
            self.reply(200, json.dumps(operation).encode())
            return
        self.reply(
            200,
            json.dumps({"got": json.loads(body), "type": self.headers["Content-Type"]}).encode(),
        )


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(text: str, runtime: Runtime | None = None, argument=None):
    runtime = runtime or Runtime(clock=VirtualClock())
    return Engine(parse_workflow(text), runtime).run(argument)


def test_get_json_text_and_bytes(api):
    execution = run(
        f"""
- j: {{call: http.get, args: {{url: "{api}/json", query: {{a: 1, b: true}}}}, result: j}}
- t: {{call: http.get, args: {{url: "{api}/text"}}, result: t}}
- b: {{call: http.get, args: {{url: "{api}/bytes"}}, result: b}}
- r: {{return: ["${{j.code}}", "${{j.body}}", "${{t.body}}", "${{len(b.body)}}"]}}
"""
    )
    assert execution.state == "SUCCEEDED", execution.error
    assert execution.result == [200, {"ok": True, "query": "a=1&b=true"}, "plain words", 2]


def test_post_sends_maps_as_json(api):
    execution = run(
        f'- p: {{call: http.post, args: {{url: "{api}/echo", body: {{x: [1]}}}}, result: r}}\n- r: {{return: "${{r.body}}"}}\n'
    )
    assert execution.result == {"got": {"x": [1]}, "type": "application/json"}


def test_http_error_map(api):
    execution = run(f'- g: {{call: http.get, args: {{url: "{api}/missing"}}}}\n')
    assert execution.state == "FAILED"
    assert execution.error["tags"] == ["HttpError"]
    assert execution.error["code"] == 404
    assert execution.error["body"] == {"error": "no such thing"}
    assert execution.error["message"] == "HTTP server responded with error code 404"


def test_default_retry_rides_out_503s(api):
    Api.calls.pop("/flaky", None)
    clock = VirtualClock()
    text = f"""
- t:
    try:
      call: http.get
      args: {{url: "{api}/flaky"}}
      result: r
    retry: ${{http.default_retry}}
- r: {{return: "${{r.body.attempt}}"}}
"""
    execution = run(text, Runtime(clock=clock))
    assert execution.result == 3
    assert clock.now() - 1_700_000_000 == pytest.approx(1 + 1.25)


def test_a_response_over_2_mb_fails_the_execution(api):
    """The service takes a response of at most 2 MB (limits.py); a larger one is a
    ResourceLimitError that no except catches."""
    text = f"""
- t:
    try:
      call: http.get
      args: {{url: "{api}/sized?bytes={2 * 1024 * 1024 + 1}"}}
    except:
      steps:
        - caught: {{return: caught}}
"""
    execution = run(text)
    assert execution.error["tags"] == ["ResourceLimitError"]
    assert "2,097,153 bytes, more than the 2,097,152 (2 MB)" in execution.error["message"]


def test_a_response_fits_in_2_mb_but_a_variable_only_in_512_kb(api):
    text = '- g: {{call: http.get, args: {{url: "{api}/sized?bytes={size}"}}, result: r}}\n- r: {{return: "${{len(r.body)}}"}}\n'
    assert run(text.format(api=api, size=400 * 1024)).result == 400 * 1024
    too_big = run(text.format(api=api, size=1024 * 1024))
    assert too_big.error == {
        "message": "Memory usage limit exceeded",
        "tags": ["ResourceLimitError"],
    }
    assert too_big.context.startswith("in step 'g' (line 1)")


def test_connection_refused_and_timeout(api):
    from tests.support.emulators import free_port

    refused = run(f'- g: {{call: http.get, args: {{url: "http://127.0.0.1:{free_port()}/"}}}}\n')
    assert refused.error["tags"] == ["ConnectionFailedError"]
    slow = run(f'- g: {{call: http.get, args: {{url: "{api}/slow", timeout: 0.2}}}}\n')
    assert slow.error["tags"] == ["TimeoutError"]


def test_vertex_connector_waits_for_the_operation(api):
    Api.polls = 0
    clock = VirtualClock()
    runtime = Runtime(clock=clock, connector_roots={"aiplatform": api})
    text = """
- up:
    call: googleapis.aiplatform.v1.projects.locations.models.upload
    args:
      parent: projects/p/locations/l
      region: l
      body: {model: {displayName: ok, artifactUri: "gs://runs/r/model"}}
      connector_params: {polling_policy: {initial_delay: 5, multiplier: 2, max_delay: 30}}
    result: done
- r: {return: "${done.model}"}
"""
    execution = run(text, runtime)
    assert execution.state == "SUCCEEDED", execution.error
    assert execution.result == "projects/p/locations/l/models/7"
    assert clock.now() - 1_700_000_000 == pytest.approx(5 + 10)


def test_vertex_connector_skip_polling_and_failed_operation(api):
    runtime = Runtime(clock=VirtualClock(), connector_roots={"aiplatform": api})
    base = """
- up:
    call: googleapis.aiplatform.v1.projects.locations.models.upload
    args:
      parent: projects/p/locations/l
      body: {model: {displayName: NAME}}
      connector_params: PARAMS
    result: op
- r: {return: "${op}"}
"""
    skipped = run(base.replace("NAME", "ok").replace("PARAMS", "{skip_polling: true}"), runtime)
    assert skipped.result == {"name": "projects/p/locations/l/operations/ok", "done": False}
    Api.polls = 0
    failed = run(base.replace("NAME", "bad").replace("PARAMS", "{}"), runtime)
    assert failed.error["tags"] == ["OperationError"]
    assert "bad model" in failed.error["message"]


def test_unknown_connector_method_is_a_clear_error():
    execution = run("- c: {call: googleapis.storage.v1.objects.explode, args: {bucket: b}}\n")
    assert execution.error["tags"] == ["KeyError"]
    assert "no method 'explode'" in execution.error["message"]


def test_storage_connector_on_fake_gcs_server(gcs_bucket, gcs_server):
    runtime = Runtime(clock=VirtualClock(), connector_roots={"storage": gcs_server.url})
    text = f"""
- put:
    call: googleapis.storage.v1.objects.insert
    args:
      bucket: {gcs_bucket.name}
      name: runs/r1/status.json
      uploadType: media
      body: {{state: QUEUED, history: [{{state: VALIDATING}}]}}
    result: written
- meta:
    call: googleapis.storage.v1.objects.get
    args: {{bucket: {gcs_bucket.name}, object: runs%2Fr1%2Fstatus.json}}
    result: meta
- data:
    call: googleapis.storage.v1.objects.get
    args: {{bucket: {gcs_bucket.name}, object: '${{text.url_encode("runs/r1/status.json")}}', alt: media}}
    result: data
- r: {{return: ["${{written.name}}", "${{meta.size}}", "${{data.state}}"]}}
"""
    execution = run(text, runtime)
    assert execution.state == "SUCCEEDED", execution.error
    name, size, state = execution.result
    assert name == "runs/r1/status.json" and state == "QUEUED"
    stored = json.loads(gcs_bucket.blob("runs/r1/status.json").download_as_bytes())
    assert stored == {"state": "QUEUED", "history": [{"state": "VALIDATING"}]}
    assert int(size) == len(gcs_bucket.get_blob("runs/r1/status.json").download_as_bytes())
    missing = run(
        f"- g: {{call: googleapis.storage.v1.objects.get, args: {{bucket: {gcs_bucket.name}, object: nope}}}}\n",
        runtime,
    )
    assert missing.error["tags"] == ["HttpError"] and missing.error["code"] == 404
    # As Cloud Workflows sends it, a name with a slash would address another path: refused.
    raw = run(
        f"- g: {{call: googleapis.storage.v1.objects.get, args: {{bucket: {gcs_bucket.name}, object: runs/r1/status.json}}}}\n",
        runtime,
    )
    assert raw.error["tags"] == ["ValueError"] and "text.url_encode" in raw.error["message"]


@pytest.mark.parametrize("name", ["runs/r1.json", "what?.json", "a#b.json", "two words.json"])
def test_a_path_value_that_would_change_the_url_is_refused(name):
    from droptune.local.workflows.connectors import expand
    from droptune.local.workflows.errors import WorkflowRaise

    with pytest.raises(WorkflowRaise) as raised:
        expand("b/{bucket}/o/{object}", {"bucket": "b", "object": name}, set())
    assert raised.value.value["tags"] == ["ValueError"]
    assert "text.url_encode" in raised.value.value["message"]
    encoded = expand("b/{bucket}/o/{object}", {"bucket": "b", "object": "runs%2Fr1.json"}, set())
    assert encoded == "b/b/o/runs%2Fr1.json"
