"""The server as a whole: routing, many concurrent polls, stopping everything it started."""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1, storage

from droptune.local.vertex import VertexServer, outputs
from tests.droptune.local.vertex.conftest import ECHO_MODEL, PARENT, client_options, wait_until
from tests.droptune.local.vertex.test_endpoints import DEDICATED, create_endpoint, upload
from tests.droptune.local.vertex.test_jobs import custom_job, gone


def test_stop_leaves_no_child_process(tmp_path):
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}  # e.g. the GCS emulator
    server = VertexServer(tmp_path / "vertex").start()
    jobs = aiplatform_v1.JobServiceClient(**client_options(server))
    models = aiplatform_v1.ModelServiceClient(**client_options(server))
    endpoints = aiplatform_v1.EndpointServiceClient(**client_options(server))
    sleeper = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)"
    )
    jobs.create_custom_job(parent=PARENT, custom_job=custom_job(["python", "-c", sleeper]))
    model = upload(models, [sys.executable, str(ECHO_MODEL)])
    endpoint = create_endpoint(endpoints)
    deployed_model = {"model": model, "dedicated_resources": DEDICATED}
    endpoints.deploy_model(endpoint=endpoint, deployed_model=deployed_model).result(timeout=30)

    def started() -> list[psutil.Process]:
        return [c for c in me.children(recursive=True) if c.pid not in before]

    processes = wait_until(lambda: len(started()) >= 3 and started())  # job, its child, model
    server.stop()
    for process in processes:
        wait_until(lambda process=process: gone(process.pid), timeout=10)
    assert requests_fail(server.url)


def requests_fail(url: str) -> bool:
    try:
        requests.get(f"{url}/v1/{PARENT}/customJobs", timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_many_concurrent_polls_are_answered_quickly(vertex, jobs):
    job = jobs.create_custom_job(parent=PARENT, custom_job=custom_job(["python", "-c", "pass"]))
    url = f"{vertex.url}/v1/{job.name}"

    def poll(_: int) -> int:
        with requests.Session() as session:
            return max(session.get(url, timeout=10).status_code for _ in range(10))

    began = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(poll, range(32)))
    assert statuses == [200] * 32
    assert time.monotonic() - began < 10  # 320 polls; a few hundred ms on a laptop


def test_unknown_methods_answer_in_googles_error_shape(vertex):
    answer = requests.get(f"{vertex.url}/v1/{PARENT}/trainingPipelines", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"]["status"] == "NOT_FOUND"
    broken = requests.post(f"{vertex.url}/v1/{PARENT}/customJobs", data=b"{not json", timeout=10)
    assert broken.status_code == 400 and "Invalid JSON" in broken.json()["error"]["message"]


def test_the_fields_parameter_gives_a_partial_response(vertex, jobs):
    """Google's `fields` system parameter, which the workflow sends to keep answers small."""
    job = jobs.create_custom_job(parent=PARENT, custom_job=custom_job(["python", "-c", "pass"]))
    url = f"{vertex.url}/v1/{job.name}"
    whole = requests.get(url, timeout=10).json()
    assert {"jobSpec", "displayName"} <= set(whole)
    part = requests.get(url, params={"fields": "name,state,jobSpec(workerPoolSpecs)"}, timeout=10)
    assert part.status_code == 200
    assert set(part.json()) == {"name", "state", "jobSpec"}
    assert set(part.json()["jobSpec"]) == {"workerPoolSpecs"}
    broken = requests.get(url, params={"fields": "name,jobSpec(workerPoolSpecs"}, timeout=10)
    assert broken.status_code == 400 and "parentheses" in broken.json()["error"]["message"]


def test_logs_reach_the_emulator_named_in_the_server_env(gcs_server, monkeypatch):
    # The server's env names the emulator; this process's environment does not.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    client = storage.Client(
        project="droptune-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_server.url},
    )
    bucket = client.create_bucket(f"logs-{uuid.uuid4().hex[:12]}")
    outputs.write(
        f"gs://{bucket.name}/a/job.log", b"log", {"STORAGE_EMULATOR_HOST": gcs_server.url}
    )
    assert bucket.blob("a/job.log").download_as_bytes() == b"log"
