"""workflows/pipeline.workflows.yaml on the local engine, against real Cloud Storage (the
emulator) and a scripted Vertex AI: every path a run can take, and what each costs in steps.

Vertex AI's methods are replaced through the engine's call hooks by `ScriptedVertex`
(tests/support/vertex.py), whose training job lasts as long as the test says on the engine's
virtual clock; this is what lets a 2-hour job be counted in steps in milliseconds. The real local Vertex server is exercised end to
end in tests/droptune/local/test_stack.py.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from droptune.config import RunConfig
from droptune.intake.lease import lease_fields
from droptune.local.workflows.engine import Engine, Execution, load_workflow
from droptune.local.workflows.stdlib import Runtime, VirtualClock
from droptune.runs import RunState, RunStatus
from tests.support.vertex import AIPLATFORM, ScriptedVertex, http_error

PIPELINE = Path(__file__).parents[2] / "workflows" / "pipeline.workflows.yaml"
PARENT = "projects/p/locations/us-central1"


EXECUTION = {"GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": "e-1"}


@pytest.fixture
def vertex(gcs_bucket) -> ScriptedVertex:
    return ScriptedVertex(clock=VirtualClock(), bucket=gcs_bucket)


def queue_run(bucket: Any, run_id: str, **config: Any) -> None:
    """A run as the upload function leaves it: run.json and a QUEUED status.json."""
    record = {"run_id": run_id, "config": RunConfig(**config).to_dict()}
    bucket.blob(f"runs/{run_id}/run.json").upload_from_string(
        json.dumps(record), content_type="application/json"
    )
    status = RunStatus.start("reading the upload")
    status.advance(RunState.QUEUED, "valid: 10 examples")
    bucket.blob(f"runs/{run_id}/status.json").upload_from_string(
        status.to_json(), content_type="application/json"
    )


def event(bucket: Any, run_id: str, backend: str = "custom") -> dict:
    data = {"run_id": run_id, "run_uri": f"gs://{bucket.name}/runs/{run_id}/", "backend": backend}
    message = {
        "data": base64.b64encode(json.dumps(data).encode()).decode(),
        "attributes": {"run_id": run_id, "backend": backend},
        "messageId": "1",
    }
    return {"data": {"message": message, "subscription": "projects/p/subscriptions/s"}}


def execute(
    vertex: ScriptedVertex,
    gcs_server: Any,
    run_id: str,
    hooks: dict | None = None,
    env: dict[str, str] | None = None,
) -> Execution:
    runtime = Runtime(
        env={
            "GOOGLE_CLOUD_PROJECT_ID": "p",
            "GOOGLE_CLOUD_LOCATION": "us-central1",
            "DROPTUNE_RUNS_BUCKET": vertex.bucket.name,
            "DROPTUNE_TRAINER_IMAGE": "us-docker.pkg.dev/p/droptune/trainer:1",
            **(env or {}),
        },
        clock=vertex.clock,
        connector_roots={"storage": gcs_server.url},
    )
    engine = Engine(
        load_workflow(str(PIPELINE)), runtime, call_hooks={**vertex.hooks(), **(hooks or {})}
    )
    return engine.run(event(vertex.bucket, run_id))


def status_of(bucket: Any, run_id: str) -> dict:
    return json.loads(bucket.blob(f"runs/{run_id}/status.json").download_as_bytes())


def states(bucket: Any, run_id: str) -> list[str]:
    return [h["state"] for h in status_of(bucket, run_id)["history"]]


def test_more_training_machines_are_a_workers_pool_beside_the_primary(vertex, gcs_server):
    queue_run(vertex.bucket, "multi", training_machines=3, accelerator_count=8)
    execute(vertex, gcs_server, "multi")
    primary, workers = next(iter(vertex.jobs.values()))["jobSpec"]["workerPoolSpecs"]
    assert primary["replicaCount"] == 1 and workers["replicaCount"] == 2
    assert workers["machineSpec"] == primary["machineSpec"]
    assert workers["machineSpec"]["acceleratorCount"] == 8
    assert workers["containerSpec"] == primary["containerSpec"]


def test_the_job_runs_as_the_deployments_account_and_logs_to_its_tensorboard(vertex, gcs_server):
    queue_run(vertex.bucket, "plain")
    execute(vertex, gcs_server, "plain")
    queue_run(vertex.bucket, "set")
    board = "projects/p/locations/us-central1/tensorboards/5"
    account = "droptune-trainer@p.iam.gserviceaccount.com"
    env = {"DROPTUNE_TENSORBOARD": board, "DROPTUNE_JOB_SERVICE_ACCOUNT": account}
    execute(vertex, gcs_server, "set", env=env)
    plain, configured = (job["jobSpec"] for job in vertex.jobs.values())
    assert plain["tensorboard"] == plain["serviceAccount"] == ""  # the API's "not set"
    assert configured["tensorboard"] == board and configured["serviceAccount"] == account


def test_a_run_trains_passes_the_gate_and_is_deployed(vertex, gcs_server):
    queue_run(vertex.bucket, "r1")
    execution = execute(vertex, gcs_server, "r1")
    assert execution.state == "SUCCEEDED", execution.error
    assert execution.result["state"] == "SUCCEEDED"
    assert states(vertex.bucket, "r1") == [
        "VALIDATING", "QUEUED", "TRAINING", "EVALUATING", "DEPLOYING", "SUCCEEDED",
    ]  # fmt: skip
    job = next(iter(vertex.jobs.values()))
    pool = job["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"] == {
        "machineType": "g2-standard-8",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 1,
    }
    assert pool["containerSpec"]["args"] == [
        "train",
        "--run-dir",
        f"gs://{vertex.bucket.name}/runs/r1/",
    ]
    assert job["labels"] == {"app": "droptune", "run_id": "r1", "droptune": "training-job"}
    card = json.loads(vertex.bucket.blob("runs/r1/endpoint.json").download_as_bytes())
    assert card["endpoint"] == f"{PARENT}/endpoints/droptune"
    assert (
        card["predict_url"]
        == f"https://us-central1-aiplatform.googleapis.com/v1/{PARENT}/endpoints/droptune:predict"
    )
    assert card["request_example"]["instances"][0]["messages"][0]["role"] == "user"
    assert "curl -X POST" in card["examples"]["curl"] and card["model"] == f"{PARENT}/models/7"
    status = status_of(vertex.bucket, "r1")
    assert status["gate"]["passed"] and status["endpoint"] == card["endpoint"]
    assert status["training_job"] == job["name"]
    assert execution.logs[-1]["data"]["state"] == "SUCCEEDED"


def test_a_run_with_a_thousand_labels_fits_the_workflows_memory(vertex, gcs_server):
    """metrics.json of 1,000 labels is megabytes (a confusion matrix per model), over the
    2 MB an HTTP response and the 512 KB of variables an execution may hold: the workflow
    reads gate.json, the decision alone."""
    vertex.labels = 1000
    queue_run(vertex.bucket, "many")
    execution = execute(vertex, gcs_server, "many")
    assert execution.state == "SUCCEEDED", execution.error
    size = vertex.bucket.get_blob("runs/many/evaluation/metrics.json").size
    assert size > 2 * 1024 * 1024
    assert vertex.bucket.get_blob("runs/many/evaluation/gate.json").size < 1024


def test_a_two_hour_job_costs_104_steps(vertex, gcs_server):
    """100, the smoke test's try, the endpoint's variable and the deploy_strategy loop that
    retires nothing by default; then creating the endpoint (the first run) or retiring the
    model it had (a call to `retire`, later runs). The job outlives the connector's own
    30-minute wait."""
    vertex.job_seconds = 2 * 3600
    steps = []
    for run_id in ("first", "later"):
        queue_run(vertex.bucket, run_id)
        execution = execute(vertex, gcs_server, run_id)
        assert execution.state == "SUCCEEDED", execution.error
        steps.append(execution.step_count)
    polls = vertex.calls.count("customJobs.get")
    assert polls <= 2 * 16
    assert steps == [104, 104]


def test_a_second_deployment_replaces_the_first_model_on_the_endpoint(vertex, gcs_server):
    for run_id in ("first", "second"):
        queue_run(vertex.bucket, run_id)
        assert execute(vertex, gcs_server, run_id).result["state"] == "SUCCEEDED"
    (endpoint,) = vertex.endpoints.values()
    assert len(endpoint["deployedModels"]) == 1
    assert vertex.calls.count("endpoints.create") == 1
    assert vertex.calls.count("endpoints.undeployModel") == 1


def test_replace_retires_the_old_model_before_the_new_one_is_deployed(vertex, gcs_server):
    """deploy_strategy replace: never two models on the endpoint, so one serving machine's
    GPU quota is enough; the endpoint has no model between the undeploy and the deploy."""
    queue_run(vertex.bucket, "first")
    assert execute(vertex, gcs_server, "first").result["state"] == "SUCCEEDED"
    (endpoint,) = vertex.endpoints.values()
    (first,) = endpoint["deployedModels"]
    seen: list[int] = []
    deploy = vertex.hooks()[AIPLATFORM + "endpoints.deployModel"]

    def counting(**kwargs: Any) -> dict:
        seen.append(len(endpoint.get("deployedModels", [])))
        return deploy(**kwargs)

    start = len(vertex.calls)
    queue_run(vertex.bucket, "second", deploy_strategy="replace")
    execution = execute(
        vertex, gcs_server, "second", hooks={AIPLATFORM + "endpoints.deployModel": counting}
    )
    assert execution.state == "SUCCEEDED", execution.error
    assert seen == [0]  # the first model had left when the second was deployed
    calls = vertex.calls[start:]
    assert calls.index("endpoints.undeployModel") < calls.index("endpoints.deployModel")
    assert calls.count("endpoints.undeployModel") == 1
    (second,) = endpoint["deployedModels"]
    assert second["id"] != first["id"] and endpoint["trafficSplit"] == {second["id"]: 100}


def test_replace_leaves_no_model_when_the_new_one_fails_its_smoke_test(vertex, gcs_server):
    queue_run(vertex.bucket, "good")
    assert execute(vertex, gcs_server, "good").result["state"] == "SUCCEEDED"
    vertex.serving_fails = True
    queue_run(vertex.bucket, "broken", deploy_strategy="replace")
    execution = execute(vertex, gcs_server, "broken")
    assert execution.state == "FAILED" and "SmokeTestFailed" in execution.error["tags"]
    (endpoint,) = vertex.endpoints.values()
    assert endpoint["deployedModels"] == [] and endpoint["trafficSplit"] == {}
    message = status_of(vertex.bucket, "broken")["error"]["message"]
    assert "the endpoint has no model until a run deploys one" in message


def test_a_model_that_fails_its_smoke_prediction_gives_the_traffic_back(vertex, gcs_server):
    queue_run(vertex.bucket, "good")
    assert execute(vertex, gcs_server, "good").result["state"] == "SUCCEEDED"
    (endpoint,) = vertex.endpoints.values()
    (good,) = endpoint["deployedModels"]
    assert endpoint["trafficSplit"] == {good["id"]: 100}

    vertex.serving_fails = True
    queue_run(vertex.bucket, "broken")
    execution = execute(vertex, gcs_server, "broken")
    assert execution.state == "FAILED" and "SmokeTestFailed" in execution.error["tags"]
    assert endpoint["deployedModels"] == [good] and endpoint["trafficSplit"] == {good["id"]: 100}
    status = status_of(vertex.bucket, "broken")
    assert status["state"] == "FAILED"
    assert "failed its smoke prediction (HTTP 500)" in status["error"]["message"]
    assert "traffic went back" in status["error"]["message"]
    assert not vertex.bucket.blob("runs/broken/endpoint.json").exists()

    queue_run(vertex.bucket, "first-ever")  # on an endpoint with no model before it
    del vertex.endpoints[endpoint["name"]]
    assert execute(vertex, gcs_server, "first-ever").state == "FAILED"
    (endpoint,) = vertex.endpoints.values()
    assert endpoint["deployedModels"] == [] and endpoint["trafficSplit"] == {}


def test_a_rollback_leaves_the_traffic_a_later_deployment_took(vertex, gcs_server):
    """Run 'broken' fails its smoke test after run 'later' deployed: the traffic stays with
    'later' (restoring the split from before 'broken' would give it back to the old model)."""
    queue_run(vertex.bucket, "old")
    assert execute(vertex, gcs_server, "old").result["state"] == "SUCCEEDED"
    (endpoint,) = vertex.endpoints.values()

    deploy = vertex.hooks()[AIPLATFORM + "endpoints.deployModel"]

    def another_run_deploys_then_this_one_fails(**kwargs: Any) -> dict:
        body = {"deployedModel": {"model": f"{PARENT}/models/8"}, "trafficSplit": {"0": 100}}
        deploy(endpoint=endpoint["name"], body=body, region="r", connector_params={})
        raise http_error(500)

    queue_run(vertex.bucket, "broken")
    hooks = {AIPLATFORM + "endpoints.predict": another_run_deploys_then_this_one_fails}
    execution = execute(vertex, gcs_server, "broken", hooks=hooks)
    assert execution.state == "FAILED" and "SmokeTestFailed" in execution.error["tags"]
    models = [m["model"] for m in endpoint["deployedModels"]]
    assert models == [f"{PARENT}/models/7", f"{PARENT}/models/8"]
    later = endpoint["deployedModels"][1]["id"]
    assert endpoint["trafficSplit"] == {later: 100}


def test_a_rollback_gives_the_traffic_to_the_newest_model_when_the_old_one_is_gone(
    vertex, gcs_server
):
    """Run 'later' deployed and retired the old model while this run's deploy went on (this
    one ended with the traffic): the split from before this deploy names a model that is
    gone, so the traffic goes to 'later', the newest deployed."""
    queue_run(vertex.bucket, "old")
    assert execute(vertex, gcs_server, "old").result["state"] == "SUCCEEDED"
    (endpoint,) = vertex.endpoints.values()
    (old,) = endpoint["deployedModels"]
    hooks = vertex.hooks()
    deploy, undeploy = (hooks[AIPLATFORM + f"endpoints.{m}Model"] for m in ("deploy", "undeploy"))

    def later_run_deployed_and_retired_the_old_one_then_this_one_fails(**kwargs: Any) -> dict:
        (mine,) = endpoint["trafficSplit"]
        body = {
            "deployedModel": {"model": f"{PARENT}/models/8"},
            "trafficSplit": {"0": 0, mine: 100},
        }
        deploy(endpoint=endpoint["name"], body=body, region="r", connector_params={})
        undeploy(endpoint=endpoint["name"], body={"deployedModelId": old["id"]}, region="r")
        raise http_error(500)

    queue_run(vertex.bucket, "broken")
    hooks = {
        AIPLATFORM
        + "endpoints.predict": later_run_deployed_and_retired_the_old_one_then_this_one_fails
    }
    execution = execute(vertex, gcs_server, "broken", hooks=hooks)
    assert execution.state == "FAILED" and "SmokeTestFailed" in execution.error["tags"]
    (later,) = endpoint["deployedModels"]
    assert later["model"] == f"{PARENT}/models/8" and endpoint["trafficSplit"] == {later["id"]: 100}


def test_a_model_another_run_retired_first_does_not_fail_this_one(vertex, gcs_server):
    """Two runs deploy at the same time: both saw the old model, and the other retired it."""
    queue_run(vertex.bucket, "old")
    execute(vertex, gcs_server, "old")
    undeploy = vertex.hooks()[AIPLATFORM + "endpoints.undeployModel"]

    def retired_by_the_other_run(**kwargs: Any) -> dict:
        undeploy(**kwargs)  # the other run's call
        return undeploy(**kwargs)  # this run's: 404

    queue_run(vertex.bucket, "new")
    hooks = {AIPLATFORM + "endpoints.undeployModel": retired_by_the_other_run}
    execution = execute(vertex, gcs_server, "new", hooks=hooks)
    assert execution.result["state"] == "SUCCEEDED", execution.error
    assert status_of(vertex.bucket, "new")["state"] == "SUCCEEDED"


def test_a_failed_job_fails_the_run_with_the_error(vertex, gcs_server):
    vertex.job_end = "JOB_STATE_FAILED"
    queue_run(vertex.bucket, "bad")
    execution = execute(vertex, gcs_server, "bad")
    assert execution.state == "FAILED"
    assert "TrainingJobFailed" in execution.error["tags"]
    status = status_of(vertex.bucket, "bad")
    assert status["state"] == "FAILED"
    assert "exited with 1" in status["error"]["message"]
    assert status["error"]["tags"] == ["TrainingJobFailed"]
    assert "models.upload" not in vertex.calls


def test_a_gate_that_is_missed_stops_before_deployment(vertex, gcs_server):
    vertex.gate_passed = False
    queue_run(vertex.bucket, "gated")
    execution = execute(vertex, gcs_server, "gated")
    assert execution.result["state"] == "GATED"
    status = status_of(vertex.bucket, "gated")
    assert status["state"] == "GATED" and not status["gate"]["passed"]
    assert "does not exceed" in status["detail"]
    assert not any(c.startswith(("models.", "endpoints.")) for c in vertex.calls)


def test_a_job_cancelled_outside_the_workflow_cancels_the_run(vertex, gcs_server):
    vertex.job_end = "JOB_STATE_CANCELLED"
    queue_run(vertex.bucket, "stopped")
    assert execute(vertex, gcs_server, "stopped").result["state"] == "CANCELLED"
    assert states(vertex.bucket, "stopped")[-1] == "CANCELLED"


def test_a_job_past_its_deadline_is_cancelled_and_the_run_fails(vertex, gcs_server):
    vertex.job_seconds = 10 * 3600
    queue_run(vertex.bucket, "slow", training_timeout_minutes=60)
    execution = execute(vertex, gcs_server, "slow")
    assert execution.state == "FAILED" and "TimeoutError" in execution.error["tags"]
    assert "customJobs.cancel" in vertex.calls
    assert status_of(vertex.bucket, "slow")["state"] == "FAILED"


def test_a_run_that_fails_while_its_job_runs_cancels_the_job(vertex, gcs_server):
    """Here the job can no longer be followed (every poll answers 500): the run ends FAILED,
    and its GPU job does not run on unwatched. Vertex AI's own timeout backs that up."""
    vertex.job_seconds = 10 * 3600
    queue_run(vertex.bucket, "lost", training_timeout_minutes=60)

    def broken_get(**kwargs: Any) -> dict:
        raise http_error(500)

    hooks = {AIPLATFORM + "customJobs.get": broken_get}
    execution = execute(vertex, gcs_server, "lost", hooks=hooks)
    assert execution.state == "FAILED"
    assert status_of(vertex.bucket, "lost")["state"] == "FAILED"
    (job,) = vertex.jobs.values()
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert job["jobSpec"]["scheduling"] == {"timeout": "4200s"}  # 60 minutes + 10


