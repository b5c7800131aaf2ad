"""The CloudEvents the bus makes: Eventarc's Pub/Sub trigger event, and the storage finalize
event made from a Cloud Storage notification, which functions-framework and droptune's
intake read as they read Eventarc's."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from functions_framework import create_app

from droptune.intake.event import UploadedObject
from droptune.local.bus import (
    MESSAGE_PUBLISHED,
    OBJECT_FINALIZED,
    Message,
    NotificationError,
    binary_http,
    eventarc_event,
    is_finalize_notification,
    storage_finalized_event,
)

PUBLISHED = datetime(2024, 5, 1, 17, 41, 52, 830000, tzinfo=UTC)
RESOURCE = {
    "kind": "storage#object",
    "bucket": "uploads",
    "name": "team/chat.jsonl",
    "generation": "1714585312825704",
    "metageneration": "1",
    "size": "1234",
    "contentType": "application/jsonl",
    "crc32c": "rTVTeQ==",
    "timeCreated": "2024-05-01T17:41:52.825Z",
    "updated": "2024-05-01T17:41:52.826Z",
    "metadata": {"droptune-backend": "custom"},
}


def notification(**attributes: str) -> Message:
    """A Cloud Storage notification as a bucket with a JSON_API_V1 notification sends it."""
    return Message(
        id="4242",
        data=orjson.dumps(RESOURCE),
        attributes={
            "eventType": "OBJECT_FINALIZE",
            "bucketId": "uploads",
            "objectId": "team/chat.jsonl",
            "objectGeneration": "1714585312825704",
            "payloadFormat": "JSON_API_V1",
            **attributes,
        },
        publish_time=PUBLISHED,
    )


def test_eventarc_event_has_eventarcs_pubsub_shape():
    message = Message("17", b"\x00payload", {"a": "1"}, "key-1", PUBLISHED)
    event = eventarc_event("projects/p/topics/t", message, "projects/p/subscriptions/s")
    assert event["attributes"] == {
        "specversion": "1.0",
        "id": "17",
        "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "type": MESSAGE_PUBLISHED,
        "time": "2024-05-01T17:41:52.830Z",
        "datacontenttype": "application/json",
    }
    body = event["data"]["message"]
    assert base64.b64decode(body["data"]) == b"\x00payload"
    assert body["messageId"] == body["message_id"] == "17"
    assert body["publishTime"] == body["publish_time"] == "2024-05-01T17:41:52.830Z"
    assert (body["attributes"], body["orderingKey"]) == ({"a": "1"}, "key-1")
    assert event["data"]["subscription"] == "projects/p/subscriptions/s"
    assert Message.from_event(event) == message


def test_eventarc_event_leaves_out_an_unset_ordering_key():
    event = eventarc_event("projects/p/topics/t", Message("1", b"x"), "projects/p/subscriptions/s")
    assert "orderingKey" not in event["data"]["message"]


def test_a_finalize_notification_becomes_eventarcs_finalized_event():
    event = storage_finalized_event(notification())
    assert event["attributes"] == {
        "specversion": "1.0",
        "id": "4242",
        "source": "//storage.googleapis.com/projects/_/buckets/uploads",
        "type": OBJECT_FINALIZED,
        "subject": "objects/team/chat.jsonl",
        "time": "2024-05-01T17:41:52.826Z",
        "datacontenttype": "application/json",
        "bucket": "uploads",
    }
    assert event["data"] == RESOURCE
    obj = UploadedObject.from_resource(event["data"])
    assert obj.uri == "gs://uploads/team/chat.jsonl#1714585312825704"
    assert obj.metadata == {"droptune-backend": "custom"}


@pytest.mark.parametrize(
    "attributes",
    [{"eventType": "OBJECT_DELETE"}, {"payloadFormat": "NONE"}, {"eventType": ""}],
)
def test_other_notifications_are_not_finalize_events(attributes):
    message = notification(**attributes)
    assert not is_finalize_notification(message)
    with pytest.raises(NotificationError, match="OBJECT_FINALIZE"):
        storage_finalized_event(message)


def test_a_notification_without_json_data_is_refused():
    broken = Message("1", b"not json", notification().attributes)
    with pytest.raises(NotificationError, match="not JSON"):
        storage_finalized_event(broken)


RECEIVER = """
import json
from pathlib import Path

import functions_framework


@functions_framework.cloud_event
def receive(event):
    received = {"attributes": dict(event.get_attributes()), "data": event.data}
    Path(__file__).with_suffix(".json").write_text(json.dumps(received))
"""


def test_functions_framework_reads_the_event_posted_in_binary_mode(tmp_path: Path):
    source = tmp_path / "receiver.py"
    source.write_text(RECEIVER)
    app = create_app(target="receive", source=str(source), signature_type="cloudevent")
    event = storage_finalized_event(notification())
    headers, body = binary_http(event)
    assert headers["ce-type"] == OBJECT_FINALIZED and "ce-datacontenttype" not in headers
    response = app.test_client().post("/", headers=headers, data=body)
    assert response.status_code == 200, response.data
    received = orjson.loads(source.with_suffix(".json").read_bytes())
    assert received["attributes"] == event["attributes"]
    assert UploadedObject.from_resource(received["data"]).generation == 1714585312825704


def test_an_object_named_outside_latin_1_reaches_the_function(tmp_path: Path):
    """HTTP headers are Latin-1: 'objects/日本/データ.jsonl' as ce-subject could not be sent
    at all, and the upload never started a run. Header values are percent-encoded, as the
    CloudEvents HTTP binding asks; the object's name travels whole in the data."""
    name = "日本/データ a.jsonl"
    source = tmp_path / "receiver.py"
    source.write_text(RECEIVER)
    app = create_app(target="receive", source=str(source), signature_type="cloudevent")
    message = replace(notification(objectId=name), data=orjson.dumps({**RESOURCE, "name": name}))
    headers, body = binary_http(storage_finalized_event(message))
    assert (
        headers["ce-subject"] == "objects/%E6%97%A5%E6%9C%AC/%E3%83%87%E3%83%BC%E3%82%BF%20a.jsonl"
    )
    headers["ce-subject"].encode("latin-1")  # sendable
    response = app.test_client().post("/", headers=headers, data=body)
    assert response.status_code == 200, response.data
    received = orjson.loads(source.with_suffix(".json").read_bytes())
    assert UploadedObject.from_resource(received["data"]).name == name
