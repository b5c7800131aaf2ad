"""Errors of the local event bus.

Each carries the gRPC status Pub/Sub answers with, so the server can send the client exactly
the error Google's emulator sends (`NOT_FOUND`, "Topic not found"), and Python callers of the
bus get the same error as a `DroptuneError`.
"""

from __future__ import annotations

import grpc

from droptune.errors import DroptuneError


class BusError(DroptuneError):
    """Base class of the bus's errors; `code` is the gRPC status a client receives."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(BusError):
    """A malformed request: a bad topic name, no messages, an empty message."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(BusError):
    """The topic does not exist (any more)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(BusError):
    """A topic or subscription of that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class NotificationError(BusError):
    """A message that is not a Cloud Storage OBJECT_FINALIZE notification in JSON_API_V1."""

    code = grpc.StatusCode.INVALID_ARGUMENT
