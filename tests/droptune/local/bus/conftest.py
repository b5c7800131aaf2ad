"""Fixtures for the event bus tests: a bus with fast retries, and `pubsub`, the same Pub/Sub
publisher service seen either as the bus or as Google's emulator (the reference), with a way
to read back what was published on each."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from droptune.local.bus import Event, EventBus, Message, RetryPolicy

# Milliseconds, not Pub/Sub's seconds: retry tests finish fast on a slow machine too.
FAST = RetryPolicy(max_attempts=3, initial_backoff=0.01, multiplier=2.0, max_backoff=0.05)
DEADLINE = 20.0  # seconds any wait may take on a loaded 2-core CI machine


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Poll `condition` until it holds; fail the test when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {condition}")
        time.sleep(0.01)


@pytest.fixture
def bus() -> Iterator[EventBus]:
    with EventBus(retry=FAST) as running:
        yield running


@pytest.fixture
def bus_log(capture_logs: Callable[[str], Callable[[], list[dict]]]) -> Callable[[], list[dict]]:
    """The bus's structured log lines so far, parsed."""
    return capture_logs("droptune.local.bus")


class Collector:
    """A handler that keeps every event it gets, thread-safely."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def messages(self) -> list[Message]:
        with self._lock:
            return [Message.from_event(event) for event in self.events]


@dataclass
class Received:
    """What a subscriber saw of a message, the same whichever service delivered it."""

    id: str
    data: bytes
    attributes: dict[str, str]
    ordering_key: str


@dataclass
class PubSub:
    """One Pub/Sub publisher service (`kind` "bus" or "emulator") and clients pointed at it."""

    kind: str
    host: str
    bus: EventBus | None = None
    project: str = "droptune-test"
    _readers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        self.publisher = pubsub_v1.PublisherClient(publisher_options=options)

    def topic(self) -> str:
        """A new topic, created through the client."""
        path = f"projects/{self.project}/topics/t-{uuid.uuid4().hex[:12]}"
        self.publisher.create_topic(name=path)
        return path

    def reader(self, topic: str) -> Callable[[int], list[Received]]:
        """Attach a subscriber to `topic` now; the result reads `n` messages (waiting for
        them): through a pull subscription on the emulator, through `subscribe` on the bus."""
        if self.bus is not None:
            collector = Collector()
            self.bus.subscribe(topic, collector, name=f"s-{uuid.uuid4().hex[:12]}")
            return lambda n: self._read_bus(collector, n)
        subscription = f"projects/{self.project}/subscriptions/s-{uuid.uuid4().hex[:12]}"
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(name=subscription, topic=topic)
        self._readers.append(subscriber.close)
        return lambda n: _pull(subscriber, subscription, n)

    def _read_bus(self, collector: Collector, count: int) -> list[Received]:
        wait_for(lambda: len(collector.events) >= count)
        return [Received(m.id, m.data, m.attributes, m.ordering_key) for m in collector.messages()]

    def close(self) -> None:
        for close in self._readers:
            close()
        self.publisher.stop()


def _pull(subscriber: pubsub_v1.SubscriberClient, subscription: str, count: int) -> list[Received]:
    received: list[Received] = []
    deadline = time.monotonic() + DEADLINE
    while len(received) < count and time.monotonic() < deadline:
        try:
            response = subscriber.pull(subscription=subscription, max_messages=1000, timeout=5)
        except gexc.DeadlineExceeded:
            continue
        if response.received_messages:
            subscriber.acknowledge(
                subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
            )
        for item in response.received_messages:
            m = item.message
            received.append(Received(m.message_id, m.data, dict(m.attributes), m.ordering_key))
    assert len(received) >= count, f"pulled {len(received)} of {count} messages"
    return received


@pytest.fixture(params=["bus", "emulator"])
def pubsub(request, monkeypatch) -> Iterator[PubSub]:
    """The same tests against droptune's bus and against Google's Pub/Sub emulator."""
    bus = None
    if request.param == "bus":
        bus = EventBus(retry=FAST).start()
        request.addfinalizer(bus.stop)
        host = bus.host
    else:
        if shutil.which("gcloud") is None or shutil.which("java") is None:
            pytest.skip("Google's Pub/Sub emulator needs gcloud and Java; not on this machine")
        host = request.getfixturevalue("pubsub_emulator")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
    service = PubSub(request.param, host, bus)
    yield service
    service.close()
