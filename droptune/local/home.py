"""Where the local stack keeps its state, and what a running stack records there.

Light on purpose: the CLI reads this without importing the services themselves.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from droptune.errors import DroptuneError


class StackError(DroptuneError):
    """The local stack cannot start, or is not running where it should be."""


@dataclass(frozen=True)
class StackConfig:
    home: Path
    project: str = "droptune-local"
    location: str = "local"
    uploads_bucket: str = "droptune-uploads"
    runs_bucket: str = "droptune-runs"
    notifications_topic: str = "uploads"  # the storage notifications Eventarc would receive
    runs_topic: str = "runs"  # DROPTUNE_TOPIC: the upload function's run messages

    @classmethod
    def default(cls) -> StackConfig:
        home = os.environ.get("DROPTUNE_LOCAL_HOME") or Path.home() / ".droptune" / "local"
        return cls(home=Path(home))

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"


@dataclass(frozen=True)
class StackState:
    """What `state.json` records of a running stack, for the CLI and other processes."""

    pid: int
    storage: str  # STORAGE_EMULATOR_HOST
    pubsub: str  # PUBSUB_EMULATOR_HOST
    vertex: str  # the Vertex AI REST root
    function: str  # the upload function's URL
    project: str
    location: str
    uploads_bucket: str
    runs_bucket: str
    started_at: float

    @classmethod
    def read(cls, home: Path) -> StackState | None:
        try:
            return cls(**json.loads((home / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def running(cls, home: Path) -> StackState | None:
        """The state of the stack running from `home`; None when none is."""
        state = cls.read(home)
        return state if state is not None and state.alive() else None

    def use(self) -> None:
        """Point this process's Cloud Storage and Vertex AI clients (droptune.cloud) at the
        stack's emulator and Vertex AI server."""
        from droptune.cloud import gcs

        os.environ["STORAGE_EMULATOR_HOST"] = self.storage
        os.environ["DROPTUNE_VERTEX_API"] = self.vertex
        gcs.client.cache_clear()

    def alive(self) -> bool:
        """Whether the stack's process still runs: its pid is there and is still the stack
        (a pid is reused once its process is gone)."""
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:  # no /proc here: the pid must do
            return True
        return STACK_MODULE.encode() in command


STACK_MODULE = "droptune.local.stack"  # `python -m` this, with the home folder, is the stack
UNDELIVERED = "undelivered.jsonl"  # uploads whose notification the function failed on for good


@contextmanager
def locked(home: Path) -> Iterator[None]:
    """Hold the home folder's lock: one `droptune local` command at a time starts or stops
    its stack (two at once would start two stacks, and `state.json` would name only one)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
