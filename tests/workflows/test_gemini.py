"""The workflow's gemini branch on the local engine, against real Cloud Storage (the emulator),
droptune's local Vertex AI server with a scripted tuning service (every request body checked
against the aiplatform v1 types), and the real evaluation function (functions/main.py
`evaluate`, through functions-framework's test client) calling that server with google-genai.

The engine's `http.*` calls go to the server's request handler directly, so that the tuning
job's hours pass on the engine's virtual clock: a 2-hour job is counted in steps in seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from functions_framework import create_app

from droptune.local.vertex import VertexServer
from droptune.local.workflows.engine import Engine, Execution, load_workflow
from droptune.local.workflows.stdlib import Runtime, VirtualClock
from tests.support.gemini import Script, ScriptedTuner
from tests.support.vertex import http_error
from tests.workflows.test_pipeline import PIPELINE, event, queue_run, states, status_of

ROOT = Path(__file__).parents[2]
EVALUATE_URL = "https://droptune-evaluate.run.app/"
TESTS = [("I was charged twice", "billing"), ("The app crashes", "bug"), ("Love it", "praise")]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=time.time())  # tuning jobs carry real createTimes


@pytest.fixture
def tuner(clock) -> ScriptedTuner:
    def answer(target: str, messages: list[dict[str, str]]) -> str:
        said = messages[-1]["content"]
        reference = dict(TESTS)[said]
        # The base model explains at length; the tuned endpoint answers with the label.
        return reference if "/endpoints/" in target else f"This looks like {reference} to me."

    return ScriptedTuner(
        default=Script(seconds=600),
        scripts={
            "expires": Script(seconds=600, end="JOB_STATE_EXPIRED"),
            "fails": Script(seconds=60, end="JOB_STATE_FAILED", error="3 examples were invalid"),
        },
        answer=answer,
        clock=clock.now,
    )


@pytest.fixture
def server(tmp_path, tuner, monkeypatch):
    with VertexServer(tmp_path / "vertex", tuner=tuner) as vertex:
        for key, value in {
            "GOOGLE_CLOUD_PROJECT": "p",
            "GOOGLE_CLOUD_LOCATION": "us-central1",
            "DROPTUNE_VERTEX_API": vertex.url,
        }.items():
            monkeypatch.setenv(key, value)
        yield vertex


def queue_gemini_run(bucket: Any, run_id: str, **config: Any) -> None:
    queue_run(bucket, run_id, backend="gemini", **config)
    lines = [
        {"messages": [{"role": "system", "content": "Label the ticket."}, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in TESTS
    ]  # fmt: skip
    bucket.blob(f"runs/{run_id}/data/test.jsonl").upload_from_string(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    report = {
        "counts": {"labels": {"billing": 1, "bug": 1, "praise": 1}},
        "system_prompt": "Label the ticket.",  # every example's, as the intake records it
    }
    bucket.blob(f"runs/{run_id}/validation/report.json").upload_from_string(json.dumps(report))


class Wire:
    """The engine's http.* calls, answered by the local Vertex server and the function."""

    def __init__(self, server: VertexServer) -> None:
        self.server = server
        self.function = create_app(
            target="evaluate", source=str(ROOT / "functions" / "main.py")
        ).test_client()
        self.calls: list[tuple[str, str]] = []
        self.answers: list[tuple[str, str, Any]] = []
        self.auth: list[str] = []

    def hooks(self) -> dict[str, Any]:
        return {
            "http.post": lambda **kw: self.send("POST", **kw),
            "http.get": lambda **kw: self.send("GET", **kw),
        }

    def send(
        self,
        method: str,
        url: str,
        auth: dict | None = None,
        body: Any = None,
        query: dict | None = None,
        **_: Any,
    ):
        self.calls.append((method, url))
        self.auth.append((auth or {}).get("type", ""))
        if url == EVALUATE_URL:
            answer = self.function.post("/", json=body)
            status, data = answer.status_code, answer.get_json()
        else:
            target = urlsplit(url).path + (f"?{urlencode(query)}" if query else "")
            status, data = self.server.handle(method, target, json.dumps(body or {}).encode())
            self.answers.append((method, url, data))
        if status >= 400:
            failure = http_error(status)
            failure.value["body"] = data  # as Workflows gives it: the decoded answer
            raise failure
        return {"code": status, "body": data, "headers": {}}


def execute(clock, server, gcs_server, bucket, run_id: str) -> tuple[Execution, Wire]:
    wire = Wire(server)
    runtime = Runtime(
        env={
            "GOOGLE_CLOUD_PROJECT_ID": "p",
            "GOOGLE_CLOUD_LOCATION": "us-central1",
            "DROPTUNE_RUNS_BUCKET": bucket.name,
            "DROPTUNE_EVALUATION_URL": EVALUATE_URL,
        },
        clock=clock,
        connector_roots={"storage": gcs_server.url},
    )
    engine = Engine(load_workflow(str(PIPELINE)), runtime, call_hooks=wire.hooks())
    return engine.run(event(bucket, run_id, backend="gemini")), wire