def test_a_duplicate_message_does_not_start_a_second_job(vertex, gcs_server):
    queue_run(vertex.bucket, "twice")
    execute(vertex, gcs_server, "twice")
    again = execute(vertex, gcs_server, "twice")
    assert again.state == "SUCCEEDED" and again.result["state"] == "SUCCEEDED"
    assert "another execution" in again.result["detail"]
    assert vertex.calls.count("customJobs.create") == 1


def test_an_execution_that_loses_the_claim_to_another_stops_quietly(vertex, gcs_server):
    """A duplicate message's execution read the same QUEUED status.json; the other execution
    claimed the run in between. This one neither fails the run nor starts a job."""
    queue_run(vertex.bucket, "raced")
    blob = vertex.bucket.blob("runs/raced/status.json")

    def claimed_first(**kwargs: Any) -> dict:
        winner = status_of(vertex.bucket, "raced") | {"state": "TRAINING", "execution": "other"}
        blob.upload_from_string(json.dumps(winner), content_type="application/json")
        raise http_error(412)  # the write this execution sent, on the generation it read

    hooks = {"googleapis.storage.v1.objects.insert": claimed_first}
    execution = execute(vertex, gcs_server, "raced", hooks=hooks, env=EXECUTION)
    assert execution.state == "SUCCEEDED", execution.error
    assert (
        execution.result["state"] == "TRAINING"
        and "another execution" in execution.result["detail"]
    )
    assert status_of(vertex.bucket, "raced")["execution"] == "other"  # left to the winner
    assert vertex.calls == []


