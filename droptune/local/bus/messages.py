"""Pub/Sub resource names and messages, checked as Google's emulator checks them.

Error messages are the emulator's own words, so a client sees the same `details` whichever
server it talks to.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from droptune.local.bus.errors import InvalidArgument

# Pub/Sub's rule: 3-255 characters, starting with a letter, not "goog".
TOPIC_NAME = re.compile(r"projects/([^/]+)/topics/((?!goog)[A-Za-z][A-Za-z0-9\-_.~+%]{2,254})")
SUBSCRIPTION_ID = re.compile(r"(?!goog)[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
PROJECT_NAME = re.compile(r"projects/([^/]+)")
MAX_MESSAGES = 1000  # per Publish call


def check_topic(name: str) -> tuple[str, str]:
    """(project, topic id) of a topic path, or InvalidArgument as the emulator words it.

    >>> check_topic("projects/p/topics/runs")
    ('p', 'runs')
    """
    match = TOPIC_NAME.fullmatch(name)
    if match is None:
        raise InvalidArgument(f"Invalid [topics] name: (name={name})")
    return match.group(1), match.group(2)


def check_project(name: str) -> str:
    """The project id of `projects/P`."""
    match = PROJECT_NAME.fullmatch(name)
    if match is None:
        raise InvalidArgument(f"Invalid [projects] name: (name={name})")
    return match.group(1)


def subscription_path(project: str, name: str) -> str:
    """`projects/P/subscriptions/NAME` from a bare name or a full path.

    >>> subscription_path("p", "runs-engine")
    'projects/p/subscriptions/runs-engine'
    """
    if name.startswith("projects/"):
        return name
    if SUBSCRIPTION_ID.fullmatch(name) is None:
        raise InvalidArgument(f"Invalid [subscriptions] name: (name={name})")
    return f"projects/{project}/subscriptions/{name}"


def rfc3339(moment: datetime) -> str:
    """UTC time as Pub/Sub and Eventarc write it: milliseconds and a Z.

    >>> rfc3339(datetime(2021, 2, 5, 4, 6, 14, 109000, tzinfo=UTC))
    '2021-02-05T04:06:14.109Z'
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Message:
    """A published message, as the bus stored it: server-assigned id and publish time."""

    id: str
    data: bytes = b""
    attributes: dict[str, str] = field(default_factory=dict)
    ordering_key: str = ""
    publish_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Message:
        """The message inside a `messagePublished` CloudEvent (see `eventarc_event`)."""
        message = event["data"]["message"]
        return cls(
            id=message["messageId"],
            data=base64.b64decode(message.get("data", "")),
            attributes=dict(message.get("attributes") or {}),
            ordering_key=message.get("orderingKey", ""),
            publish_time=datetime.fromisoformat(message["publishTime"]),
        )


def check_messages(count: int, empty: int) -> None:
    """The emulator's checks on a Publish call of `count` messages, `empty` of which have
    neither data nor attributes."""
    if count == 0:
        raise InvalidArgument("No messages to publish")
    if count > MAX_MESSAGES:
        raise InvalidArgument("Too many messages to publish")
    if empty:
        raise InvalidArgument("Some messages are empty")
