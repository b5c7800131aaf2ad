"""status.json as a lease: compare-and-swap writes, renewal, take-over and stopping."""

from __future__ import annotations

import time

import orjson
import pytest

from droptune.intake.lease import Lease, LeaseLost, StatusStore, lease_expired, lease_fields
from droptune.runs import RunState, RunStatus


@pytest.fixture
def uri(gcs_bucket) -> str:
    return f"gs://{gcs_bucket.name}/runs/r-1-abc/status.json"


def started(attempt: str, seconds: float) -> RunStatus:
    status = RunStatus.start("validating")
    status.extra["lease"] = lease_fields(attempt, seconds)
    return status


def test_only_one_create_wins(uri):
    first, second = StatusStore(uri), StatusStore(uri)
    assert first.create(started("a", 60))
    assert not second.create(started("b", 60))


def test_a_retried_write_that_had_landed_counts_as_ours(uri):
    status = started("a", 60)
    store = StatusStore(uri)
    assert store.create(status)
    # The retry of a create whose first try landed sees its own precondition fail: same bytes.
    assert StatusStore(uri).create(status)


def test_replace_fails_after_someone_else_wrote(uri):
    mine, theirs = StatusStore(uri), StatusStore(uri)
    assert mine.create(started("a", 60))
    status = theirs.read()
    status.extra["note"] = "theirs"
    assert theirs.replace(status)
    assert not mine.replace(started("a", 60))


def test_lease_is_renewed_while_held_and_ended_by_the_transition(uri):
    store = StatusStore(uri)
    status = started("a", 0.3)
    store.create(status)
    with Lease(store, status, "a", 0.3) as lease:
        time.sleep(0.5)  # longer than the lease: only the heartbeat keeps it alive
        assert not lease_expired(StatusStore(uri).read())
        lease.transition(RunState.QUEUED, "done", message_id="9")
    body = orjson.loads(StatusStore(uri).read().to_json())
    assert body["state"] == "QUEUED" and body["message_id"] == "9" and "lease" not in body


@pytest.mark.parametrize("end", ["transition", "release"])
def test_a_beat_that_waited_for_the_lock_writes_nothing_once_the_lease_ended(uri, end):
    """Else QUEUED got its lease back in a new generation, which the workflow's claim
    (made over the generation it read) then failed on, leaving the run to no one."""
    store = StatusStore(uri)
    status = started("a", 60)
    store.create(status)
    with Lease(store, status, "a", 60) as lease:
        if end == "transition":
            lease.transition(RunState.QUEUED, "done")
        else:
            lease.release("ServiceUnavailable: 503")
        generation = store.generation
        lease.renew()  # the beat, run after the end it waited for
    after = StatusStore(uri)
    body = after.read()
    assert after.generation == generation
    assert end == "release" or "lease" not in body.extra


def test_a_taken_over_lease_stops_its_old_holder(uri):
    store = StatusStore(uri)
    status = started("a", 60)
    store.create(status)
    with Lease(store, status, "a", 60) as lease:
        other = StatusStore(uri)
        taken = other.read()
        taken.extra["lease"] = lease_fields("b", 60)
        assert other.replace(taken)
        with pytest.raises(LeaseLost):
            lease.transition(RunState.QUEUED, "late")
    assert StatusStore(uri).read().extra["lease"]["attempt"] == "b"


def test_release_expires_the_lease_and_notes_the_error(uri):
    store = StatusStore(uri)
    status = started("a", 60)
    store.create(status)
    with Lease(store, status, "a", 60) as lease:
        lease.release("ServiceUnavailable: 503")
    after = StatusStore(uri).read()
    assert lease_expired(after)
    assert after.extra["last_error"] == "ServiceUnavailable: 503"
    assert after.state == RunState.VALIDATING