def test_a_gemini_run_tunes_evaluates_and_records_the_tuned_endpoint(
    clock, server, tuner, gcs_server, gcs_bucket
):
    queue_gemini_run(gcs_bucket, "g1", learning_rate_multiplier=0.5, epochs=3)
    execution, wire = execute(clock, server, gcs_server, gcs_bucket, "g1")
    assert execution.state == "SUCCEEDED", execution.error
    assert states(gcs_bucket, "g1") == [
        "VALIDATING", "QUEUED", "TRAINING", "EVALUATING", "SUCCEEDED",
    ]  # fmt: skip
    status = status_of(gcs_bucket, "g1")
    job_name = status["training_job"]
    job = json.loads(gcs_bucket.blob("runs/g1/training/tuning_job.json").download_as_bytes())
    assert job["name"] == job_name and job["data_stats"]["truncated_examples"] == 2
    spec = job["resource"]["supervisedTuningSpec"]
    assert spec["trainingDatasetUri"] == f"gs://{gcs_bucket.name}/runs/g1/data/gemini/train.jsonl"
    assert spec["validationDatasetUri"] == spec["trainingDatasetUri"].replace("train", "validation")
    assert spec["hyperParameters"] == {"epochCount": 3, "learningRateMultiplier": 0.5}
    assert job["resource"]["labels"]["run_id"] == "g1"
    # Base and tuned answered every test example; the tuned one in fewer tokens.
    metrics = json.loads(gcs_bucket.blob("runs/g1/evaluation/metrics.json").download_as_bytes())
    assert metrics["n"] == 3 and metrics["tuned"]["accuracy"] == 1.0
    assert metrics["gate"]["passed"] and metrics["gate"]["metric"] == "accuracy"
    assert (
        metrics["tokens"]["baseline"]["output"] == 18 and metrics["tokens"]["tuned"]["output"] == 3
    )
    assert metrics["tokens"]["saved"]["output"] == pytest.approx(1 - 3 / 18, abs=1e-4)
    sent = [body for target, body in tuner.requests if "/publishers/" in target]
    assert sent[0]["systemInstruction"]["parts"][0]["text"] == "Label the ticket."
    # The report reads the job from tuning_job.json as the evaluation wrote it.
    report = gcs_bucket.blob("runs/g1/evaluation/report.html").download_as_text()
    assert "dropped or truncated examples" in report and job["resource"]["name"] in report
    card = json.loads(gcs_bucket.blob("runs/g1/endpoint.json").download_as_bytes())
    endpoint = job["endpoint"]
    assert card["endpoint"] == endpoint == status["endpoint"]
    api = "https://us-central1-aiplatform.googleapis.com"
    assert card["predict_url"] == f"{api}/v1/{endpoint}:generateContent"
    assert f'model="{endpoint}"' in card["examples"]["python"]
    assert ":generateContent" in card["examples"]["curl"]
    # the calls carry the system turn the model was tuned with, as the evaluation sent it
    said = {"parts": [{"text": "Label the ticket."}]}
    assert card["request_example"]["systemInstruction"] == said
    assert (
        json.dumps(said) in card["examples"]["curl"]
        or '"Label the ticket."' in card["examples"]["curl"]
    )
    assert 'config={"system_instruction": "Label the ticket."}' in card["examples"]["python"]
    assert set(wire.auth) == {"OAuth2", "OIDC"}
    assert ("POST", EVALUATE_URL) in wire.calls and wire.auth[
        wire.calls.index(("POST", EVALUATE_URL))
    ] == "OIDC"


def test_a_run_tuned_without_a_system_turn_gets_calls_without_one(
    clock, server, tuner, gcs_server, gcs_bucket
):
    queue_gemini_run(gcs_bucket, "bare")
    report = {"counts": {"labels": {"billing": 1, "bug": 1, "praise": 1}}}
    gcs_bucket.blob("runs/bare/validation/report.json").upload_from_string(json.dumps(report))
    execution, _ = execute(clock, server, gcs_server, gcs_bucket, "bare")
    assert execution.result["state"] == "SUCCEEDED", execution.error
    card = json.loads(gcs_bucket.blob("runs/bare/endpoint.json").download_as_bytes())
    assert card["request_example"] == {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
    assert "config=" not in card["examples"]["python"]


def test_a_two_hour_tuning_job_costs_at_most_100_steps(
    clock, server, tuner, gcs_server, gcs_bucket
):
    tuner.default = Script(seconds=2 * 3600)
    queue_gemini_run(gcs_bucket, "long")
    execution, wire = execute(clock, server, gcs_server, gcs_bucket, "long")
    assert execution.result["state"] == "SUCCEEDED", execution.error
    polls = sum(1 for method, url in wire.calls if method == "GET" and "/tuningJobs/" in url)
    assert polls <= 16
    assert execution.step_count <= 100, execution.step_count


def test_polls_read_only_the_fields_the_workflow_uses(clock, server, tuner, gcs_server, gcs_bucket):
    """A tuning job quotes examples of the dataset in its statistics: the polls ask for a
    partial response, so the workflow's variables do not grow with the data."""
    queue_gemini_run(gcs_bucket, "small")
    execution, wire = execute(clock, server, gcs_server, gcs_bucket, "small")
    assert execution.result["state"] == "SUCCEEDED", execution.error
    polled = [
        data for method, url, data in wire.answers if method == "GET" and "/tuningJobs/" in url
    ]
    assert polled
    read = {"name", "state", "createTime", "baseModel", "tunedModel", "error"}
    for answer in polled:
        assert set(answer) <= read, set(answer) - read
    assert "tunedModel" in polled[-1]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fails", "ended JOB_STATE_FAILED (3 examples were invalid)"),
        ("expires", "ended JOB_STATE_EXPIRED"),
    ],
)
def test_a_tuning_job_that_ends_without_a_model_fails_the_run(
    clock, server, tuner, gcs_server, gcs_bucket, name, message
):
    queue_gemini_run(gcs_bucket, name)
    # The job's display name is the run id, which picks the script.
    execution, _ = execute(clock, server, gcs_server, gcs_bucket, name)
    assert execution.state == "FAILED" and "TrainingJobFailed" in execution.error["tags"]
    status = status_of(gcs_bucket, name)
    assert status["state"] == "FAILED" and message in status["error"]["message"]


