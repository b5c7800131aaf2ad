"""Fixtures for the local Vertex AI server: a server per test, the real aiplatform clients on
its REST API, and `wait_until` to poll with a deadline instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from droptune.local.vertex import VertexServer

PARENT = "projects/droptune-test/locations/us-central1"
ECHO_MODEL = Path(__file__).with_name("echo_model.py")


def wait_until(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    """Call `check` until it returns something truthy (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(every)


@pytest.fixture
def vertex(tmp_path: Path) -> VertexServer:
    with VertexServer(tmp_path / "vertex", deploy_timeout=20) as server:
        yield server


def client_options(server: VertexServer) -> dict[str, Any]:
    # An http:// api_endpoint is kept as is by the REST transport (https:// is only added
    # when no scheme is given), so the clients reach the local server unchanged.
    return {
        "transport": "rest",
        "client_options": {"api_endpoint": server.url},
        "credentials": AnonymousCredentials(),
    }


@pytest.fixture
def jobs(vertex) -> aiplatform_v1.JobServiceClient:
    return aiplatform_v1.JobServiceClient(**client_options(vertex))


@pytest.fixture
def models(vertex) -> aiplatform_v1.ModelServiceClient:
    return aiplatform_v1.ModelServiceClient(**client_options(vertex))


@pytest.fixture
def endpoints(vertex) -> aiplatform_v1.EndpointServiceClient:
    return aiplatform_v1.EndpointServiceClient(**client_options(vertex))


@pytest.fixture
def predictions(vertex) -> aiplatform_v1.PredictionServiceClient:
    return aiplatform_v1.PredictionServiceClient(**client_options(vertex))
