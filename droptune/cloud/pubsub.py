"""Pub/Sub publishing through `google-cloud-pubsub`'s `PublisherClient`.

`PUBSUB_EMULATOR_HOST` points the client at a local Pub/Sub service (Google's emulator, or
droptune's local bus) exactly as it does for any other client of the library. One client is
kept per process and per emulator host: creating one costs a gRPC channel.
"""

from __future__ import annotations

import os
from functools import cache

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import pubsub_v1

from droptune.errors import DroptuneError

# What the library itself retries on publish: the server was busy, down or slow.
TRANSIENT = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
)


class PublishError(DroptuneError):
    """A message could not be published within the time allowed."""


@cache
def _client(emulator_host: str | None) -> pubsub_v1.PublisherClient:
    # Messages go out one at a time and the caller waits for each: no batching delay.
    batching = pubsub_v1.types.BatchSettings(max_messages=1, max_latency=0.0)
    return pubsub_v1.PublisherClient(batch_settings=batching)


def publisher() -> pubsub_v1.PublisherClient:
    return _client(os.environ.get("PUBSUB_EMULATOR_HOST"))


def publish(topic: str, data: bytes, attributes: dict[str, str], timeout: float = 60.0) -> str:
    """Publish one message to `topic` (`projects/P/topics/T`); returns its message id.

    Transient errors are retried with exponential backoff for up to `timeout` seconds.
    """
    retry = Retry(
        predicate=if_exception_type(*TRANSIENT), initial=0.1, maximum=10.0, timeout=timeout
    )
    try:
        future = publisher().publish(topic, data, retry=retry, timeout=timeout, **attributes)
        return future.result(timeout=timeout)
    except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as exc:
        raise PublishError(f"cannot publish to {topic}: {exc}") from exc
