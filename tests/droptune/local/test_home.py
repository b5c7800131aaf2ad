"""The running stack's state file: found while its process lives, and the process pointed at
its services."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

from droptune.cloud import vertex
from droptune.local.home import StackState
from tests.support.stack import stand_in_stack

STATE = StackState(
    pid=os.getpid(),
    storage="http://127.0.0.1:4443",
    pubsub="127.0.0.1:8085",
    vertex="http://127.0.0.1:8500",
    function="http://127.0.0.1:8080",
    project="droptune-local",
    location="local",
    uploads_bucket="droptune-uploads",
    runs_bucket="droptune-runs",
    started_at=0.0,
)


def test_a_stack_is_running_while_its_process_lives(tmp_path):
    assert StackState.running(tmp_path) is None
    with stand_in_stack() as pid:
        state = replace(STATE, pid=pid)
        (tmp_path / "state.json").write_text(json.dumps(asdict(state)))
        assert StackState.running(tmp_path) == state
    assert StackState.running(tmp_path) is None  # gone
    (tmp_path / "state.json").write_text(json.dumps(asdict(STATE)))
    assert StackState.running(tmp_path) is None  # its pid is another process's now
    (tmp_path / "state.json").write_text(json.dumps(asdict(STATE) | {"pid": 2**22 + 1}))
    assert StackState.read(tmp_path) is not None and StackState.running(tmp_path) is None


def test_use_points_storage_and_vertex_ai_at_the_stack(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "elsewhere")  # restored after the test
    monkeypatch.setenv("DROPTUNE_VERTEX_API", "elsewhere")
    STATE.use()
    assert os.environ["STORAGE_EMULATOR_HOST"] == STATE.storage
    job = "projects/droptune-local/locations/local/customJobs/1"
    assert vertex.VertexApi.for_resource(job).root == STATE.vertex
