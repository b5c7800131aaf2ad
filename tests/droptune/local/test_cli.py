"""`droptune local up|status|run|down` as a user types them, on a stack of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def droptune(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "droptune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DROPTUNE_LOCAL_HOME": str(home)},
    )


def test_run_starts_the_stack_reports_a_rejected_file_and_down_stops_it(tmp_path: Path):
    home = tmp_path / "local"
    data = tmp_path / "support.jsonl"
    data.write_text('{"prompt": "Where is my invoice?"}\n')
    try:
        result = droptune(home, "local", "run", str(data), "--json")
        assert result.returncode == 1, result.stderr
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        assert outcome["state"] == "REJECTED"
        run_dir = Path(outcome["run_dir"])
        assert (run_dir / "validation" / "report.md").is_file()
        assert "REJECTED" in result.stderr and "VALIDATING" in result.stderr

        status = droptune(home, "local", "status")
        assert status.returncode == 0, status.stderr
        assert outcome["run_id"] in status.stdout and "REJECTED" in status.stdout
        assert (home / "function.log").is_file() and (home / "state.json").is_file()
        described = json.loads(droptune(home, "local", "status", "--json").stdout)
        assert described["running"] is True
        assert {"run_id": outcome["run_id"], "state": "REJECTED"} in described["runs"]
        for key in ("uploads_bucket", "runs_bucket", "storage", "pubsub", "vertex"):
            assert described[key], key
    finally:
        down = droptune(home, "local", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (home / "state.json").exists()
    assert droptune(home, "local", "status").returncode == 1
    stopped = droptune(home, "local", "status", "--json")
    assert stopped.returncode == 1 and json.loads(stopped.stdout) == {"running": False}


def test_two_sidecars_beside_the_file_are_refused_before_anything_starts(tmp_path: Path):
    home = tmp_path / "local"
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    (tmp_path / "d.droptune.yaml").write_text("epochs: 1\n")
    (tmp_path / "d.droptune.yml").write_text("epochs: 2\n")
    result = droptune(home, "local", "run", str(data))
    assert result.returncode == 2 and "two sidecars for one file" in result.stderr
    assert not (home / "state.json").exists()


def test_a_config_with_a_mistake_is_refused_before_anything_starts(tmp_path: Path):
    home = tmp_path / "local"
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    config = tmp_path / "settings.yaml"
    config.write_text("epoks: 2\n")
    result = droptune(home, "local", "run", str(data), "--config", str(config))
    assert result.returncode == 2
    assert "epoks" in result.stderr and "epochs" in result.stderr
    assert not (home / "state.json").exists()


def test_follow_prints_training_progress_when_not_on_a_terminal(monkeypatch):
    """In a pipe or a CI log the spinner shows nothing: training progress comes as lines, each
    new message at most every PROGRESS_EVERY seconds."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from droptune.cloud import gcs
    from droptune.local import run as local_run

    clock = [0.0]
    monkeypatch.setattr(local_run.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(local_run.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + 2 * s))

    def status(state: str, *history: str) -> tuple[bytes, int]:
        entries = [{"state": s, "detail": s.lower()} for s in history]
        return json.dumps({"state": state, "history": entries}).encode(), 1

    training = status("TRAINING", "VALIDATING", "TRAINING")
    statuses = iter([training] * 30 + [status("SUCCEEDED", "VALIDATING", "TRAINING", "SUCCEEDED")])
    monkeypatch.setattr(gcs, "read_bytes", lambda uri: next(statuses))
    steps = iter(f"training: step {n // 4} [/x]" for n in range(30))  # log text, not markup
    monkeypatch.setattr(local_run, "training_progress", lambda *args: next(steps))
    printed = io.StringIO()
    console = Console(file=printed, width=200)
    assert not console.is_terminal

    stack = SimpleNamespace(runs_bucket="runs", alive=lambda: True)
    uploaded = local_run.Uploaded("r", "gs://uploads/local/t/d.jsonl", 1)
    final = local_run.follow(stack, Path("."), uploaded, 600, console)

    assert final["state"] == "SUCCEEDED"
    lines = printed.getvalue().splitlines()
    progress = [line.split("s  ", 1)[1] for line in lines if "training: step" in line]
    assert progress == [f"training: step {n} [/x]" for n in (0, 2, 5)]
    assert "SUCCEEDED" in lines[-1]


