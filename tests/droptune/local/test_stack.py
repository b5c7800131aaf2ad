"""The pipeline end to end on the local stack: a file dropped into the uploads bucket goes
through the real upload function, the event bus, workflows/pipeline.workflows.yaml on the
local engine, the local Vertex AI server, the real trainer (SmolLM2-135M on CPU) and the real
serving entry point, and ends in the state its data and settings call for."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from droptune import actions
from droptune.errors import SourceNotFound
from droptune.local.home import StackConfig
from droptune.local.stack import LocalStack
from droptune.runs import ENDED, run_id_for

pytestmark = pytest.mark.slow
TICKETS = Path(__file__).parents[3] / "droptune" / "examples" / "tickets.jsonl"
FAST = {"epochs": 1, "max_length": 128, "tokens_per_batch": 512, "eval_max_new_tokens": 4}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pulled_model):
    home = tmp_path_factory.mktemp("local")
    with LocalStack(StackConfig(home=home)) as running:
        yield running
    shutil.rmtree(home)  # its runs' models: hundreds of MB


@pytest.fixture(scope="module")
def client(stack) -> storage.Client:
    return storage.Client(
        project="droptune-local",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": stack.storage.url},
    )


def drop(client: storage.Client, name: str, data: bytes, settings: dict | None = None) -> str:
    """Upload like a user (settings as a sidecar first); the run id it starts."""
    bucket = client.bucket("droptune-uploads")
    if settings is not None:
        sidecar = name.rsplit(".", 1)[0] + ".droptune.yaml"
        bucket.blob(sidecar).upload_from_string(yaml.safe_dump(settings))
    blob = bucket.blob(name)
    blob.upload_from_string(data)
    return run_id_for("droptune-uploads", name, blob.generation)


STALLED: list[str] = []  # runs that never ended: the stack is stuck, so later tests stop at once


@pytest.fixture(autouse=True)
def _stack_not_stalled() -> None:
    if STALLED:
        pytest.fail(f"the local stack stalled earlier (run {STALLED[0]} never ended)")


def wait_for_end(client: storage.Client, run_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A new Blob each time: one that has downloaded remembers (and asks for) that generation.
        blob = client.bucket("droptune-runs").get_blob(f"runs/{run_id}/status.json")
        if blob is not None:
            status = json.loads(blob.download_as_bytes())
            if status["state"] in ENDED:
                return status
        time.sleep(0.5)
    STALLED.append(run_id)
    raise AssertionError(f"run {run_id} did not end in {timeout} s")


def files(client: storage.Client, run_id: str) -> set[str]:
    prefix = f"runs/{run_id}/"
    return {b.name[len(prefix) :] for b in client.list_blobs("droptune-runs", prefix=prefix)}


@pytest.fixture
def droptune_on_stack(stack, monkeypatch) -> None:
    """This process's droptune calls (`droptune.actions`) go to the stack's services."""
    from droptune.cloud import gcs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", stack.storage.url)
    monkeypatch.setenv("DROPTUNE_VERTEX_API", stack.vertex.url)
    gcs.client.cache_clear()
    yield
    gcs.client.cache_clear()


def vertex_list(stack: LocalStack, collection: str, run_id: str) -> list[dict]:
    url = f"{stack.vertex.url}/v1/projects/droptune-local/locations/local/{collection}"
    response = requests.get(url, params={"filter": f"labels.run_id={run_id}"}, timeout=10)
    response.raise_for_status()
    return response.json().get(collection, [])


def test_a_bad_file_is_rejected_with_a_report_and_starts_no_job(stack, client):
    run_id = drop(client, "bad/notes.jsonl", b'{"messages": "not a list"}\n')
    status = wait_for_end(client, run_id, timeout=120)
    assert status["state"] == "REJECTED"
    assert status["error"]["code"] == "missing_messages" and status["error"]["line"] == 1
    assert {"validation/report.json", "validation/report.md"} <= files(client, run_id)
    assert stack.wait_idle(30)
    assert vertex_list(stack, "customJobs", run_id) == []


def test_a_dataset_is_tuned_evaluated_deployed_and_answers(stack, client, droptune_on_stack):
    settings = {"training": FAST, "gate": {"metric": "accuracy", "min_delta": -1.0}}
    run_id = drop(client, "good/tickets.jsonl", TICKETS.read_bytes(), settings)
    status = wait_for_end(client, run_id)
    assert status["state"] == "SUCCEEDED", status.get("error")
    assert [h["state"] for h in status["history"]] == [
        "VALIDATING", "QUEUED", "TRAINING", "EVALUATING", "DEPLOYING", "SUCCEEDED",
    ]  # fmt: skip
    assert {
        "run.json",
        "validation/report.json",
        "data/train.jsonl",
        "data/validation.jsonl",
        "data/test.jsonl",
        "training/metrics.json",
        "training/job.log",
        "model/merged/model.safetensors",
        "model/adapter/adapter_model.safetensors",
        "evaluation/metrics.json",
        "evaluation/predictions.csv",
        "endpoint.json",
    } <= files(client, run_id)
    runs = client.bucket("droptune-runs")
    metrics = json.loads(runs.blob(f"runs/{run_id}/evaluation/metrics.json").download_as_bytes())
    assert "accuracy" in metrics["tuned"] and metrics["gate"]["passed"]
    card = json.loads(runs.blob(f"runs/{run_id}/endpoint.json").download_as_bytes())
    assert card["predict_url"].startswith(stack.vertex.url)
    system = json.loads(TICKETS.read_text().splitlines()[0])["system"]
    ticket = [{"role": "system", "content": system}, {"role": "user", "content": "Refund me!"}]
    answer = requests.post(
        card["predict_url"],
        json={"instances": [{"messages": ticket}], "parameters": {"max_new_tokens": 4}},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert isinstance(prediction, str) and prediction
    # `droptune runs ask` reaches the same model through the aiplatform client: same answer.
    run_uri = f"gs://droptune-runs/runs/{run_id}"
    assert actions.ask(run_uri, "Refund me!", system=system, max_new_tokens=4) == prediction
    assert stack.wait_idle(60)
    (execution,) = [e for key, e in stack.executions.items() if key.startswith(run_id)]
    assert execution.state == "SUCCEEDED"


def test_a_training_error_fails_the_run_with_the_trainers_message(stack, client):
    # Valid settings (a bad value would be rejected with the upload) that only the model can
    # refuse: it has no layer of that name.
    settings = {"training": {**FAST, "target_modules": "no_such_layer"}}
    run_id = drop(client, "broken/tickets.jsonl", TICKETS.read_bytes(), settings)
    status = wait_for_end(client, run_id)
    assert status["state"] == "FAILED"
    assert "TrainingJobFailed" in status["error"]["tags"]
    assert "no_such_layer" in status["error"]["message"]
    assert vertex_list(stack, "models", run_id) == []


def test_two_machines_train_together_and_a_gate_they_miss_deploys_nothing(stack, client):
    settings = {
        "training_machines": 2,
        "training": {**FAST, "max_steps": 2},
        "gate": {"metric": "accuracy", "min_delta": 2},  # more than accuracy can gain
    }
    run_id = drop(client, "pair/tickets.jsonl", TICKETS.read_bytes(), settings)
    status = wait_for_end(client, run_id)
    assert status["state"] == "GATED", status.get("error")
    assert status["gate"]["passed"] is False and "does not exceed" in status["detail"]
    assert "endpoint.json" not in files(client, run_id)
    assert vertex_list(stack, "models", run_id) == []
    (job,) = vertex_list(stack, "customJobs", run_id)
    assert [pool["replicaCount"] for pool in job["jobSpec"]["workerPoolSpecs"]] == ["1", "1"]
    runs = client.bucket("droptune-runs")
    metrics = json.loads(runs.blob(f"runs/{run_id}/training/metrics.json").download_as_bytes())
    assert metrics["processes"] == 2 and metrics["steps"] == 2, status
    assert {"training/job.log", "training/job-workerpool1-0.log"} <= files(client, run_id)


def test_a_run_cancelled_in_training_ends_cancelled(stack, client, droptune_on_stack):
    settings = {"training": {**FAST, "epochs": 50}}
    run_id = drop(client, "cancelled/tickets.jsonl", TICKETS.read_bytes(), settings)
    run_uri = f"gs://droptune-runs/runs/{run_id}"
    deadline = time.monotonic() + 300
    while True:
        try:
            cancelled = actions.cancel(run_uri)
            break
        except (SourceNotFound, actions.RunActionError):  # not yet claimed / no job yet
            assert time.monotonic() < deadline, "the run's training job was never created"
            time.sleep(0.5)
    assert cancelled.state == "TRAINING" and "/customJobs/" in cancelled.job
    status = wait_for_end(client, run_id)
    assert status["state"] == "CANCELLED", status
    (job,) = vertex_list(stack, "customJobs", run_id)
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert "endpoint.json" not in files(client, run_id)
    with pytest.raises(actions.RunActionError, match="already ended CANCELLED"):
        actions.cancel(run_uri)


def test_a_gemini_run_is_emulated_offline_end_to_end(stack, client, droptune_on_stack):
    settings = {
        "backend": "gemini",
        "epochs": 1,  # the tuning job's epochCount, which the emulation trains for
        "training": FAST,
        "eval_max_output_tokens": 4,
        "gate": {"metric": "accuracy", "min_delta": -1.0},
    }
    run_id = drop(client, "gemini/tickets.jsonl", TICKETS.read_bytes(), settings)
    status = wait_for_end(client, run_id)
    assert status["state"] == "SUCCEEDED", status.get("error")
    assert [h["state"] for h in status["history"]] == [
        "VALIDATING", "QUEUED", "TRAINING", "EVALUATING", "SUCCEEDED",
    ]  # fmt: skip
    assert {
        "data/gemini/train.jsonl",
        "training/tuning_job.json",
        "training/job.log",
        "evaluation/metrics.json",
        "evaluation/predictions.csv",
        "endpoint.json",
    } <= files(client, run_id)
    runs = client.bucket("droptune-runs")
    job = json.loads(runs.blob(f"runs/{run_id}/training/tuning_job.json").download_as_bytes())
    assert job["emulated"] and "Emulated" in job["resource"]["description"]
    assert job["data_stats"]["examples"] > 0
    metrics = json.loads(runs.blob(f"runs/{run_id}/evaluation/metrics.json").download_as_bytes())
    assert metrics["emulated"] and metrics["backend"] == "gemini"
    assert metrics["tokens"]["baseline"]["input"] > 0 and metrics["tokens"]["tuned"]["output"] > 0
    # The tuned model answers generateContent on its endpoint, as endpoint.json says.
    card = json.loads(runs.blob(f"runs/{run_id}/endpoint.json").download_as_bytes())
    assert card["endpoint"] == job["endpoint"] and card["predict_url"].startswith(stack.vertex.url)
    answer = requests.post(card["predict_url"], json=card["request_example"], timeout=120)
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["modelVersion"].startswith("emulated:")
    assert reply["candidates"][0]["content"]["parts"][0]["text"]
    assert actions.ask(f"gs://droptune-runs/runs/{run_id}", "Hello", max_new_tokens=4)


def test_an_upload_the_function_keeps_failing_on_is_recorded_at_the_last_attempt(tmp_path):
    """What `droptune local run` reads to stop waiting (undelivered.jsonl)."""
    import threading
    from types import SimpleNamespace

    from droptune.local.bus import Message, RetryPolicy

    stack = object.__new__(LocalStack)
    stack.home, stack._lock, stack._failures = tmp_path, threading.Lock(), {}
    stack.bus = SimpleNamespace(retry=RetryPolicy(max_attempts=3))
    attributes = {"bucketId": "uploads", "objectId": "local/t/d.jsonl", "objectGeneration": "7"}
    message = Message("1", b"{}", attributes)
    for _ in range(2):
        stack._failed_delivery(message, RuntimeError("500 Server Error"))
    assert not (tmp_path / "undelivered.jsonl").exists()  # the bus will try again
    stack._failed_delivery(message, RuntimeError("500 Server Error"))
    [line] = (tmp_path / "undelivered.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "object": "gs://uploads/local/t/d.jsonl",
        "generation": "7",
        "attempts": 3,
        "error": "500 Server Error",
    }