def test_a_conditional_write_refused_after_its_own_retry_fails_the_run(vertex, gcs_server):
    """Here the write went through but its answer was lost, and the retry was refused: the
    newest status.json is this execution's own, so nothing else owns the run."""
    queue_run(vertex.bucket, "echo")
    blob = vertex.bucket.blob("runs/echo/status.json")

    def written_then_refused(**kwargs: Any) -> dict:
        mine = status_of(vertex.bucket, "echo") | {"state": "TRAINING", "execution": "e-1"}
        blob.upload_from_string(json.dumps(mine), content_type="application/json")
        raise http_error(412)

    hooks = {"googleapis.storage.v1.objects.insert": written_then_refused}
    execution = execute(vertex, gcs_server, "echo", hooks=hooks, env=EXECUTION)
    assert execution.state == "FAILED" and execution.error["code"] == 412


def test_throttled_job_creation_is_retried(vertex, gcs_server):
    vertex.create_failures = [429, 503]
    queue_run(vertex.bucket, "busy")
    assert execute(vertex, gcs_server, "busy").result["state"] == "SUCCEEDED"
    assert vertex.calls.count("customJobs.create") == 3


def test_an_error_that_may_have_created_the_job_is_not_retried(vertex, gcs_server):
    vertex.create_failures = [500]
    queue_run(vertex.bucket, "unsure")
    execution = execute(vertex, gcs_server, "unsure")
    assert execution.state == "FAILED" and execution.error["code"] == 500
    assert vertex.calls.count("customJobs.create") == 1
    assert status_of(vertex.bucket, "unsure")["error"]["code"] == 500


