"""The CloudEvents Eventarc makes of Pub/Sub messages and Cloud Storage notifications.

An event is a plain dict `{"attributes": {...}, "data": {...}}`: the CloudEvent context
attributes (`specversion`, `id`, `source`, `type`, `time`, ...) and the JSON data. That is
`cloudevents.http.CloudEvent(**event)`'s shape too, and `binary_http(event)` gives the headers
and body to POST it to a functions-framework server in binary content mode.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import orjson

from droptune.local.bus.errors import NotificationError
from droptune.local.bus.messages import Message, rfc3339

MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
OBJECT_FINALIZED = "google.cloud.storage.object.v1.finalized"

Event = dict[str, Any]


def eventarc_event(topic: str, message: Message, subscription: str) -> Event:
    """The CloudEvent an Eventarc Pub/Sub trigger delivers for `message` on `topic`.

    The message appears under both spellings of its id and time (`messageId` and
    `message_id`), as Eventarc sends it, because handlers written for either read it.

    >>> from datetime import UTC, datetime
    >>> msg = Message("7", b"hi", {"k": "v"}, publish_time=datetime(2024, 1, 2, tzinfo=UTC))
    >>> event = eventarc_event("projects/p/topics/t", msg, "projects/p/subscriptions/s")
    >>> event["attributes"]["source"], event["data"]["message"]["data"]
    ('//pubsub.googleapis.com/projects/p/topics/t', 'aGk=')
    """
    published = rfc3339(message.publish_time)
    body: dict[str, Any] = {
        "data": base64.b64encode(message.data).decode("ascii"),
        "attributes": dict(message.attributes),
        "messageId": message.id,
        "message_id": message.id,
        "publishTime": published,
        "publish_time": published,
    }
    if message.ordering_key:
        body["orderingKey"] = message.ordering_key
    return {
        "attributes": {
            "specversion": "1.0",
            "id": message.id,
            "source": f"//pubsub.googleapis.com/{topic}",
            "type": MESSAGE_PUBLISHED,
            "time": published,
            "datacontenttype": "application/json",
        },
        "data": {"message": body, "subscription": subscription},
    }


def is_finalize_notification(message: Message) -> bool:
    """Whether `message` is a Cloud Storage notification of a new object (JSON payload)."""
    attributes = message.attributes
    return (
        attributes.get("eventType") == "OBJECT_FINALIZE"
        and attributes.get("payloadFormat") == "JSON_API_V1"
    )


def storage_finalized_event(message: Message) -> Event:
    """The `google.cloud.storage.object.v1.finalized` CloudEvent Eventarc sends for the new
    object a Cloud Storage notification `message` reports; its data is the object resource.

    The event keeps the notification's message id, so a redelivered notification gives an
    event with the same id, as Eventarc's retries do.
    """
    if not is_finalize_notification(message):
        raise NotificationError(
            "expected a Cloud Storage notification with eventType=OBJECT_FINALIZE and "
            f"payloadFormat=JSON_API_V1; got attributes {message.attributes}"
        )
    try:
        resource = orjson.loads(message.data)
    except orjson.JSONDecodeError as exc:
        raise NotificationError(f"notification {message.id} data is not JSON: {exc}") from None
    bucket = message.attributes.get("bucketId") or resource.get("bucket")
    name = message.attributes.get("objectId") or resource.get("name")
    if not bucket or not name:
        raise NotificationError(f"notification {message.id} names no bucket or object")
    # Eventarc's event time is when the object changed, not when the notification went out.
    time = resource.get("updated") or resource.get("timeCreated") or rfc3339(message.publish_time)
    return {
        "attributes": {
            "specversion": "1.0",
            "id": message.id,
            "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "type": OBJECT_FINALIZED,
            "subject": f"objects/{name}",
            "time": time,
            "datacontenttype": "application/json",
            "bucket": bucket,
        },
        "data": resource,
    }


def workflow_argument(event: Event) -> dict[str, Any]:
    """What an Eventarc trigger passes a workflow: the CloudEvent in its JSON form, context
    attributes at the top beside `data` (`${event.id}`, `${event.data.message.data}`).

    >>> workflow_argument({"attributes": {"id": "7", "type": "t"}, "data": {"k": 1}})
    {'id': '7', 'type': 't', 'data': {'k': 1}}
    """
    return {**event["attributes"], "data": event["data"]}


def header_value(value: str) -> str:
    """`value` percent-encoded as the CloudEvents HTTP binding asks of header values: space,
    double quote, percent and anything outside printable ASCII (an object named in Japanese
    could not be sent at all: HTTP headers are Latin-1).

    >>> header_value("objects/日本/a b.jsonl")
    'objects/%E6%97%A5%E6%9C%AC/a%20b.jsonl'
    """
    return "".join(c if "!" <= c <= "~" and c not in '"%' else quote(c, safe="") for c in value)


def binary_http(event: Event) -> tuple[dict[str, str], bytes]:
    """Headers and body that POST `event` in CloudEvents binary content mode: each attribute
    as a `ce-` header, the data as the JSON body.

    >>> headers, body = binary_http({"attributes": {"id": "1", "type": "t"}, "data": {"a": 1}})
    >>> headers["ce-id"], headers["Content-Type"], body
    ('1', 'application/json', b'{"a":1}')
    """
    attributes = dict(event["attributes"])
    content_type = attributes.pop("datacontenttype", "application/json")
    headers = {f"ce-{key}": header_value(str(value)) for key, value in attributes.items()}
    headers["Content-Type"] = content_type
    return headers, orjson.dumps(event["data"])
