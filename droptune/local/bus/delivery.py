"""Delivering messages to Python handlers: at least once, on the subscription's own threads.

A handler that raises gets the message again after an exponential backoff, up to
`RetryPolicy.max_attempts` attempts; then the message is dead-lettered (logged, and kept for
inspection) as a Pub/Sub subscription with a dead-letter policy would do. A message waiting
for its retry does not hold up the messages behind it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from droptune.local.bus.events import Event, eventarc_event
from droptune.local.bus.messages import Message
from droptune.log import get_logger

log = get_logger("droptune.local.bus")

Handler = Callable[[Event], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed delivery is tried again.

    Pub/Sub's own bounds are 10 s to 600 s and 5 to 100 attempts; locally the defaults are
    shorter so that a failing handler shows up quickly, and tests use milliseconds.
    """

    max_attempts: int = field(default=5, metadata={"help": "deliveries before dead-lettering"})
    initial_backoff: float = field(default=1.0, metadata={"help": "seconds before the 2nd try"})
    multiplier: float = field(default=2.0, metadata={"help": "backoff growth per attempt"})
    max_backoff: float = field(default=60.0, metadata={"help": "longest wait between tries"})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1; got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        >>> [RetryPolicy(initial_backoff=1, max_backoff=5).backoff(n) for n in (1, 2, 3, 4)]
        [1.0, 2.0, 4.0, 5.0]
        """
        return float(min(self.initial_backoff * self.multiplier ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True)
class DeadLetter:
    """A message its handler failed on `attempts` times; `error` is the last failure."""

    subscription: str
    topic: str
    message: Message
    attempts: int
    error: str


class Pending:
    """Messages accepted but not yet handled or dead-lettered, so callers can wait for none."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self, count: int) -> None:
        with self._changed:
            self._count += count

    def done(self, count: int = 1) -> None:
        with self._changed:
            self._count -= count
            if self._count <= 0:
                self._changed.notify_all()

    def wait_none(self, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count <= 0, timeout)


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    message: Message = field(compare=False)
    attempt: int = field(default=1, compare=False)


class Subscription:
    """One subscriber of a topic: a queue of deliveries and `workers` threads handling them."""

    def __init__(
        self,
        name: str,
        topic: str,
        handler: Handler,
        retry: RetryPolicy,
        pending: Pending,
        dead_letters: list[DeadLetter],
        workers: int = 1,
    ) -> None:
        self.name = name
        self.topic = topic
        self.handler = handler
        self.retry = retry
        self.delivered = 0  # messages its handler accepted
        self._pending = pending
        self._dead_letters = dead_letters
        self._queue: list[_Delivery] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"bus-{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def offer(self, message: Message) -> None:
        """Queue `message` for delivery; returns at once (this runs on the gRPC thread)."""
        with self._wake:
            if self._closed:
                return
            self._pending.add(1)
            self._push(_Delivery(time.monotonic(), next(self._seq), message))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers after the handler calls in progress; queued messages are dropped."""
        with self._wake:
            self._closed = True
            dropped, self._queue = len(self._queue), []
            self._wake.notify_all()
        if dropped:
            self._pending.done(dropped)
            log.warning(
                "subscription closed with messages undelivered",
                subscription=self.name,
                dropped=dropped,
            )
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def _push(self, delivery: _Delivery) -> None:
        heapq.heappush(self._queue, delivery)
        self._wake.notify()

    def _next(self) -> _Delivery | None:
        """The next delivery once it is due, or None when the subscription closes."""
        with self._wake:
            while not self._closed:
                if self._queue:
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._queue)
                    self._wake.wait(wait)
                else:
                    self._wake.wait()
            return None

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            self._attempt(delivery)

    def _attempt(self, delivery: _Delivery) -> None:
        event = eventarc_event(self.topic, delivery.message, self.name)
        try:
            self.handler(event)
        except Exception as exc:  # any failure is a nack: the message comes back
            self._failed(delivery, f"{type(exc).__name__}: {exc}")
            return
        with self._wake:
            self.delivered += 1
        self._pending.done()

    def _failed(self, delivery: _Delivery, error: str) -> None:
        labels = {
            "subscription": self.name,
            "topic": self.topic,
            "message_id": delivery.message.id,
            "attempt": delivery.attempt,
            "error": error,
        }
        if delivery.attempt >= self.retry.max_attempts:
            self._dead_letters.append(
                DeadLetter(self.name, self.topic, delivery.message, delivery.attempt, error)
            )
            log.error("message dead-lettered: its handler kept failing", **labels)
            self._pending.done()
            return
        backoff = self.retry.backoff(delivery.attempt)
        log.warning("handler failed; the message will be redelivered", retry_in=backoff, **labels)
        with self._wake:
            if self._closed:
                self._pending.done()
                return
            delivery.due = time.monotonic() + backoff
            delivery.attempt += 1
            self._push(delivery)
