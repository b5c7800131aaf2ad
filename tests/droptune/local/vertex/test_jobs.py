"""CustomJobs through the real JobServiceClient (REST transport) and raw REST."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud.aiplatform_v1 import JobState

from tests.droptune.local.vertex.conftest import PARENT, wait_until

ENDED = (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED)

CHECK_ENV = textwrap.dedent(
    """
    import json, os, pathlib
    cluster = json.loads(os.environ["CLUSTER_SPEC"])
    assert cluster["task"] == {"type": "workerpool0", "index": 0}, cluster
    assert list(cluster["cluster"]) == ["workerpool0"], cluster
    assert os.environ["AIP_CHECKPOINT_DIR"].endswith("/checkpoints/")
    assert os.environ["AIP_TENSORBOARD_LOG_DIR"].endswith("/logs/")
    assert os.environ["FROM_SERVER"] == "server" and os.environ["FROM_SPEC"] == "spec"
    model = pathlib.Path(os.environ["AIP_MODEL_DIR"])
    model.mkdir(parents=True)
    (model / "weights.txt").write_text(os.environ["CLOUD_ML_JOB_ID"])
    print("trained")
    """
)


def custom_job(command: list[str], prefix: str | None = None, **spec) -> dict:
    job_spec = {
        "worker_pool_specs": [
            {
                "replica_count": 1,
                "machine_spec": {"machine_type": "n1-standard-4"},
                "container_spec": {"image_uri": "trainer:latest", "command": command, **spec},
            }
        ]
    }
    if prefix:
        job_spec["base_output_directory"] = {"output_uri_prefix": prefix}
    return {"display_name": "test job", "labels": {"run_id": "r1"}, "job_spec": job_spec}


def finished(jobs, name: str, timeout: float = 20.0):
    return wait_until(
        lambda: (job := jobs.get_custom_job(name=name)).state in ENDED and job, timeout
    )


def test_a_job_runs_with_the_vertex_environment_and_its_log_is_copied(jobs, vertex, tmp_path):
    vertex.runtime.env["FROM_SERVER"] = "server"
    spec_env = [{"name": "FROM_SPEC", "value": "spec"}]
    created = jobs.create_custom_job(
        parent=PARENT,
        custom_job=custom_job(["python", "-c", CHECK_ENV], str(tmp_path / "run"), env=spec_env),
    )
    assert created.state == JobState.JOB_STATE_PENDING
    assert created.name.startswith(f"{PARENT}/customJobs/")
    job_id = created.name.rsplit("/", 1)[1]
    assert job_id.isdigit()

    job = finished(jobs, created.name)
    assert job.state == JobState.JOB_STATE_SUCCEEDED, job.error.message
    assert job.start_time and job.end_time and job.create_time <= job.start_time <= job.end_time
    assert job.labels["run_id"] == "r1" and job.display_name == "test job"
    assert (tmp_path / "run/model/weights.txt").read_text() == job_id
    assert "trained" in (tmp_path / "run/training/job.log").read_text()


def test_a_failing_job_reports_its_exit_status_and_last_lines(jobs, tmp_path):
    script = "import sys\nfor i in range(40): print('line', i)\nsys.exit(3)"
    created = jobs.create_custom_job(
        parent=PARENT, custom_job=custom_job(["python3", "-c", script], str(tmp_path / "run"))
    )
    job = finished(jobs, created.name)
    assert job.state == JobState.JOB_STATE_FAILED
    assert job.error.code == 3
    assert "The replica workerpool0-0 exited with a non-zero status of 3." in job.error.message
    assert "line 39" in job.error.message and "line 5\n" not in job.error.message
    assert job.end_time


def test_cancel_stops_the_process_and_its_children(jobs, tmp_path):
    script = textwrap.dedent(
        """
        import os, pathlib, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path(os.environ["PIDS"]).write_text(f"{os.getpid()} {child.pid}")
        time.sleep(60)
        """
    )
    pids = tmp_path / "pids"
    created = jobs.create_custom_job(
        parent=PARENT,
        custom_job=custom_job(["python", "-c", script], env=[{"name": "PIDS", "value": str(pids)}]),
    )
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    assert jobs.get_custom_job(name=created.name).state == JobState.JOB_STATE_RUNNING

    jobs.cancel_custom_job(name=created.name)
    job = finished(jobs, created.name)
    assert job.state == JobState.JOB_STATE_CANCELLED
    assert job.end_time
    for pid in map(int, pids.read_text().split()):
        wait_until(lambda pid=pid: gone(pid))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


REPORT_REPLICA = textwrap.dedent(
    """
    import json, os, pathlib, sys
    spec = json.loads(os.environ["CLUSTER_SPEC"])
    task = spec["task"]
    name = f"{task['type']}-{task['index']}"
    pathlib.Path(os.environ["OUT"], name).write_text(json.dumps(spec["cluster"]))
    print("replica", name)
    sys.exit(int(os.environ.get("FAIL_" + name.replace("-", "_"), "0")))
    """
)


def two_pools(tmp_path: Path, workers: int, **env: str) -> dict:
    """A job whose primary and `workers` workers each write their CLUSTER_SPEC to OUT."""
    variables = [{"name": k, "value": v} for k, v in {"OUT": str(tmp_path), **env}.items()]
    job = custom_job(["python", "-c", REPORT_REPLICA], str(tmp_path / "run"), env=variables)
    pools = job["job_spec"]["worker_pool_specs"]
    pools.append({**pools[0], "replica_count": workers})
    return job


def test_the_workers_pool_runs_each_replica_with_the_whole_cluster(jobs, tmp_path):
    created = jobs.create_custom_job(parent=PARENT, custom_job=two_pools(tmp_path, 2))
    job = finished(jobs, created.name)
    assert job.state == JobState.JOB_STATE_SUCCEEDED, job.error.message
    seen = {
        name: json.loads((tmp_path / name).read_text())
        for name in ("workerpool0-0", "workerpool1-0", "workerpool1-1")
    }
    cluster = seen["workerpool0-0"]
    assert all(other == cluster for other in seen.values())  # one cluster, as every replica sees it
    assert len(cluster["workerpool0"]) == 1 and len(cluster["workerpool1"]) == 2
    addresses = [*cluster["workerpool0"], *cluster["workerpool1"]]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert "replica workerpool0-0" in (tmp_path / "run/training/job.log").read_text()
    assert "replica workerpool1-1" in (tmp_path / "run/training/job-workerpool1-1.log").read_text()


def test_a_failing_worker_fails_the_job_and_stops_the_others(jobs, tmp_path):
    slow_primary = REPORT_REPLICA.replace(
        "sys.exit(",
        "import time; time.sleep(60 if task['type'] == 'workerpool0' else 0); sys.exit(",
    )
    job = two_pools(tmp_path, 1, FAIL_workerpool1_0="4")
    job["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"] = [
        "python",
        "-c",
        slow_primary,
    ]
    started = time.monotonic()
    created = jobs.create_custom_job(parent=PARENT, custom_job=job)
    job = finished(jobs, created.name)
    assert job.state == JobState.JOB_STATE_FAILED
    assert "The replica workerpool1-0 exited with a non-zero status of 4." in job.error.message
    assert time.monotonic() - started < 30  # the primary was stopped, not waited for


def test_get_and_list_with_a_label_filter(jobs):
    a = jobs.create_custom_job(parent=PARENT, custom_job=custom_job(["python", "-c", "pass"]))
    other = custom_job(["python", "-c", "pass"]) | {"labels": {"run_id": "r2"}}
    b = jobs.create_custom_job(parent=PARENT, custom_job=other)
    listed = [
        job.name
        for job in jobs.list_custom_jobs(request={"parent": PARENT, "filter": "labels.run_id=r2"})
    ]
    assert listed == [b.name]
    assert {job.name for job in jobs.list_custom_jobs(parent=PARENT)} == {a.name, b.name}
    with pytest.raises(gexc.NotFound):
        jobs.get_custom_job(name=f"{PARENT}/customJobs/123")


def test_a_job_log_goes_to_cloud_storage(vertex, jobs, gcs_server, gcs_bucket):
    vertex.runtime.env["STORAGE_EMULATOR_HOST"] = gcs_server.url
    prefix = f"gs://{gcs_bucket.name}/runs/r1"
    created = jobs.create_custom_job(
        parent=PARENT,
        custom_job=custom_job(["python", "-c", "print('hello from the job')"], prefix),
    )
    assert finished(jobs, created.name).state == JobState.JOB_STATE_SUCCEEDED
    log = gcs_bucket.blob("runs/r1/training/job.log").download_as_text()
    assert "hello from the job" in log


# --- raw REST: request checks and error shapes -------------------------------------------
def post(vertex, path: str, body: dict) -> requests.Response:
    return requests.post(f"{vertex.url}/v1/{PARENT}/{path}", json=body, timeout=10)


def camel(job: dict) -> dict:
    """The REST body of `custom_job(...)` (the API's JSON is camelCase)."""
    pool = job["job_spec"]["worker_pool_specs"][0]
    return {
        "displayName": job["display_name"],
        "jobSpec": {
            "workerPoolSpecs": [
                {
                    "replicaCount": pool["replica_count"],
                    "machineSpec": {"machineType": "n1-standard-4"},
                    "containerSpec": {
                        "imageUri": "trainer",
                        "command": pool["container_spec"]["command"],
                    },
                }
            ]
        },
    }


def assert_error(response: requests.Response, code: int, status: str, *words: str) -> None:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["status"] == status
    for word in words:
        assert word in error["message"], error["message"]


def test_unknown_and_mistyped_fields_are_refused(vertex):
    body = camel(custom_job(["python", "-c", "pass"]))
    body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUrl"] = "typo"
    assert_error(post(vertex, "customJobs", body), 400, "INVALID_ARGUMENT", "imageUrl")
    body = camel(custom_job(["python", "-c", "pass"])) | {"labels": "not a map"}
    assert_error(post(vertex, "customJobs", body), 400, "INVALID_ARGUMENT", "labels")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda b: b["jobSpec"].pop("workerPoolSpecs"), ["workerPoolSpecs"]),
        (
            lambda b: b["jobSpec"]["workerPoolSpecs"][0]["containerSpec"].pop("imageUri"),
            ["imageUri"],
        ),
        (
            lambda b: b["jobSpec"]["workerPoolSpecs"][0].update(replicaCount=2),
            ["workerPoolSpecs[0].replicaCount is 2", "workerPoolSpecs[1]"],
        ),
        (
            lambda b: b["jobSpec"]["workerPoolSpecs"].extend(
                [{}, {}, b["jobSpec"]["workerPoolSpecs"][0]]
            ),
            ["evaluators (3) are not run locally"],
        ),
        (
            lambda b: b["jobSpec"]["workerPoolSpecs"].append({"replicaCount": 1}),
            ["workerPoolSpecs[1].machineSpec.machineType"],
        ),
        (lambda b: b.pop("displayName"), ["displayName"]),
    ],
)
def test_missing_or_unsupported_parts_are_named(vertex, change, words):
    body = camel(custom_job(["python", "-c", "pass"]))
    change(body)
    assert_error(post(vertex, "customJobs", body), 400, "INVALID_ARGUMENT", *words)


def test_unknown_jobs_and_late_cancels(vertex, jobs):
    response = requests.get(f"{vertex.url}/v1/{PARENT}/customJobs/42", timeout=10)
    assert_error(response, 404, "NOT_FOUND", "customJobs/42")
    created = jobs.create_custom_job(parent=PARENT, custom_job=custom_job(["python", "-c", "pass"]))
    finished(jobs, created.name)
    response = requests.post(f"{vertex.url}/v1/{created.name}:cancel", json={}, timeout=10)
    assert_error(response, 400, "FAILED_PRECONDITION", "JOB_STATE_SUCCEEDED")
    assert json.loads(requests.get(f"{vertex.url}/v1/{created.name}", timeout=10).text)[
        "state"
    ] == ("JOB_STATE_SUCCEEDED")


def test_the_default_command_is_the_trainer_entry_point():
    from droptune.local.vertex.processes import container_argv

    argv = container_argv(
        [], ["train", "--run", "$(AIP_MODEL_DIR)"], {"AIP_MODEL_DIR": "gs://b/m/"}
    )
    assert argv[1:] == ["-m", "droptune_trainer", "train", "--run", "gs://b/m/"]
    assert Path(argv[0]).name.startswith("python")