def stacks_of(home: Path) -> list[int]:
    """Pids of the stack processes serving `home`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"droptune.local.stack" in command and str(home).encode() in command:
            found.append(int(proc.name))
    return found


def test_two_ups_start_one_stack_and_down_stops_what_a_killed_one_left(tmp_path: Path):
    import signal
    import time

    home = tmp_path / "local"
    env = {**os.environ, "DROPTUNE_LOCAL_HOME": str(home)}
    ups = [
        subprocess.Popen([sys.executable, "-m", "droptune", "local", "up"], env=env)
        for _ in range(2)
    ]
    try:
        assert [up.wait(timeout=300) for up in ups] == [0, 0]
        [stack] = stacks_of(home)
        services = [int(record.name) for record in (home / "processes").iterdir()]
        assert len(services) >= 3  # storage, the upload and evaluation functions
        os.kill(stack, signal.SIGKILL)  # as the OOM killer would: it stops nothing
        time.sleep(0.5)
        assert all(Path(f"/proc/{pid}").exists() for pid in services)
    finally:
        down = droptune(home, "local", "down")
    assert down.returncode == 0, down.stderr
    assert f"stopped {len(services)} process(es)" in down.stdout
    deadline = time.monotonic() + 10
    while not all(map(ended, services)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(map(ended, services))
    assert not stacks_of(home) and not (home / "state.json").exists()


def ended(pid: int) -> bool:
    """Gone, or a zombie that only its parent's reaping keeps listed."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_the_settings_and_holdout_beside_a_file_go_with_it(tmp_path: Path):
    from droptune.errors import ConfigError
    from droptune.local.run import companions_of

    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    (tmp_path / "_holdout").mkdir()
    (tmp_path / "_holdout" / "val.jsonl").write_text("{}\n")
    sidecar = tmp_path / "d.droptune.yaml"
    sidecar.write_text("test_fraction: 0.5\n")
    # Valid only together: the folder's validation_fraction 0 leaves room for the 0.5.
    (tmp_path / "droptune.yaml").write_text(
        "validation_fraction: 0\ntest-fraction: 0.9\nvalidation_file: _holdout/val.jsonl\n"
    )
    assert companions_of(data, sidecar) == [
        (sidecar, "d.droptune.yaml"),
        (tmp_path / "droptune.yaml", "droptune.yaml"),
        (tmp_path / "_holdout" / "val.jsonl", "_holdout/val.jsonl"),
    ]
    (tmp_path / "_holdout" / "val.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"validation_file '_holdout/val\.jsonl': no such file"):
        companions_of(data, sidecar)
    sidecar.write_text("test_fraction: 2\n")
    with pytest.raises(ConfigError, match="test_fraction"):
        companions_of(data, sidecar)
    sidecar.write_text("validation_file: val.jsonl\n")  # would start a run of its own
    with pytest.raises(ConfigError, match="folder whose name starts with _"):
        companions_of(data, sidecar)


def test_following_ends_when_the_stack_stops_or_the_function_gives_up(tmp_path: Path, monkeypatch):
    from types import SimpleNamespace

    from rich.console import Console

    from droptune.cloud import gcs
    from droptune.local import run as local_run

    monkeypatch.setattr(gcs, "read_bytes", lambda uri: None)  # no status.json yet
    monkeypatch.setattr(local_run.time, "sleep", lambda s: None)
    uploaded = local_run.Uploaded("r", "gs://uploads/local/t/d.jsonl", 7)
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    dead = SimpleNamespace(runs_bucket="runs", alive=lambda: False)
    with pytest.raises(
        local_run.Unfollowed, match="the local stack stopped while run r was starting"
    ):
        local_run.follow(dead, tmp_path, uploaded, 600, console)
    alive = SimpleNamespace(runs_bucket="runs", alive=lambda: True)
    other = {"object": uploaded.uri, "generation": "6", "attempts": 5, "error": "500"}
    mine = other | {"generation": "7", "error": "500 Server Error: boom"}
    (tmp_path / "undelivered.jsonl").write_text(json.dumps(other) + "\n" + json.dumps(mine) + "\n")
    with pytest.raises(
        local_run.Unfollowed, match=r"failed on gs://uploads/local/t/d\.jsonl 5 times"
    ):
        local_run.follow(alive, tmp_path, uploaded, 600, console)


def test_the_holdout_a_folder_config_names_goes_up_with_the_file(tmp_path: Path):
    home = tmp_path / "local"
    chat = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    }
    data = tmp_path / "support.jsonl"
    data.write_text(json.dumps(chat) + "\n")
    (tmp_path / "_holdout").mkdir()
    (tmp_path / "_holdout" / "val.jsonl").write_text('{"messages": [\n')  # cut short
    (tmp_path / "droptune.yaml").write_text(
        "validation_file: _holdout/val.jsonl\nmin_examples: 1\n"
    )
    try:
        result = droptune(home, "local", "run", str(data), "--json")
    finally:
        droptune(home, "local", "down")
    assert result.returncode == 1, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["state"] == "REJECTED"
    report = (Path(outcome["run_dir"]) / "validation" / "report.md").read_text()
    assert "json_syntax" in report and "val.jsonl" in report  # read, not missing
