"""Cancelling a run's job and asking its deployed model, from its run folder, through the real
client libraries (aiplatform's REST clients, google-genai) on the local Vertex AI server."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from droptune import actions
from droptune.cli import app
from droptune.cloud import genai
from droptune.cloud import vertex as adapter
from droptune.local.vertex import VertexServer
from tests.droptune.local.vertex.conftest import PARENT, client_options, wait_until
from tests.droptune.local.vertex.test_endpoints import deploy_echo
from tests.droptune.local.vertex.test_jobs import custom_job
from tests.support.gemini import Script, ScriptedTuner

RUN_ID = "tickets-1700000000123456-2cae3432"


@pytest.fixture
def vertex(tmp_path, monkeypatch):
    """The local Vertex AI server, Gemini played by a script; droptune is pointed at it."""
    tuner = ScriptedTuner(
        default=Script(states=["JOB_STATE_RUNNING"] * 100),
        answer=lambda target, messages: f"{target.rsplit('/', 1)[1]}: {messages[-1]['content']}",
    )
    with VertexServer(tmp_path / "vertex", deploy_timeout=20, tuner=tuner) as server:
        monkeypatch.setenv("DROPTUNE_VERTEX_API", server.url)
        yield server


def run_folder(tmp_path: Path, **files: dict) -> str:
    folder = tmp_path / "runs" / RUN_ID
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / f"{name}.json").write_bytes(orjson.dumps(content))
    return str(folder)


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_cancel_stops_the_training_job_and_says_what_happens_next(tmp_path, vertex):
    api = adapter.VertexApi(vertex.url)
    sleeper = custom_job([sys.executable, "-c", "import time; time.sleep(60)"])
    job = adapter.jobs(api).create_custom_job(parent=PARENT, custom_job=sleeper).name
    folder = run_folder(tmp_path, status={"state": "TRAINING", "training_job": job})
    code, output = cli("runs", "cancel", folder)
    assert code == 0, output
    assert f"cancel {job} (run {RUN_ID} was TRAINING); the run ends CANCELLED" in output
    assert wait_until(lambda: adapter.get_custom_job(api, job).state == "JOB_STATE_CANCELLED")
    code, output = cli("runs", "cancel", folder)  # status.json still says TRAINING
    assert code == 1
    assert f"job {job} already ended JOB_STATE_CANCELLED; the run records it" in output


def test_cancel_stops_a_gemini_tuning_job(tmp_path, vertex):
    client = genai.client(genai.GeminiSettings("p", "us-central1", base_url=vertex.url))
    request = genai.TuningRequest.for_run(
        f"gs://runs/runs/{RUN_ID}/", RUN_ID, {"base_model": "gemini-2.5-flash"}
    )
    job = genai.start_tuning(client, request).name
    folder = run_folder(tmp_path, status={"state": "TRAINING", "training_job": job})
    assert actions.cancel(folder).job == job
    assert genai.get_tuning(client, job).state == "JOB_STATE_CANCELLED"
    with pytest.raises(actions.RunActionError, match="already ended JOB_STATE_CANCELLED"):
        actions.cancel(folder)  # status.json still says TRAINING


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ({"state": "SUCCEEDED"}, f"run {RUN_ID} already ended SUCCEEDED: there is nothing to"),
        ({"state": "QUEUED"}, "is QUEUED and its job has not been created yet; run this again"),
        (
            {"state": "DEPLOYING", "training_job": "projects/p/locations/l/customJobs/1"},
            "is DEPLOYING: its training is over, and cancel stops only training",
        ),
    ],
)
def test_a_run_without_a_running_job_cannot_be_cancelled(tmp_path, status, words):
    code, output = cli("runs", "cancel", run_folder(tmp_path, status=status))
    assert code == 1 and words in output


def test_ask_sends_the_prompt_to_the_deployed_model(tmp_path, vertex):
    from google.cloud import aiplatform_v1

    endpoints = aiplatform_v1.EndpointServiceClient(**client_options(vertex))
    models = aiplatform_v1.ModelServiceClient(**client_options(vertex))
    model, endpoint = deploy_echo(models, endpoints)
    folder = run_folder(tmp_path, endpoint={"endpoint": endpoint, "model": model})
    code, output = cli(
        "runs", "ask", folder, "Hi", "--system", "Be brief.", "--max-new-tokens", "9"
    )
    assert code == 0, output
    echoed = orjson.loads(output)  # the echo model answers with what it was sent
    assert echoed["echo"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert echoed["parameters"] == {"max_new_tokens": 9}


def test_ask_sends_the_system_instruction_the_run_was_tuned_with(tmp_path, vertex):
    from google.cloud import aiplatform_v1

    endpoints = aiplatform_v1.EndpointServiceClient(**client_options(vertex))
    models = aiplatform_v1.ModelServiceClient(**client_options(vertex))
    model, endpoint = deploy_echo(models, endpoints)
    run = {"config": {"system_instruction": "Label the ticket."}}
    folder = run_folder(tmp_path, endpoint={"endpoint": endpoint, "model": model}, run=run)
    sent = [
        orjson.loads(actions.ask(folder, "Refund?", **kw))["echo"] for kw in ({}, {"system": ""})
    ]
    assert [[m["content"] for m in echo["messages"]] for echo in sent] == [
        ["Label the ticket.", "Refund?"],
        ["Refund?"],  # "" sends none
    ]


def test_ask_sends_the_system_prompt_every_training_example_had(tmp_path, vertex):
    """Data that carries its own system turn (the demo's tickets) was tuned with it: the
    validation report records it, and ask sends it."""
    from google.cloud import aiplatform_v1

    endpoints = aiplatform_v1.EndpointServiceClient(**client_options(vertex))
    models = aiplatform_v1.ModelServiceClient(**client_options(vertex))
    model, endpoint = deploy_echo(models, endpoints)
    folder = run_folder(tmp_path, endpoint={"endpoint": endpoint, "model": model})
    (Path(folder) / "validation").mkdir()
    (Path(folder) / "validation" / "report.json").write_bytes(
        orjson.dumps({"system_prompt": "Classify the ticket."})
    )
    echo = orjson.loads(actions.ask(folder, "Refund?"))["echo"]
    assert [m["content"] for m in echo["messages"]] == ["Classify the ticket.", "Refund?"]


@pytest.mark.parametrize("action", [("cancel",), ("ask", "Hi")])
def test_an_unreadable_run_file_is_named(tmp_path, action):
    folder = run_folder(tmp_path)
    (Path(folder) / "status.json").write_text('{"state": ')
    code, output = cli("runs", *action[:1], folder, *action[1:])
    assert code == 1
    assert f"run {RUN_ID}: status.json: unreadable" in output and "restore them" in output


def test_a_run_nobody_took_up_cannot_be_cancelled(tmp_path):
    code, output = cli("runs", "cancel", run_folder(tmp_path, run={"run_id": RUN_ID}))
    assert code == 1 and f"run {RUN_ID} has no status.json" in output


@pytest.mark.parametrize("action", [("cancel",), ("ask", "Hi")])
def test_a_folder_that_holds_no_run_is_a_usage_error(tmp_path, action):
    import subprocess

    argv = [sys.executable, "-m", "droptune", "runs", action[0], run_folder(tmp_path)]
    result = subprocess.run([*argv, *action[1:]], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no run here" in result.stderr and not result.stdout


def test_ask_a_tuned_gemini_model(tmp_path, vertex):
    endpoint = "projects/p/locations/us-central1/endpoints/42"
    folder = run_folder(tmp_path, endpoint={"backend": "gemini", "endpoint": endpoint})
    assert actions.ask(folder, "Where is my refund?") == "42: Where is my refund?"


def test_a_run_with_nothing_deployed_cannot_be_asked(tmp_path):
    code, output = cli("runs", "ask", run_folder(tmp_path, status={"state": "GATED"}), "Hi")
    assert code == 1
    assert f"run {RUN_ID} has no endpoint.json (it is GATED): only a SUCCEEDED run" in output


def test_ask_refuses_a_model_a_later_run_retired(tmp_path, vertex):
    """Custom runs share one endpoint: a later run's model would answer in this one's name."""
    from google.cloud import aiplatform_v1

    endpoints = aiplatform_v1.EndpointServiceClient(**client_options(vertex))
    models = aiplatform_v1.ModelServiceClient(**client_options(vertex))
    model, endpoint = deploy_echo(models, endpoints)
    [deployed] = endpoints.get_endpoint(name=endpoint).deployed_models
    card = {"endpoint": endpoint, "model": model, "deployed_model_id": deployed.id}
    assert "echo" in orjson.loads(actions.ask(run_folder(tmp_path, endpoint=card), "Hi"))
    retired = run_folder(tmp_path / "older", endpoint=card | {"deployed_model_id": "17"})
    with pytest.raises(actions.RunActionError, match=r"model \(17\) is no longer on .*retired"):
        actions.ask(retired, "Hi")


def test_ask_prefers_the_system_turn_training_saw_to_an_instruction_it_did_not_apply(
    tmp_path, vertex
):
    """A system_instruction is added only to conversations without a system turn: when every
    example had its own, that one is what the model was tuned with."""
    from google.cloud import aiplatform_v1

    endpoints = aiplatform_v1.EndpointServiceClient(**client_options(vertex))
    models = aiplatform_v1.ModelServiceClient(**client_options(vertex))
    model, endpoint = deploy_echo(models, endpoints)
    run = {"config": {"system_instruction": "Be helpful."}}
    folder = run_folder(tmp_path, endpoint={"endpoint": endpoint, "model": model}, run=run)
    (Path(folder) / "validation").mkdir()
    (Path(folder) / "validation" / "report.json").write_bytes(
        orjson.dumps({"system_prompt": "Classify the ticket."})
    )
    echo = orjson.loads(actions.ask(folder, "Refund?"))["echo"]
    assert [m["content"] for m in echo["messages"]] == ["Classify the ticket.", "Refund?"]
