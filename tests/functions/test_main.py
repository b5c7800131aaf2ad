"""The upload function as the platform runs it: real CloudEvents posted to functions-framework
(its test client, and once its server process), real Cloud Storage (fake-gcs-server) and
Google's Pub/Sub emulator. Token counts use the default base model's real tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import yaml
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from droptune.issues import CATALOGUE, Severity
from droptune.runs import RUN_ID
from tests.support.emulators import free_port, wait_for_port

ROOT = Path(__file__).parents[2]
SOURCE = ROOT / "functions" / "main.py"
EXAMPLE = (ROOT / "droptune" / "examples" / "chat.jsonl").read_text()
FIXTURES = ROOT / "tests" / "fixtures" / "invalid"
DATASETS = (ROOT / ".." / "shared" / "datasets").resolve()
FINALIZED = "google.cloud.storage.object.v1.finalized"

# Known-bad files others wrote: (path, run config, code, line) — see test_shared_datasets.py.
BAD_DATASETS = [
    ("lamini_docs/lamini_docs.jsonl", {}, "empty_text", 424),
    ("openai_cookbook/toy_chat_fine_tuning.jsonl", {}, "first_turn_not_user", 4),
    (
        "llamafactory/glaive_toolcall_en_demo.json",
        {"backend": "gemini"},
        "tool_calls_unsupported",
        2,
    ),
    ("llamafactory/dataset_info.json", {}, "json_syntax", 1),
]


def finalize_event(resource: dict, event_type: str = FINALIZED) -> CloudEvent:
    """The CloudEvent Eventarc sends for a new object in a bucket."""
    bucket, name = resource["bucket"], resource["name"]
    attributes = {
        "type": event_type,
        "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "subject": f"objects/{name}",
        "id": f"{bucket}/{name}/{resource['generation']}",
    }
    return CloudEvent(attributes, resource)


@pytest.fixture(scope="module")
def app():
    return create_app(target="on_upload", source=str(SOURCE), signature_type="cloudevent")


@pytest.fixture
def post(app):
    def send(resource: dict, binary: bool = False, event_type: str = FINALIZED):
        headers, body = (to_binary if binary else to_structured)(
            finalize_event(resource, event_type)
        )
        return app.test_client().post("/", headers=headers, data=body)

    return send


@pytest.mark.slow
def test_structured_and_binary_events_queue_a_run(dropzone, post):
    for binary in (False, True):
        resource = dropzone.upload(f"mode-{binary}/chat.jsonl", EXAMPLE)
        response = post(resource, binary=binary)
        assert response.status_code == 200, response.data
        status = dropzone.status(dropzone.run_id(resource))
        assert status["state"] == "QUEUED"
        report = dropzone.json(dropzone.run_id(resource), "validation/report.json")
        assert report["tokens"]["method"] == "exact"  # the base model's own tokenizer
    assert len(dropzone.topic.pull()) == 2


def test_other_event_types_are_acknowledged_and_ignored(dropzone, post):
    resource = dropzone.upload("chat.jsonl", EXAMPLE)
    response = post(resource, event_type="google.cloud.storage.object.v1.deleted")
    assert response.status_code == 200
    assert dropzone.all_run_ids() == set()


def test_an_event_without_an_object_is_acknowledged_not_retried(dropzone, post):
    response = post({"bucket": dropzone.uploads.name, "name": "x.jsonl", "generation": "oops"})
    assert response.status_code == 200
    assert dropzone.all_run_ids() == set()


def test_missing_deployment_settings_fail_the_call(dropzone, post, monkeypatch):
    monkeypatch.delenv("DROPTUNE_TOPIC")
    response = post(dropzone.upload("chat.jsonl", EXAMPLE))
    assert response.status_code == 500  # the platform redelivers once the deployment is fixed


def test_a_failed_delivery_is_logged_once_with_its_object_and_retried(dropzone, post, capture_logs):
    """Here a run id already taken by another object: the call fails (redelivered), and the
    error is one structured line labelled with the object, not a bare traceback."""
    resource = dropzone.upload("clash/chat.jsonl", EXAMPLE)
    run_id = dropzone.run_id(resource)
    other = {"source": {"bucket": "elsewhere", "name": "x.jsonl", "generation": "1"}}
    dropzone.runs.blob(f"runs/{run_id}/run.json").upload_from_string(orjson.dumps(other))
    function_log, intake_log = (
        capture_logs(f"droptune.{name}") for name in ("functions.upload", "intake")
    )
    response = post(resource)
    assert response.status_code == 500
    assert function_log() == []
    (line,) = intake_log()
    assert line["severity"] == "ERROR" and "RunIdCollision" in line["message"]
    assert "RunIdCollision" in line["stack_trace"]
    uri = f"gs://{resource['bucket']}/{resource['name']}#{resource['generation']}"
    assert line["logging.googleapis.com/labels"]["object"] == uri


@pytest.mark.slow
def test_twenty_concurrent_deliveries_publish_once(dropzone, post):
    resource = dropzone.upload("race/chat.jsonl", EXAMPLE)
    start = threading.Barrier(20)

    def deliver(_):
        start.wait()
        return post(resource).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(deliver, range(20)))
    assert codes == [200] * 20
    assert dropzone.all_run_ids() == {dropzone.run_id(resource)}
    assert len(dropzone.topic.pull()) == 1


def error_fixtures() -> list:
    params = []
    for expect_file in sorted(FIXTURES.rglob("*.expect.yaml")):
        data = expect_file.with_name(expect_file.name.removesuffix(".expect.yaml"))
        expect = yaml.safe_load(expect_file.read_text())
        errors = [
            (i["code"], i.get("line"))
            for i in expect["issues"]
            if CATALOGUE[i["code"]].severity == Severity.ERROR
        ]
        if errors:
            params.append(pytest.param(data, expect.get("config") or {}, errors, id=data.name))
    return params


def config_for(data: Path) -> dict:
    config_file = data.with_name(data.name + ".config.yaml")
    return yaml.safe_load(config_file.read_text()) if config_file.exists() else {}


@pytest.mark.slow
@pytest.mark.parametrize(("data", "config", "errors"), error_fixtures())
def test_every_bad_fixture_is_rejected_with_code_and_line(dropzone, post, data, config, errors):
    name = f"{data.parent.name}/{data.name}"
    # The fixture's run config travels as a sidecar, the way users set it.
    sidecar = {"min_examples": 1, **config_for(data), **config}
    stem = data.name.rsplit(".", 1)[0]
    dropzone.upload(f"{data.parent.name}/{stem}.droptune.yaml", yaml.safe_dump(sidecar))
    resource = dropzone.upload(name, data.read_bytes())
    assert post(resource).status_code == 200
    run_id = dropzone.run_id(resource)
    assert dropzone.status(run_id)["state"] == "REJECTED"
    report = dropzone.json(run_id, "validation/report.json")
    found = {(i["code"], i.get("line")) for i in report["issues"]}
    assert set(errors) <= found
    assert dropzone.topic.pull() == []


@pytest.mark.slow
@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"shared datasets not checked out at {DATASETS}")
@pytest.mark.parametrize(("path", "config", "code", "line"), BAD_DATASETS, ids=lambda v: str(v))
def test_known_bad_datasets_are_rejected(dropzone, post, path, config, code, line):
    metadata = {f"droptune-{key}": value for key, value in config.items()}
    resource = dropzone.upload(path, (DATASETS / path).read_bytes(), metadata=metadata)
    assert post(resource).status_code == 200
    run_id = dropzone.run_id(resource)
    assert dropzone.status(run_id)["state"] == "REJECTED"
    report = dropzone.json(run_id, "validation/report.json")
    assert (code, line) in {(i["code"], i.get("line")) for i in report["issues"]}
    assert dropzone.topic.pull() == []


PATH_TRICKS = [
    "../../escape.jsonl",
    "/abs/olute.jsonl",
    "a/./b/../c.jsonl",
    "ctrl\x07\x1b[31mred.jsonl",
    "数据/训练数据.jsonl",
    "spaces and (parens) & ampersands.jsonl",
    "deep/" * 40 + "x" * 200 + ".jsonl",
]


def test_path_tricks_stay_inside_their_run_folder(dropzone, post):
    run_ids = set()
    for name in PATH_TRICKS:
        resource = dropzone.upload(name, EXAMPLE)
        assert post(resource).status_code == 200, name
        run_id = dropzone.run_id(resource)
        assert RUN_ID.match(run_id), run_id
        assert dropzone.status(run_id)["state"] == "QUEUED", name
        run_ids.add(run_id)
    assert dropzone.all_run_ids() == run_ids
    every = {b.name for b in dropzone.runs.list_blobs()}
    assert all(n.split("/")[:2] in (["runs", r] for r in run_ids) for n in every)
    assert all(".." not in n.split("/") for n in every)


@pytest.mark.slow
def test_the_functions_framework_server_process(dropzone):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", "on_upload",
         "--source", str(SOURCE), "--signature-type", "cloudevent", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=60, proc=server)
        resource = dropzone.upload("served/chat.jsonl", EXAMPLE)
        headers, body = to_structured(finalize_event(resource))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    run_id = dropzone.run_id(resource)
    assert dropzone.status(run_id)["state"] == "QUEUED"
    (message,) = dropzone.topic.pull()
    assert orjson.loads(message.data)["run_id"] == run_id
    # The server's stderr carries the structured log lines Cloud Logging reads.
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    queued = [
        e for e in lines if e.get("logging.googleapis.com/labels", {}).get("state") == "QUEUED"
    ]
    assert queued and queued[0]["severity"] == "INFO"


def test_the_evaluation_function_says_what_a_request_needs():
    client = create_app(target="evaluate", source=str(SOURCE)).test_client()
    answer = client.post("/", json={"run_uri": "gs://r/runs/x/"})
    assert answer.status_code == 400
    assert '"tuning_job"' in answer.get_json()["error"]["message"]
    answer = client.post("/", json={"run_uri": "gs://r/runs/x/", "tuning_job": "j", "offset": -1})
    assert answer.status_code == 400 and "offset" in answer.get_json()["error"]["message"]


def test_the_evaluation_functions_log_lines_name_the_run(monkeypatch, capture_logs):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    client = create_app(target="evaluate", source=str(SOURCE)).test_client()
    read_log = capture_logs("droptune.functions.upload")  # the module's logger
    answer = client.post("/", json={"run_uri": "gs://r/runs/chat-7-ab/", "tuning_job": "j"})
    assert answer.status_code == 422
    assert "GOOGLE_CLOUD_PROJECT" in answer.get_json()["error"]["message"]
    (entry,) = read_log()
    assert entry["severity"] == "ERROR"
    assert entry["logging.googleapis.com/labels"] == {"run_id": "chat-7-ab"}


@pytest.mark.parametrize(("code", "status"), [(429, 503), (503, 503), (400, 422), (404, 422)])
def test_the_evaluation_function_asks_for_a_retry_only_when_one_can_help(
    monkeypatch, code: int, status: int
):
    """The workflow retries a slice on 5xx: a request the model API refused would be refused
    again, 6 times over a whole slice of billed calls."""
    from google.genai import errors

    from droptune.cloud.genai import GeminiError

    def evaluate_slice(*args):
        try:
            raise errors.APIError(code, {"error": {"message": "upstream", "status": "X"}})
        except errors.APIError as exc:
            raise GeminiError(f"gemini-2.5-flash: generateContent failed: {exc}") from exc

    monkeypatch.setattr("droptune.gemini.evaluate_slice", evaluate_slice)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p")
    client = create_app(target="evaluate", source=str(SOURCE)).test_client()
    answer = client.post("/", json={"run_uri": "gs://r/runs/chat-7-ab/", "tuning_job": "j"})
    assert answer.status_code == status
    assert "generateContent failed" in answer.get_json()["error"]["message"]
