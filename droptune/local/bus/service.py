"""The Pub/Sub Publisher gRPC service, on grpc's generic handlers.

The installed packages ship no servicer stubs for Pub/Sub, so each method is registered by
its full name with the raw protobuf classes of `google-cloud-pubsub` for (de)serializing. The
methods only translate: requests in, `TopicRegistry` calls, responses or the registry's
`BusError` (as the gRPC status it carries) out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1.types import pubsub as types

from droptune.local.bus.errors import BusError
from droptune.local.bus.messages import Message

SERVICE = "google.pubsub.v1.Publisher"

# The raw protobuf classes: proto-plus wrappers would copy every message twice.
Topic = types.Topic.pb()
PublishRequest = types.PublishRequest.pb()
PublishResponse = types.PublishResponse.pb()
GetTopicRequest = types.GetTopicRequest.pb()
ListTopicsRequest = types.ListTopicsRequest.pb()
ListTopicsResponse = types.ListTopicsResponse.pb()
DeleteTopicRequest = types.DeleteTopicRequest.pb()
ListTopicSubscriptionsRequest = types.ListTopicSubscriptionsRequest.pb()
ListTopicSubscriptionsResponse = types.ListTopicSubscriptionsResponse.pb()


class TopicRegistry(Protocol):
    """What the service needs of the bus."""

    def create_topic(self, topic: Any) -> Any: ...
    def get_topic(self, name: str) -> Any: ...
    def list_topics(self, project: str) -> list[Any]: ...
    def delete_topic(self, name: str) -> None: ...
    def publish(self, topic: str, messages: list[Message]) -> list[str]: ...
    def topic_subscriptions(self, name: str) -> list[str]: ...


def _answering_errors(method: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    """A gRPC behaviour that turns a `BusError` into the status the emulator answers with."""

    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(request)
        except BusError as exc:
            context.abort(exc.code, str(exc))

    return behaviour


def _page(names: list[str], size: int, token: str) -> tuple[list[str], str]:
    """One page of sorted `names` from `token` on; the token is the next page's first name,
    as the emulator makes it.

    >>> _page(["a", "b", "c"], 2, "")
    (['a', 'b'], 'c')
    >>> _page(["a", "b", "c"], 2, "c")
    (['c'], '')
    """
    rest = [name for name in sorted(names) if name >= token]
    if size <= 0 or len(rest) <= size:
        return rest, ""
    return rest[:size], rest[size]


def publisher_handler(bus: TopicRegistry) -> grpc.GenericRpcHandler:
    """The Publisher methods a client library or fake-gcs-server calls, served by `bus`."""

    def publish(request: Any) -> Any:
        # Drafts: the bus gives each its id and publish time.
        messages = [
            Message("", raw.data, dict(raw.attributes), raw.ordering_key)
            for raw in request.messages
        ]
        return PublishResponse(message_ids=bus.publish(request.topic, messages))

    def list_topics(request: Any) -> Any:
        topics = {topic.name: topic for topic in bus.list_topics(request.project)}
        page, token = _page(list(topics), request.page_size, request.page_token)
        return ListTopicsResponse(topics=[topics[n] for n in page], next_page_token=token)

    def delete_topic(request: Any) -> Any:
        bus.delete_topic(request.topic)
        return empty_pb2.Empty()

    def topic_subscriptions(request: Any) -> Any:
        names = bus.topic_subscriptions(request.topic)
        page, token = _page(names, request.page_size, request.page_token)
        return ListTopicSubscriptionsResponse(subscriptions=page, next_page_token=token)

    methods = {
        "CreateTopic": (bus.create_topic, Topic, Topic),
        "GetTopic": (lambda r: bus.get_topic(r.topic), GetTopicRequest, Topic),
        "ListTopics": (list_topics, ListTopicsRequest, ListTopicsResponse),
        "DeleteTopic": (delete_topic, DeleteTopicRequest, empty_pb2.Empty),
        "Publish": (publish, PublishRequest, PublishResponse),
        "ListTopicSubscriptions": (
            topic_subscriptions,
            ListTopicSubscriptionsRequest,
            ListTopicSubscriptionsResponse,
        ),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                _answering_errors(method),
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for name, (method, request, response) in methods.items()
        },
    )
