"""`EventBus`: Pub/Sub's Publisher API on 127.0.0.1, delivering to Python handlers.

Clients reach it as they reach Google's emulator, through `PUBSUB_EMULATOR_HOST=bus.host`.
Instead of subscriptions that clients pull from, Python code subscribes a handler, which
receives each message wrapped as the CloudEvent an Eventarc Pub/Sub trigger sends.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc

from droptune.local.bus.delivery import DeadLetter, Handler, Pending, RetryPolicy, Subscription
from droptune.local.bus.errors import AlreadyExists, BusError, NotFound
from droptune.local.bus.messages import (
    Message,
    check_messages,
    check_project,
    check_topic,
    subscription_path,
)
from droptune.local.bus.service import Topic, publisher_handler
from droptune.local.storage_emulator import free_port
from droptune.log import get_logger

log = get_logger("droptune.local.bus")

# Pub/Sub accepts 10 MB requests; grpc's default limit is 4 MB.
MAX_REQUEST_BYTES = 20 * 1024 * 1024


@dataclasses.dataclass
class _Topic:
    resource: Any  # the google.pubsub.v1.Topic as created
    subscriptions: list[Subscription] = dataclasses.field(default_factory=list)


class EventBus:
    """A local Pub/Sub publisher service with callback subscribers.

    Usage (see the package docstring for a fuller example):

        with EventBus() as bus:
            bus.create_topic("projects/p/topics/runs")
            bus.subscribe("projects/p/topics/runs", handle_run, name="workflows")
            # clients with PUBSUB_EMULATOR_HOST=bus.host publish to it
            bus.wait_idle(timeout=60)
    """

    def __init__(self, port: int | None = None, retry: RetryPolicy | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.retry = retry or RetryPolicy()
        self.published: Counter[str] = Counter()  # messages accepted, per topic
        self.dead_letters: list[DeadLetter] = []
        self._topics: dict[str, _Topic] = {}
        self._subscriptions: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending = Pending()
        self._server: grpc.Server | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> EventBus:
        """Listen on 127.0.0.1:`port`; fails if the port is taken."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="bus-grpc"),
            handlers=[publisher_handler(self)],
            options=[
                ("grpc.so_reuseport", 0),  # a taken port must fail, not be shared
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ],
        )
        try:
            bound = server.add_insecure_port(self.host)
        except RuntimeError:
            bound = 0
        if bound != self.port:
            raise BusError(f"the event bus cannot listen on {self.host}: port in use?")
        server.start()
        self._server = server
        log.info("event bus listening", host=self.host)
        return self

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving, then stop every subscription's workers (waiting for running handlers)."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        with self._lock:
            subscriptions = list(self._subscriptions.values())
        for subscription in subscriptions:
            subscription.close()
        log.info("event bus stopped", host=self.host)

    def __enter__(self) -> EventBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- for Python callers ------------------------------------------------------------
    def subscribe(
        self,
        topic: str,
        handler: Handler,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        workers: int = 1,
    ) -> Subscription:
        """Call `handler(event)` on a worker thread for each message published to `topic`
        from now on; `event` is the Eventarc CloudEvent (see `eventarc_event`).

        `name` is the subscription's id or full path (`projects/P/subscriptions/NAME`,
        shown to the handler as `event["data"]["subscription"]`).
        """
        project, topic_id = check_topic(topic)
        with self._lock:
            path = subscription_path(
                project, name or f"{topic_id}-sub-{len(self._subscriptions) + 1}"
            )
            if path in self._subscriptions:
                raise AlreadyExists("Subscription already exists")
            record = self._topic(topic)
            subscription = Subscription(
                path, topic, handler, retry or self.retry, self._pending, self.dead_letters, workers
            )
            record.subscriptions.append(subscription)
            self._subscriptions[path] = subscription
        log.info("subscribed", topic=topic, subscription=path)
        return subscription

    def create_topic(self, topic: Any, exist_ok: bool = False) -> Any:
        """Create a topic from its path or a `google.pubsub.v1.Topic`; returns the Topic."""
        resource = Topic(name=topic) if isinstance(topic, str) else topic
        check_topic(resource.name)
        with self._lock:
            if resource.name in self._topics:
                if exist_ok:
                    return self._topics[resource.name].resource
                raise AlreadyExists("Topic already exists")
            self._topics[resource.name] = _Topic(resource)
        log.info("topic created", topic=resource.name)
        return resource

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every message delivered so far is handled or dead-lettered, including
        those published by handlers meanwhile; False if `timeout` seconds pass first."""
        return self._pending.wait_none(timeout)

    @property
    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.values())

    # --- the Publisher service (called on gRPC threads) ---------------------------------
    def get_topic(self, name: str) -> Any:
        check_topic(name)
        with self._lock:
            return self._topic(name).resource

    def list_topics(self, project: str) -> list[Any]:
        project_id = check_project(project)
        with self._lock:
            return [t.resource for n, t in self._topics.items() if check_topic(n)[0] == project_id]

    def delete_topic(self, name: str) -> None:
        """Delete a topic; its subscriptions get nothing more, as on Pub/Sub, where they are
        detached (and not re-attached to a new topic of the same name)."""
        check_topic(name)
        with self._lock:
            self._topic(name)
            del self._topics[name]
        log.info("topic deleted", topic=name)

    def topic_subscriptions(self, name: str) -> list[str]:
        check_topic(name)
        with self._lock:
            return [s.name for s in self._topic(name).subscriptions]

    def publish(self, topic: str, messages: list[Message]) -> list[str]:
        """Give `messages` ids and a publish time, and queue them for every subscriber.

        Callable from Python too: the drafts' ids and publish times are replaced.
        """
        check_topic(topic)
        now = datetime.now(UTC)
        with self._lock:
            record = self._topic(topic)  # NOT_FOUND comes before the checks on messages
            check_messages(len(messages), sum(not m.data and not m.attributes for m in messages))
            stamped = [
                dataclasses.replace(m, id=str(next(self._ids)), publish_time=now) for m in messages
            ]
            self.published[topic] += len(stamped)
            for subscription in record.subscriptions:
                for message in stamped:
                    subscription.offer(message)
        log.debug("published", topic=topic, count=len(stamped))
        return [m.id for m in stamped]

    def _topic(self, name: str) -> _Topic:
        record = self._topics.get(name)
        if record is None:
            raise NotFound("Topic not found")
        return record
