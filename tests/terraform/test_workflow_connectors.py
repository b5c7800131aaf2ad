"""Every `googleapis.*` connector the deployed workflows call names a real API method.

A misspelt resource or method deploys without complaint and fails only when a run reaches that
step. The names are checked against the same discovery documents (shipped by
google-api-python-client) that droptune's local workflow engine resolves them with.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from droptune.local.workflows.connectors import resolve

WORKFLOWS = sorted((Path(__file__).parents[2] / "workflows").glob("*.yaml"))
CALL = re.compile(r"^\s*call:\s*(googleapis\.[A-Za-z0-9_.]+)\s*$", re.M)


def connector_calls() -> list[str]:
    return sorted({name for path in WORKFLOWS for name in CALL.findall(path.read_text())})


def test_the_pipeline_calls_connectors():
    calls = connector_calls()
    assert "googleapis.aiplatform.v1.projects.locations.customJobs.create" in calls
    assert "googleapis.storage.v1.objects.insert" in calls


@pytest.mark.parametrize("name", connector_calls())
def test_connector_method_exists_in_the_discovery_document(name):
    _, method, service, version = resolve(name)
    assert method["httpMethod"] in {"GET", "POST", "PUT", "PATCH", "DELETE"}
    assert name.startswith(f"googleapis.{service}.{version}.")
