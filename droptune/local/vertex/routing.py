"""Requests, routes and the shared state every service of the server works with.

Each service (custom jobs, models, endpoints, operations) lists its `Route`s; the server
tries them in order. A new service (tuning jobs, say) is one more class with a `routes()`
method added to `VertexServer.services`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from droptune.local.vertex.errors import invalid
from droptune.local.vertex.operations import Operations

PARENT = r"/v1/(?P<parent>projects/[^/:]+/locations/[^/:]+)"
ID = r"(?P<id>[^/:@]+)"


@dataclass
class Request:
    """One API call: path parameters from the route, query parameters, decoded JSON body."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any


Handler = Callable[[Request], Any]  # returns the JSON answer (HTTP 200) or raises ApiError


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler

    @classmethod
    def of(cls, method: str, pattern: str, handler: Handler) -> Route:
        return cls(method, re.compile(pattern + r"\Z"), handler)


@dataclass
class Runtime:
    """What every service shares: the state folder, the environment given to every process
    the server starts, the operations, and the signal that the server is stopping."""

    root: Path
    env: dict[str, str]
    operations: Operations = field(default_factory=Operations)
    stopping: threading.Event = field(default_factory=threading.Event)


def page(items: list[dict[str, Any]], query: dict[str, str], key: str) -> dict[str, Any]:
    """One page of a list answer: `{key: [...], "nextPageToken": ...}` (token = offset)."""
    try:
        size = int(query.get("pageSize") or 0) or 100
        start = int(query.get("pageToken") or 0)
    except ValueError:
        raise invalid("pageSize and pageToken must be numbers.") from None
    answer: dict[str, Any] = {}
    if items[start : start + size]:
        answer[key] = items[start : start + size]
    if start + size < len(items):
        answer["nextPageToken"] = str(start + size)
    return answer