def test_a_tuned_model_that_loses_is_gated_with_no_endpoint_card(
    clock, server, tuner, gcs_server, gcs_bucket
):
    tuner.answer = lambda target, messages: "no idea" if "/endpoints/" in target else dict(TESTS)[messages[-1]["content"]]  # fmt: skip
    queue_gemini_run(gcs_bucket, "worse", validation_fraction=0)
    execution, _ = execute(clock, server, gcs_server, gcs_bucket, "worse")
    assert execution.result["state"] == "GATED"
    job = json.loads(gcs_bucket.blob("runs/worse/training/tuning_job.json").download_as_bytes())
    assert job["resource"]["supervisedTuningSpec"].get("validationDatasetUri") is None
    status = status_of(gcs_bucket, "worse")
    assert not status["gate"]["passed"] and "does not exceed" in status["detail"]
    assert gcs_bucket.blob("runs/worse/endpoint.json").exists() is False


def test_throttled_tuning_creates_and_generations_are_retried(
    clock, server, tuner, gcs_server, gcs_bucket
):
    tuner.throttle_create = 2
    tuner.throttle_generate = 3
    queue_gemini_run(gcs_bucket, "busy")
    execution, _ = execute(clock, server, gcs_server, gcs_bucket, "busy")
    assert execution.result["state"] == "SUCCEEDED", execution.error


def test_the_evaluation_goes_slice_by_slice(
    clock, server, tuner, gcs_server, gcs_bucket, monkeypatch
):
    import droptune.gemini

    monkeypatch.setattr(droptune.gemini, "SLICE", 2)
    queue_gemini_run(gcs_bucket, "sliced")
    execution, wire = execute(clock, server, gcs_server, gcs_bucket, "sliced")
    assert execution.result["state"] == "SUCCEEDED", execution.error
    assert wire.calls.count(("POST", EVALUATE_URL)) == 2
    parts = sorted(b.name for b in gcs_bucket.list_blobs(prefix="runs/sliced/evaluation/parts/"))
    assert parts == ["runs/sliced/evaluation/parts/0000000.jsonl", "runs/sliced/evaluation/parts/0000002.jsonl"]  # fmt: skip


def test_without_an_evaluation_function_a_gemini_run_fails_with_the_reason(
    clock, server, gcs_server, gcs_bucket
):
    queue_gemini_run(gcs_bucket, "nofn")
    wire = Wire(server)
    runtime = Runtime(
        env={"GOOGLE_CLOUD_PROJECT_ID": "p", "GOOGLE_CLOUD_LOCATION": "us-central1", "DROPTUNE_RUNS_BUCKET": gcs_bucket.name},
        clock=clock,
        connector_roots={"storage": gcs_server.url},
    )  # fmt: skip
    engine = Engine(load_workflow(str(PIPELINE)), runtime, call_hooks=wire.hooks())
    execution = engine.run(event(gcs_bucket, "nofn", backend="gemini"))
    assert execution.state == "FAILED"
    assert "DROPTUNE_EVALUATION_URL" in status_of(gcs_bucket, "nofn")["error"]["message"]
    assert wire.calls == []


def test_a_run_the_evaluation_cannot_use_fails_with_the_functions_reason(
    clock, server, gcs_server, gcs_bucket
):
    queue_gemini_run(gcs_bucket, "notests")
    gcs_bucket.blob("runs/notests/data/test.jsonl").upload_from_string("")
    execution, _ = execute(clock, server, gcs_server, gcs_bucket, "notests")
    assert execution.state == "FAILED"
    status = status_of(gcs_bucket, "notests")
    assert status["state"] == "FAILED"
    assert "data/test.jsonl has no test examples" in status["error"]["message"]
