"""Service processes are recorded as they start, so that what a killed stack left running is
stopped later, and a recorded pid that now names another process is left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from droptune.local import processes
from droptune.local.processes import Process, start_ticks, stop_recorded

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def records(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "processes"
    monkeypatch.setattr(processes, "_records", None)
    processes.record_in(folder)
    return folder


def test_a_started_process_is_recorded_until_it_is_stopped(records: Path, tmp_path: Path):
    process = Process.start(SLEEP, {}, tmp_path / "sleep.log")
    assert (records / str(process.pid)).read_text() == start_ticks(process.pid)
    process.stop(grace=1)
    assert not list(records.iterdir())


def test_what_a_killed_stack_left_is_stopped_from_its_records(records: Path, tmp_path: Path):
    left = Process.start(SLEEP, {}, tmp_path / "sleep.log")  # its stack died: never stopped
    assert stop_recorded(records) == 1
    assert left.wait(timeout=10) == -9
    assert not list(records.iterdir())


LEAVES_A_CHILD = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
)


def test_a_process_that_exits_by_itself_is_forgotten_with_its_group(records: Path, tmp_path):
    import time

    leader = Process.start([sys.executable, "-c", LEAVES_A_CHILD], {}, tmp_path / "leader.log")
    assert leader.wait(timeout=30) == 0
    child = int((tmp_path / "leader.log").read_text())
    assert not list(records.iterdir())  # seen to exit: nothing is left to stop later
    deadline = time.monotonic() + 10
    while start_ticks(child) is not None and not zombie(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert start_ticks(child) is None or zombie(child)  # it went with its leader


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_a_recorded_pid_that_names_another_process_now_is_left_alone(records: Path):
    other = subprocess.Popen(SLEEP, start_new_session=True)  # took a recorded pid
    try:
        (records / str(other.pid)).write_text("1")  # a process that started at boot
        assert stop_recorded(records) == 0
        assert other.poll() is None and not list(records.iterdir())
    finally:
        other.kill()
        other.wait()
