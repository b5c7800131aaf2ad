"""Request bodies checked against the aiplatform v1 protobuf types; resources written back as
the JSON the REST API returns.

Parsing with `ignore_unknown_fields=False` rejects unknown and mistyped fields the way the
real API does, so a request that works here has the shape Vertex AI expects. Responses go
through `MessageToDict`, which gives exactly the API's JSON: camelCase names, enum names,
int64 as strings, RFC 3339 timestamps.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from droptune.local.vertex.errors import invalid


def parse(body: Any, proto_type: type, what: str) -> Any:
    """`body` (decoded JSON) as a message of the proto-plus type `proto_type`, or a 400.

    >>> from google.cloud.aiplatform_v1.types import Endpoint
    >>> parse({"displayName": "e"}, Endpoint, "endpoint").display_name
    'e'
    """
    message = proto_type.pb(proto_type())
    if not isinstance(body, dict):
        raise invalid(f"Invalid JSON payload received. {what} must be a JSON object.")
    try:
        json_format.ParseDict(body, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise invalid(f"Invalid JSON payload received. {what}: {exc}") from None
    return message


def to_json(message: Message) -> dict[str, Any]:
    """The REST API's JSON of a message (camelCase, enum names, int64 as strings)."""
    return json_format.MessageToDict(message)


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def env_list(env_vars: Any) -> dict[str, str]:
    """A repeated `EnvVar` field as a dict, later entries winning."""
    return {var.name: var.value for var in env_vars}
