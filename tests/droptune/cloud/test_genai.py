"""droptune's google-genai adapter against the Vertex AI REST contract, with no cloud: the SDK
talks over HTTP (its base URL option) to droptune's local Vertex AI server, which checks every
request's path and body against the aiplatform v1 types, while a scripted tuner plays the
service (jobs that succeed, fail or expire; 429s before success)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import requests

from droptune.cloud import genai
from droptune.errors import ConfigError
from droptune.local.vertex import VertexServer
from tests.support.gemini import Script, ScriptedTuner

PROJECT, LOCATION = "droptune-test", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
RUN = "gs://runs/runs/tickets-1-abcd/"


@pytest.fixture
def tuner() -> ScriptedTuner:
    return ScriptedTuner(
        scripts={
            "fails": Script(end="JOB_STATE_FAILED", error="training data: 3 examples invalid"),
            "expires": Script(states=["JOB_STATE_PENDING"], end="JOB_STATE_EXPIRED"),
        }
    )


@pytest.fixture
def server(tmp_path, tuner):
    with VertexServer(tmp_path / "vertex", tuner=tuner) as vertex:
        yield vertex


@pytest.fixture
def client(server):
    settings = genai.GeminiSettings(PROJECT, LOCATION, base_url=server.url, first_retry_s=0.01)
    return genai.client(settings)


def request(display_name: str | None = None) -> genai.TuningRequest:
    """The job droptune asks for run tickets-1-abcd; `display_name` picks another script."""
    config = {"base_model": "gemini-2.5-flash", "epochs": 3, "learning_rate_multiplier": 0.5}
    job = genai.TuningRequest.for_run(RUN, "tickets-1-abcd", config)
    return replace(job, display_name=display_name) if display_name else job


def follow(client, name: str) -> list[genai.TuningJob]:
    seen = []
    for _ in range(20):
        job = genai.get_tuning(client, name)
        seen.append(job)
        if job.ended:
            return seen
    raise AssertionError(f"{name} did not end: {[j.state for j in seen]}")


def test_a_job_goes_queued_running_succeeded_and_names_its_endpoint(client, tuner):
    job = genai.start_tuning(client, request())
    assert job.name.startswith(PARENT + "/tuningJobs/") and job.state == "JOB_STATE_PENDING"
    seen = follow(client, job.name)
    states = [j.state for j in seen]
    assert states[:4] == ["JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_RUNNING"]  # fmt: skip
    done = seen[-1]
    assert done.succeeded and done.ended
    assert done.endpoint == f"{PARENT}/endpoints/{job.name.rsplit('/', 1)[1]}"
    assert done.tuned_model.startswith(PARENT + "/models/")
    assert done.data_stats == {
        "examples": 76,
        "billable_tokens": 9120,
        "truncated_examples": 2,
        "dropped_example_reasons": ["example 12: no model turn"],
        "tuning_steps": 30,
    }
    spec = done.resource["supervisedTuningSpec"]
    assert spec["trainingDatasetUri"] == RUN + "data/gemini/train.jsonl"
    assert spec["validationDatasetUri"] == RUN + "data/gemini/validation.jsonl"
    assert spec["hyperParameters"] == {"epochCount": 3, "learningRateMultiplier": 0.5}
    assert done.resource["labels"] == {"run_id": "tickets-1-abcd", "droptune": "tuning-job"}


@pytest.mark.parametrize(
    ("name", "state", "error"),
    [
        ("fails", "JOB_STATE_FAILED", "training data: 3 examples invalid"),
        ("expires", "JOB_STATE_EXPIRED", "JOB_STATE_EXPIRED"),
    ],
)
def test_every_end_state_ends_the_wait(client, name, state, error):
    job = genai.start_tuning(client, request(name))
    done = follow(client, job.name)[-1]
    assert (done.state, done.ended, done.succeeded, done.error) == (state, True, False, error)
    assert done.endpoint is None and done.data_stats == {}


def test_a_cancelled_job_ends_cancelled(client):
    job = genai.start_tuning(client, request())
    genai.cancel_tuning(client, job.name)
    done = follow(client, job.name)[-1]
    assert done.state == "JOB_STATE_CANCELLED"


def test_throttled_creates_and_generations_are_retried(client, tuner):
    tuner.throttle_create = 2
    tuner.throttle_generate = 3
    job = genai.start_tuning(client, request())
    assert job.state == "JOB_STATE_PENDING"
    tuner.answer = lambda target, messages: "billing"
    answer = genai.generate(
        client,
        "gemini-2.5-flash",
        [
            {"role": "system", "content": "Answer with one label."},
            {"role": "user", "content": "I was charged twice"},
        ],
        max_output_tokens=8,
    )
    assert answer.text == "billing" and answer.output_tokens == 1 and answer.input_tokens == 8
    assert answer.latency_s > 0 and answer.model_version == "scripted-001"
    target, body = tuner.requests[-1]
    assert len(tuner.requests) == 4  # three 429s, then the answer
    assert target == f"{PARENT}/publishers/google/models/gemini-2.5-flash"
    assert body["systemInstruction"]["parts"] == [{"text": "Answer with one label."}]
    assert body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 8}


def test_thinking_is_held_to_the_budget_and_counted_as_output(client, tuner):
    tuner.answer = lambda target, messages: "billing"
    tuner.thoughts = 5
    messages = [{"role": "user", "content": "I was charged twice"}]
    budget = genai.least_thinking("gemini-2.5-flash")
    answer = genai.generate(client, "gemini-2.5-flash", messages, 8, thinking_budget=budget)
    assert answer.output_tokens == 1 + 5  # the answer and the thinking, both billed
    _, body = tuner.requests[-1]
    sent = body["generationConfig"]["thinkingConfig"]  # proto3 JSON: either field name
    assert sent in ({"thinkingBudget": 0}, {"thinking_budget": 0})


def test_an_answer_that_is_all_thinking_still_counts_its_output(client, tuner):
    tuner.answer = lambda target, messages: ""  # the budget went on thinking
    tuner.thoughts = 8
    answer = genai.generate(client, "gemini-2.5-pro", [{"role": "user", "content": "hi"}], 8)
    assert answer.text == "" and answer.output_tokens == 8


def test_a_blocked_prompt_is_an_empty_answer_of_no_output_tokens(client, tuner):
    """Safety-blocked: no candidate, and usage without a candidates count (proto3 leaves 0
    out). The evaluation scores it as an empty answer rather than lose the measurement."""
    tuner.blocked = lambda target, messages: True
    answer = genai.generate(client, "gemini-2.5-flash", [{"role": "user", "content": "hi"}], 8)
    assert (answer.text, answer.output_tokens, answer.input_tokens) == ("", 0, 1)


def test_too_much_throttling_is_an_error_that_names_the_model(server, tuner):
    settings = genai.GeminiSettings(
        PROJECT, LOCATION, base_url=server.url, attempts=2, first_retry_s=0.01
    )
    tuner.throttle_generate = 5
    with pytest.raises(genai.GeminiError, match=r"gemini-2\.5-flash: generateContent failed") as e:
        genai.generate(
            genai.client(settings), "gemini-2.5-flash", [{"role": "user", "content": "hi"}]
        )
    assert e.value.retryable  # throttled: worth a try later


def test_a_refused_request_is_not_worth_retrying(client, tuner):
    tuner.refuse_generate = True
    with pytest.raises(genai.GeminiError, match="invalid argument") as refused:
        genai.generate(client, "gemini-2.5-flash", [{"role": "user", "content": "hi"}])
    assert not refused.value.retryable
    assert len(tuner.requests) == 1  # the SDK did not retry it either


def test_a_tuned_endpoint_answers_generate_content(client, tuner):
    job = genai.start_tuning(client, request())
    endpoint = follow(client, job.name)[-1].endpoint
    tuner.answer = lambda target, messages: f"from {target.rsplit('/', 1)[1]}"
    answer = genai.generate(client, endpoint, [{"role": "user", "content": "hi"}])
    assert answer.text == f"from {endpoint.rsplit('/', 1)[1]}"


@pytest.mark.parametrize(
    ("path", "body", "complaint"),
    [
        ("tuningJobs", {"baseModel": "gemini-2.5-flash", "epochs": 3}, "epochs"),
        ("tuningJobs", {"baseModel": "gemini-2.5-flash"}, "trainingDatasetUri is required"),
        (
            "tuningJobs",
            {"baseModel": "g", "supervisedTuningSpec": {"trainingDatasetUri": "/tmp/t.jsonl"}},
            "must be a gs:// JSONL file",
        ),
        (
            "publishers/google/models/gemini-2.5-flash:generateContent",
            {"contents": [{"role": "user", "parts": [{"txt": "hi"}]}]},
            "txt",
        ),
        (
            "publishers/google/models/gemini-2.5-flash:generateContent",
            {"contents": [], "generationConfig": {"maxOutputTokens": "many"}},
            "maxOutputTokens",
        ),
    ],
)
def test_bodies_off_the_schema_are_refused_as_the_api_does(server, path, body, complaint):
    answer = requests.post(f"{server.url}/v1/{PARENT}/{path}", json=body, timeout=10)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and complaint in error["message"]


def test_settings_read_vertex_mode_like_the_sdk():
    env = {"GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_GENAI_USE_VERTEXAI": "false"}
    with pytest.raises(ConfigError, match="tunes Gemini on Vertex AI"):
        genai.settings_from_env(env)
    # The newer enterprise switch wins over the older one, as in the SDK.
    env["GOOGLE_GENAI_USE_ENTERPRISE"] = "true"
    assert genai.settings_from_env(env).project == "p"
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        genai.settings_from_env({})


def test_a_tuning_job_that_cannot_be_read_is_an_error_that_names_it(client):
    name = f"{PARENT}/tuningJobs/404"
    with pytest.raises(genai.GeminiError, match=f"{name}: reading the tuning job failed"):
        genai.get_tuning(client, name)
