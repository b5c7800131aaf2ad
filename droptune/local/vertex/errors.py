"""Errors of the local Vertex AI server. Every one derives from `VertexError`.

`ApiError` is what a request handler raises to answer with Google's error shape:
`{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}}`.
"""

from __future__ import annotations

from droptune.errors import DroptuneError

# HTTP status of each google.rpc.Code name the server answers with.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class VertexError(DroptuneError):
    """Base class of every error the local Vertex AI server raises."""


class ApiError(VertexError):
    """A request the API refuses, answered as `{"error": {code, message, status}}`."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.status, 500)

    def body(self) -> dict:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


def not_found(name: str) -> ApiError:
    return ApiError("NOT_FOUND", f"{name} not found.")


def precondition(message: str) -> ApiError:
    return ApiError("FAILED_PRECONDITION", message)


def status_for_http(code: int) -> str:
    """The google.rpc.Code name closest to an HTTP status (for a serving container's errors)."""
    for name, http in HTTP_STATUS.items():
        if http == code:
            return name
    return "INVALID_ARGUMENT" if 400 <= code < 500 else "INTERNAL"
