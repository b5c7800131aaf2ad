"""droptune's local event bus: Pub/Sub's Publisher API on 127.0.0.1 for clients, Eventarc's
CloudEvents for Python subscribers.

    with EventBus() as bus:
        bus.create_topic("projects/local/topics/runs")
        bus.subscribe("projects/local/topics/runs", start_workflow, name="workflows")
        # anything that speaks Pub/Sub's gRPC API with PUBSUB_EMULATOR_HOST=bus.host publishes
        # to it: google-cloud-pubsub, fake-gcs-server's storage notifications (gcloud, which
        # speaks REST to an emulator, does not: Google's emulator serves both)
        bus.wait_idle(timeout=60)

`eventarc_event` (the Pub/Sub trigger's CloudEvent), `storage_finalized_event` (a storage
notification as Eventarc's `object.v1.finalized` CloudEvent) and `binary_http` are pure
functions that work without a bus.
"""

from droptune.local.bus.delivery import DeadLetter, Handler, RetryPolicy, Subscription
from droptune.local.bus.errors import (
    AlreadyExists,
    BusError,
    InvalidArgument,
    NotFound,
    NotificationError,
)
from droptune.local.bus.events import (
    MESSAGE_PUBLISHED,
    OBJECT_FINALIZED,
    Event,
    binary_http,
    eventarc_event,
    is_finalize_notification,
    storage_finalized_event,
)
from droptune.local.bus.messages import Message
from droptune.local.bus.server import EventBus

__all__ = [
    "MESSAGE_PUBLISHED",
    "OBJECT_FINALIZED",
    "AlreadyExists",
    "BusError",
    "DeadLetter",
    "Event",
    "EventBus",
    "Handler",
    "InvalidArgument",
    "Message",
    "NotFound",
    "NotificationError",
    "RetryPolicy",
    "Subscription",
    "binary_http",
    "eventarc_event",
    "is_finalize_notification",
    "storage_finalized_event",
]
