"""Exactly one attempt works on a run at a time: `status.json` as a lease.

Every write of `status.json` is a compare-and-swap on its generation, so two writers can never
both succeed from the same version. While a run is VALIDATING, its status holds a lease
(`{"attempt", "expires_at"}`) that the working attempt renews in the background. Another
delivery of the same event waits while the lease is live, and takes the run over (with one more
compare-and-swap) once it has expired, which is how a run left behind by a crashed instance is
finished. An attempt that finds its lease taken stops without writing anything else.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from droptune.cloud import gcs
from droptune.errors import DroptuneError, PreconditionFailed
from droptune.runs import RunState, RunStatus


class LeaseLost(DroptuneError):
    """Another attempt took this run over; this one must stop."""


class StatusStore:
    """`status.json` of one run, read and written with generation preconditions."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.generation: int | None = None

    def read(self) -> RunStatus | None:
        found = gcs.read_bytes(self.uri)
        if found is None:
            self.generation = None
            return None
        data, self.generation = found
        return RunStatus.from_json(data)

    def create(self, status: RunStatus) -> bool:
        return self._write(status, 0)

    def replace(self, status: RunStatus) -> bool:
        """Write over the version last read or written; False when someone changed it since."""
        assert self.generation is not None, "read() or create() first"
        return self._write(status, self.generation)

    def _write(self, status: RunStatus, if_generation_match: int) -> bool:
        data = status.to_json()
        try:
            self.generation = gcs.write_bytes(
                self.uri, data, if_generation_match=if_generation_match
            )
            return True
        except PreconditionFailed:
            # A retried request whose first try did land fails its own precondition: that
            # write is ours when the object holds exactly what we wrote.
            found = gcs.read_bytes(self.uri)
            if found is not None and found[0] == data:
                self.generation = found[1]
                return True
            return False


def lease_fields(attempt: str, seconds: float, now: datetime | None = None) -> dict[str, Any]:
    """status.json's `lease`: who holds the run, and until when (from `now`, by default the
    wall clock's)."""
    expires = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    return {"attempt": attempt, "expires_at": expires.isoformat(timespec="milliseconds")}


def lease_expired(status: RunStatus) -> bool:
    lease = status.extra.get("lease")
    if not lease:
        return True
    return datetime.fromisoformat(lease["expires_at"]) <= datetime.now(UTC)


class Lease:
    """The right of one attempt to advance a VALIDATING run, renewed while it is held.

    Use as a context manager around the work; `transition` ends the lease with the run's next
    state. Leaving the block on an error without a transition keeps the lease until it
    expires, exactly as a crash would; `release` gives it up at once.
    """

    def __init__(self, store: StatusStore, status: RunStatus, attempt: str, seconds: float) -> None:
        self.store, self.status, self.attempt, self.seconds = store, status, attempt, seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True, name="lease")
        self.lost = False

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except LeaseLost:
                return
            except Exception:  # a failed renewal is retried at the next beat
                continue

    def renew(self) -> None:
        """Push the expiry a full lease ahead; raises LeaseLost when another attempt has it.
        Once the lease has ended (transition, release) it writes nothing: a beat that waited
        for the lock while the run went QUEUED would put a lease back and a new generation
        under the workflow's claim."""
        with self._lock:
            if self._stop.is_set():
                return
            self._check()
            self.status.extra["lease"] = lease_fields(self.attempt, self.seconds)
            self._replace()

    def transition(
        self, state: RunState, detail: str, error: dict | None = None, **extra: Any
    ) -> None:
        """Move the run to its next state and end the lease."""
        with self._lock:
            self._check()
            self.status.extra.pop("lease", None)
            self.status.extra.update(extra)
            self.status.advance(state, detail, error)
            self._replace()
            self._stop.set()

    def release(self, error: str) -> None:
        """Give the run up now, noting why, so the next delivery takes over without waiting."""
        with self._lock:
            if self.lost:
                return
            self.status.extra["lease"] = lease_fields(self.attempt, 0)
            self.status.extra["last_error"] = error[:2000]
            with contextlib.suppress(Exception):  # best effort: it expires by itself anyway
                self._replace()
            self._stop.set()

    def _check(self) -> None:
        if self.lost:
            raise LeaseLost(f"{self.store.uri}: another attempt took this run over")

    def _replace(self) -> None:
        if not self.store.replace(self.status):
            self.lost = True
            self._stop.set()
            raise LeaseLost(f"{self.store.uri}: another attempt took this run over")
