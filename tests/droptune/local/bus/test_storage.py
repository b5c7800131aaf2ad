"""fake-gcs-server publishing its Cloud Storage notifications to the bus, and the finalize
CloudEvent made from one, as the local pipeline runs them."""

from __future__ import annotations

import queue
import uuid

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from droptune.intake.event import UploadedObject
from droptune.local.bus import EventBus, Message, storage_finalized_event
from droptune.local.storage_emulator import StorageEmulator
from tests.droptune.local.bus.conftest import DEADLINE

PROJECT, TOPIC_ID = "local", "uploads-notify"
TOPIC = f"projects/{PROJECT}/topics/{TOPIC_ID}"


@pytest.mark.slow
def test_uploads_reach_subscribers_as_finalize_notifications(bus: EventBus, monkeypatch):
    bus.create_topic(TOPIC)
    events: queue.Queue[dict] = queue.Queue()
    bus.subscribe(TOPIC, events.put, name="upload-function")
    uploads = f"uploads-{uuid.uuid4().hex[:8]}"
    # fake-gcs-server finds the Pub/Sub service in its environment, as any client does.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", bus.host)
    gcs = StorageEmulator(pubsub_project=PROJECT, pubsub_topic=TOPIC_ID, notify_bucket=uploads)
    with gcs:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        client = storage.Client(project="droptune-test", credentials=AnonymousCredentials())
        other = client.create_bucket(f"other-{uuid.uuid4().hex[:8]}")
        other.blob("ignored.jsonl").upload_from_string(b"{}\n")  # not the notify bucket
        blob = client.create_bucket(uploads).blob("team/chat.jsonl")
        blob.upload_from_string(b'{"messages": []}\n', content_type="application/jsonl")

        message = Message.from_event(events.get(timeout=DEADLINE))
        assert bus.wait_idle(DEADLINE)
    assert events.empty() and bus.published[TOPIC] == 1
    assert message.attributes["eventType"] == "OBJECT_FINALIZE"
    assert message.attributes["payloadFormat"] == "JSON_API_V1"
    assert (message.attributes["bucketId"], message.attributes["objectId"]) == (
        uploads,
        "team/chat.jsonl",
    )
    assert message.attributes["objectGeneration"] == str(blob.generation)

    event = storage_finalized_event(message)
    assert event["attributes"]["subject"] == "objects/team/chat.jsonl"
    obj = UploadedObject.from_resource(event["data"])
    assert (obj.bucket, obj.name, obj.generation) == (uploads, "team/chat.jsonl", blob.generation)
