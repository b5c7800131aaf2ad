"""Long-running operations: `{"name", "done", "metadata", "response" | "error"}`.

Names nest under the resource they act on, as Vertex AI writes them
(`projects/P/locations/L/endpoints/E/operations/O`), so a client's operations stub finds
the same URL pattern it uses against Google. `response` and `metadata` are packed `Any`s,
which serialise with their `"@type": "type.googleapis.com/google.cloud.aiplatform.v1.X"`.
"""

from __future__ import annotations

import threading
from typing import Any

from google.longrunning import operations_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from droptune.local.vertex import ids
from droptune.local.vertex.errors import not_found
from droptune.local.vertex.schema import to_json


class Operations:
    """Every operation the server has started, by name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: dict[str, operations_pb2.Operation] = {}

    def start(self, parent: str, metadata: Message) -> operations_pb2.Operation:
        """A new, not yet done operation under the resource `parent`."""
        operation = operations_pb2.Operation(name=f"{parent}/operations/{ids.new_id()}")
        operation.metadata.Pack(metadata)
        with self._lock:
            self._operations[operation.name] = operation
        return operation

    def finish(self, name: str, response: Message) -> None:
        with self._lock:
            operation = self._operations[name]
            operation.response.Pack(response)
            operation.done = True

    def fail(self, name: str, code: int, message: str) -> None:
        with self._lock:
            operation = self._operations[name]
            operation.error.CopyFrom(status_pb2.Status(code=code, message=message))
            operation.done = True

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            operation = self._operations.get(name)
            if operation is None:
                raise not_found(f"Operation {name}")
            return to_json(operation)
