"""Handlers: Eventarc CloudEvents on worker threads, at least once, retried with backoff,
dead-lettered at the end, and `wait_idle` for everything in flight."""

from __future__ import annotations

import threading
import time

import pytest

from droptune.local.bus import (
    AlreadyExists,
    EventBus,
    InvalidArgument,
    Message,
    NotFound,
    RetryPolicy,
)
from tests.droptune.local.bus.conftest import DEADLINE, Collector

TOPIC = "projects/local/topics/runs"


def publish(bus: EventBus, *payloads: bytes, topic: str = TOPIC) -> list[str]:
    return bus.publish(topic, [Message("", data, {"k": "v"}) for data in payloads])


class Flaky:
    """A handler that fails its first `failures` calls, recording when each call came."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[float, dict]] = []

    def __call__(self, event: dict) -> None:
        self.calls.append((time.monotonic(), event))
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"failure {len(self.calls)}")


def test_handlers_get_the_eventarc_event_on_a_worker_thread(bus: EventBus):
    bus.create_topic(TOPIC)
    threads = []
    collector = Collector()

    def handler(event: dict) -> None:
        threads.append(threading.current_thread())
        collector(event)

    subscription = bus.subscribe(TOPIC, handler, name="engine")
    [message_id] = publish(bus, b'{"run": 1}')
    assert bus.wait_idle(DEADLINE)
    [event] = collector.events
    assert event["attributes"]["id"] == message_id
    assert event["attributes"]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["data"]["subscription"] == "projects/local/subscriptions/engine"
    assert Message.from_event(event).data == b'{"run": 1}'
    assert threads == subscription.threads
    assert bus.published[TOPIC] == 1 and subscription.delivered == 1


def test_a_failing_handler_is_retried_with_growing_backoff(bus: EventBus):
    bus.create_topic(TOPIC)
    retry = RetryPolicy(max_attempts=5, initial_backoff=0.05, multiplier=2, max_backoff=1)
    flaky = Flaky(failures=2)
    bus.subscribe(TOPIC, flaky, retry=retry)
    publish(bus, b"x")
    assert bus.wait_idle(DEADLINE)
    assert len(flaky.calls) == 3 and not bus.dead_letters
    times = [t for t, _ in flaky.calls]
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1
    assert len({event["attributes"]["id"] for _, event in flaky.calls}) == 1  # the same message


def test_a_handler_that_keeps_failing_dead_letters_the_message(bus: EventBus, bus_log):
    bus.create_topic(TOPIC)
    flaky = Flaky(failures=100)
    bus.subscribe(TOPIC, flaky, name="doomed")  # the bus's FAST policy: 3 attempts
    [message_id] = publish(bus, b"poison")
    assert bus.wait_idle(DEADLINE)
    assert len(flaky.calls) == 3
    [dead] = bus.dead_letters
    assert (dead.message.id, dead.message.data, dead.attempts) == (message_id, b"poison", 3)
    assert dead.subscription == "projects/local/subscriptions/doomed"
    assert dead.error == "RuntimeError: failure 3"
    [line] = [entry for entry in bus_log() if entry["severity"] == "ERROR"]
    assert "dead-lettered" in line["message"]
    assert (line["message_id"], line["attempt"], line["topic"]) == (message_id, 3, TOPIC)
    assert sum(entry["severity"] == "WARNING" for entry in bus_log()) == 2  # the two retries


def test_a_message_awaiting_its_retry_does_not_hold_up_the_next(bus: EventBus):
    bus.create_topic(TOPIC)
    seen: list[bytes] = []

    def handler(event: dict) -> None:
        data = Message.from_event(event).data
        seen.append(data)
        if data == b"bad" and seen.count(b"bad") == 1:
            raise RuntimeError("once")

    bus.subscribe(TOPIC, handler, retry=RetryPolicy(max_attempts=2, initial_backoff=0.5))
    publish(bus, b"bad", b"good")
    assert bus.wait_idle(DEADLINE)
    assert seen == [b"bad", b"good", b"bad"]


def test_messages_published_before_subscribing_are_not_delivered(bus: EventBus):
    bus.create_topic(TOPIC)
    publish(bus, b"early")
    collector = Collector()
    bus.subscribe(TOPIC, collector)
    publish(bus, b"late")
    assert bus.wait_idle(DEADLINE)
    assert [m.data for m in collector.messages()] == [b"late"]


def test_every_subscription_gets_every_message(bus: EventBus):
    bus.create_topic(TOPIC)
    first, second = Collector(), Collector()
    bus.subscribe(TOPIC, first, name="first", workers=4)
    bus.subscribe(TOPIC, second, name="second")
    ids = publish(bus, *[str(i).encode() for i in range(50)])
    assert bus.wait_idle(DEADLINE)
    assert sorted(m.id for m in first.messages()) == sorted(ids)
    assert [m.id for m in second.messages()] == ids  # one worker: publish order
    assert {e["data"]["subscription"] for e in second.events} == {
        "projects/local/subscriptions/second"
    }


def test_wait_idle_waits_for_running_handlers_and_what_they_publish(bus: EventBus):
    bus.create_topic(TOPIC)
    bus.create_topic("projects/local/topics/done")
    release = threading.Event()
    finished = Collector()

    def slow_then_forward(event: dict) -> None:
        release.wait(DEADLINE)
        publish(bus, b"next", topic="projects/local/topics/done")

    bus.subscribe(TOPIC, slow_then_forward)
    bus.subscribe("projects/local/topics/done", finished)
    publish(bus, b"start")
    assert bus.wait_idle(0.1) is False
    release.set()
    assert bus.wait_idle(DEADLINE)
    assert [m.data for m in finished.messages()] == [b"next"]


def test_subscriptions_need_an_existing_topic_and_a_unique_name(bus: EventBus):
    with pytest.raises(NotFound):
        bus.subscribe(TOPIC, Collector())
    bus.create_topic(TOPIC)
    assert bus.create_topic(TOPIC, exist_ok=True).name == TOPIC
    with pytest.raises(AlreadyExists):
        bus.create_topic(TOPIC)
    bus.subscribe(TOPIC, Collector(), name="only")
    with pytest.raises(AlreadyExists):
        bus.subscribe(TOPIC, Collector(), name="only")
    with pytest.raises(InvalidArgument):
        bus.subscribe(TOPIC, Collector(), name="x")


def test_a_deleted_topic_delivers_no_more_even_when_recreated(bus: EventBus):
    bus.create_topic(TOPIC)
    old = Collector()
    bus.subscribe(TOPIC, old)
    bus.delete_topic(TOPIC)
    with pytest.raises(NotFound):
        publish(bus, b"gone")
    bus.create_topic(TOPIC)
    publish(bus, b"new topic")
    assert bus.wait_idle(DEADLINE)
    assert old.events == []


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=0.5)