def test_a_message_that_arrives_before_the_run_is_queued_waits_for_it(vertex, gcs_server):
    """The upload function publishes, then records QUEUED: the workflow may read VALIDATING."""
    queue_run(vertex.bucket, "early")
    queued = vertex.bucket.blob("runs/early/status.json").download_as_bytes()
    status = vertex.bucket.blob("runs/early/status.json")
    status.upload_from_string(validating(vertex.clock, 60), content_type="application/json")
    waits = []

    def sleep(seconds: float) -> None:  # the function records QUEUED two minutes later
        waits.append(seconds)
        vertex.clock.sleep(seconds)
        if len(waits) == 60:  # its lease renewed meanwhile
            status.upload_from_string(queued, content_type="application/json")
        elif len(waits) % 10 == 0:
            status.upload_from_string(validating(vertex.clock, 60), content_type="application/json")

    execution = execute(vertex, gcs_server, "early", hooks={"sys.sleep": sleep})
    assert execution.result["state"] == "SUCCEEDED", execution.error
    assert states(vertex.bucket, "early")[:3] == ["VALIDATING", "QUEUED", "TRAINING"]
    assert vertex.calls.count("customJobs.create") == 1


def validating(clock: VirtualClock, lease_seconds: float) -> bytes:
    """status.json while the upload function holds the run, its lease ending in
    `lease_seconds` on the workflow's clock."""
    status = RunStatus.start("reading the upload")
    now = datetime.fromtimestamp(clock.now(), UTC)
    status.extra["lease"] = lease_fields("1", lease_seconds, now)
    return status.to_json()


