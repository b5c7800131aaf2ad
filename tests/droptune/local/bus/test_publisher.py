"""The Publisher API as a client sees it: the same tests pass against the bus and against
Google's Pub/Sub emulator, so the bus behaves as the reference does."""

from __future__ import annotations

import uuid

import pytest
from google.api_core import exceptions as gexc
from google.pubsub_v1.services.publisher.client import PublisherClient as GapicPublisher
from google.pubsub_v1.types import PubsubMessage

from tests.droptune.local.bus.conftest import PubSub


def publish_call(pubsub: PubSub, topic: str, messages: list[PubsubMessage]):
    """One Publish RPC with exactly `messages`: the generated client's method, without the
    batching layer of `PublisherClient.publish` (which would split or refuse the batch)."""
    return GapicPublisher.publish(pubsub.publisher, topic=topic, messages=messages)


def test_topics_are_created_got_listed_and_deleted(pubsub: PubSub):
    client = pubsub.publisher
    first, second = pubsub.topic(), pubsub.topic()
    assert client.get_topic(topic=first).name == first
    listed = {t.name for t in client.list_topics(project=f"projects/{pubsub.project}")}
    assert {first, second} <= listed
    client.delete_topic(topic=first)
    with pytest.raises(gexc.NotFound, match="Topic not found"):
        client.get_topic(topic=first)
    with pytest.raises(gexc.NotFound):
        client.delete_topic(topic=first)
    assert first not in {t.name for t in client.list_topics(project=f"projects/{pubsub.project}")}


def test_list_topics_pages_through_every_topic(pubsub: PubSub):
    project = f"projects/p{uuid.uuid4().hex[:10]}"
    names = {f"{project}/topics/t-{i}" for i in range(5)}
    for name in names:
        pubsub.publisher.create_topic(name=name)
    pages = pubsub.publisher.list_topics(request={"project": project, "page_size": 2}).pages
    assert {t.name for page in pages for t in page.topics} == names


def test_creating_an_existing_topic_is_already_exists(pubsub: PubSub):
    topic = pubsub.topic()
    with pytest.raises(gexc.AlreadyExists, match="Topic already exists"):
        pubsub.publisher.create_topic(name=topic)


@pytest.mark.parametrize(
    "name",
    ["bad", "projects/p/topics/ab", "projects/p/topics/1abc", "projects/p/topics/goog-abc"],
)
def test_bad_topic_names_are_invalid_arguments(pubsub: PubSub, name: str):
    with pytest.raises(gexc.InvalidArgument, match="Invalid \\[topics\\] name"):
        pubsub.publisher.create_topic(name=name)


def test_publish_returns_ids_and_delivers_data_and_attributes(pubsub: PubSub):
    topic = pubsub.topic()
    read = pubsub.reader(topic)
    futures = [pubsub.publisher.publish(topic, f"m{i}".encode(), n=str(i)) for i in range(3)]
    ids = [f.result(timeout=30) for f in futures]
    assert all(isinstance(i, str) and i.isdigit() for i in ids) and len(set(ids)) == 3
    got = {r.id: r for r in read(3)}
    assert set(got) == set(ids)
    for i, message_id in enumerate(ids):
        assert got[message_id].data == f"m{i}".encode()
        assert got[message_id].attributes == {"n": str(i)}


def test_ordering_keys_and_attribute_only_messages_round_trip(pubsub: PubSub):
    topic = pubsub.topic()
    read = pubsub.reader(topic)
    keyed = pubsub.publisher.publish(topic, b"first", ordering_key="run-1").result(timeout=30)
    bare = pubsub.publisher.publish(topic, b"", kind="ping").result(timeout=30)
    got = {r.id: r for r in read(2)}
    assert (got[keyed].data, got[keyed].ordering_key) == (b"first", "run-1")
    assert (got[bare].data, got[bare].attributes, got[bare].ordering_key) == (
        b"",
        {"kind": "ping"},
        "",
    )


def test_a_batch_of_500_in_one_publish_call(pubsub: PubSub):
    topic = pubsub.topic()
    read = pubsub.reader(topic)
    messages = [PubsubMessage(data=f"{i}".encode(), attributes={"i": str(i)}) for i in range(500)]
    response = publish_call(pubsub, topic, messages)
    assert len(response.message_ids) == len(set(response.message_ids)) == 500
    got = {r.id: r for r in read(500)}
    for i, message_id in enumerate(response.message_ids):
        assert (got[message_id].data, got[message_id].attributes) == (
            f"{i}".encode(),
            {"i": str(i)},
        )


def test_publishing_to_a_missing_topic_is_not_found(pubsub: PubSub):
    missing = f"projects/{pubsub.project}/topics/missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(gexc.NotFound, match="Topic not found"):
        pubsub.publisher.publish(missing, b"x").result(timeout=30)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([PubsubMessage()], "Some messages are empty"),
        ([PubsubMessage(data=b"x"), PubsubMessage()], "Some messages are empty"),
        ([], "No messages to publish"),
        ([PubsubMessage(data=b"x")] * 1001, "Too many messages to publish"),
    ],
)
def test_publish_refuses_what_the_emulator_refuses(pubsub: PubSub, messages, error):
    topic = pubsub.topic()
    with pytest.raises(gexc.InvalidArgument, match=error):
        publish_call(pubsub, topic, messages)
