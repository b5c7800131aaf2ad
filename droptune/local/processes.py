"""Local service processes: each leads its own session (process group), writes its output to
a log file, and is stopped as a whole, with whatever it started (workers, data loaders):
SIGTERM to the group, SIGKILL after a grace period.

Used for the storage emulator, the upload function, and the Vertex AI server's job and serving
processes. The local stack records each one it starts (`record_in`): if the stack itself is
killed, `droptune local down` (or the next `up`) stops what it left (`stop_recorded`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

GRACE_SECONDS = 10.0  # SIGTERM -> SIGKILL; Kubernetes gives 30 s, a local process needs less
_records: Path | None = None  # where this process records the processes it starts


def record_in(folder: Path) -> None:
    """Record every process started from now on in `folder`, a file per process group."""
    global _records
    folder.mkdir(parents=True, exist_ok=True)
    _records = folder


def start_ticks(pid: int) -> str | None:
    """When the process started, in clock ticks since boot (field 22 of /proc/PID/stat):
    with the pid, it names one process, where a pid alone is reused. None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name start at 3


def stop_recorded(folder: Path) -> int:
    """SIGKILL the recorded process groups whose leader still runs (a stack that was killed
    left them); the number stopped. Only a leader that is the very process recorded (its pid
    and start time) is taken for it: a pid is reused once its process is gone."""
    stopped = 0
    for record in folder.glob("*") if folder.is_dir() else ():
        pid, ticks = int(record.name), record.read_text()
        if ticks and start_ticks(pid) == ticks:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                stopped += 1
        record.unlink(missing_ok=True)
    return stopped


@dataclass
class Process:
    """A started process whose stdout and stderr go to `log_path`."""

    argv: list[str]
    log_path: Path
    popen: subprocess.Popen = field(repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ended: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
    ) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if cwd is not None:
            cwd.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        if _records is not None:
            (_records / str(popen.pid)).write_text(start_ticks(popen.pid) or "")
        return cls(argv, log_path, popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None:
            self._ended_by_itself()
        return code

    def wait(self, timeout: float | None = None) -> int:
        code = self.popen.wait(timeout)
        self._ended_by_itself()
        return code

    def _ended_by_itself(self) -> None:
        """Once, when the process is seen to have exited: what it left in its group goes
        too, and so does its record (its pid may be another process's soon)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._signal_group(signal.SIGKILL)
            self._forget()

    def _forget(self) -> None:
        if _records is not None:
            (_records / str(self.popen.pid)).unlink(missing_ok=True)

    def stop(self, grace: float = GRACE_SECONDS) -> int:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; the exit status."""
        with self._lock:
            if self._ended:  # exited by itself and seen to: its group is gone already
                return self.popen.returncode
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait()
            # Children that ignored SIGTERM outlive their leader: make sure they go too.
            self._signal_group(signal.SIGKILL)
            self._ended = True
            self._forget()
            return self.popen.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the process's output."""
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines)).rstrip("\n")
        except OSError:
            return ""