def test_a_run_whose_upload_attempt_died_is_left_to_its_retry(vertex, gcs_server):
    """The upload function died between publishing and recording QUEUED: its retry publishes
    again, so this execution stops waiting a minute after the lease ended and leaves the run."""
    queue_run(vertex.bucket, "stuck")
    status = vertex.bucket.blob("runs/stuck/status.json")
    stuck = validating(vertex.clock, lease_seconds=30)
    status.upload_from_string(stuck, content_type="application/json")
    start = vertex.clock.now()
    execution = execute(vertex, gcs_server, "stuck")
    assert execution.state == "SUCCEEDED" and execution.result["state"] == "VALIDATING"
    assert 90 < vertex.clock.now() - start <= 94  # 30 s of lease and a minute's grace
    assert status.download_as_bytes() == stuck and vertex.calls == []


def test_transient_poll_errors_over_a_long_job_do_not_fail_it(vertex, gcs_server):
    vertex.job_seconds = 2 * 3600
    queue_run(vertex.bucket, "blips")
    get_job = vertex.hooks()[AIPLATFORM + "customJobs.get"]
    calls = []

    def flaky_get(**kwargs: Any) -> dict:  # every other poll answers 503 first
        calls.append(1)
        if len(calls) % 2:
            raise http_error(503)
        return get_job(**kwargs)

    hooks = {AIPLATFORM + "customJobs.get": flaky_get}
    execution = execute(vertex, gcs_server, "blips", hooks=hooks)
    assert execution.result["state"] == "SUCCEEDED", execution.error
    assert len(calls) // 2 > 5  # more blips than one poll's retries would allow


def test_a_backend_this_workflow_lacks_fails_the_run_with_the_reason(vertex, gcs_server):
    queue_run(vertex.bucket, "gem", backend="gemini")
    execution = execute(vertex, gcs_server, "gem")
    assert execution.state == "FAILED" and "UnsupportedBackend" in execution.error["tags"]
    status = status_of(vertex.bucket, "gem")
    assert status["state"] == "FAILED" and "backend gemini" in status["error"]["message"]
    assert vertex.calls == []


def test_cpu_only_machines_get_no_accelerator(vertex, gcs_server):
    queue_run(
        vertex.bucket,
        "cpu",
        machine_type="n1-standard-8",
        accelerator_type="ACCELERATOR_TYPE_UNSPECIFIED",
    )
    execute(vertex, gcs_server, "cpu")
    job = next(iter(vertex.jobs.values()))
    # Vertex AI reads the unspecified type with a count of 0 as "no accelerator".
    assert job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {
        "machineType": "n1-standard-8",
        "acceleratorType": "ACCELERATOR_TYPE_UNSPECIFIED",
        "acceleratorCount": 0,
    }
