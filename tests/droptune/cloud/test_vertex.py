"""droptune's Vertex AI adapter against the local Vertex AI server: the job and prediction
calls go through google-cloud-aiplatform's own clients, pointed there by DROPTUNE_VERTEX_API."""

from __future__ import annotations

import sys

import pytest
from google.cloud.aiplatform_v1 import JobState

from droptune.cloud import vertex as adapter
from tests.droptune.local.vertex.conftest import (  # noqa: F401 (fixtures)
    ECHO_MODEL,
    PARENT,
    endpoints,
    models,
    vertex,
    wait_until,
)
from tests.droptune.local.vertex.test_endpoints import deploy_echo
from tests.droptune.local.vertex.test_jobs import custom_job


@pytest.fixture
def api(vertex, monkeypatch) -> adapter.VertexApi:  # noqa: F811
    monkeypatch.setenv("DROPTUNE_VERTEX_API", vertex.url)
    return adapter.VertexApi.for_resource(f"{PARENT}/customJobs/1")


def test_a_running_job_is_cancelled_and_an_ended_one_left_alone(api):
    jobs = adapter.jobs(api)
    sleeper = custom_job([sys.executable, "-c", "import time; time.sleep(60)"])
    name = jobs.create_custom_job(parent=PARENT, custom_job=sleeper).name
    wait_until(lambda: adapter.get_custom_job(api, name).state == "JOB_STATE_RUNNING")
    assert not adapter.cancel_custom_job(api, name).ended
    job = wait_until(lambda: (j := adapter.get_custom_job(api, name)).ended and j)
    assert job.state == JobState.JOB_STATE_CANCELLED.name
    assert adapter.cancel_custom_job(api, name).state == "JOB_STATE_CANCELLED"  # no second call


def test_a_failed_job_says_why(api):
    jobs = adapter.jobs(api)
    failing = custom_job([sys.executable, "-c", "raise SystemExit('no data')"])
    name = jobs.create_custom_job(parent=PARENT, custom_job=failing).name
    job = wait_until(lambda: (j := adapter.get_custom_job(api, name)).ended and j)
    assert job.state == "JOB_STATE_FAILED" and "no data" in job.error


def test_predict_sends_instances_and_parameters_as_json(api, models, endpoints):  # noqa: F811
    _, endpoint = deploy_echo(models, endpoints)
    instance = {"messages": [{"role": "user", "content": "Hi"}]}
    (answer,) = adapter.predict(api, endpoint, [instance], {"max_new_tokens": 8})
    assert answer["echo"] == instance and answer["parameters"] == {"max_new_tokens": 8}


def test_missing_resources_and_a_silent_server_are_clear_errors(api):
    with pytest.raises(adapter.VertexError, match=r"customJobs/404: not found"):
        adapter.get_custom_job(api, f"{PARENT}/customJobs/404")
    with pytest.raises(adapter.VertexError, match="not a Vertex AI resource name"):
        adapter.VertexApi.for_resource("endpoints/1", {})
    silent = adapter.VertexApi("http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(adapter.VertexError, match="Vertex AI did not answer"):
        adapter.get_custom_job(silent, f"{PARENT}/customJobs/1")
