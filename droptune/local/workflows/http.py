"""`http.*` for the local engine: real requests (`requests`), Workflows' response and errors.

A response is `{"body", "code", "headers"}`; a JSON body (by Content-Type) is decoded, other
text is a string, anything else bytes. A map or list `body` is sent as JSON. Status >= 400
raises an `HttpError` map with `code`, `headers`, `body`; a connection that cannot be made is
a `ConnectionFailedError`, one that breaks a `ConnectionError`, a slow server a `TimeoutError`.
A body larger than the service takes (2 MB, limits.py) is a `ResourceLimitError` that no
`except` catches. `auth` is accepted and ignored locally: local servers need no token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests

from droptune.local.workflows.errors import WorkflowRaise, error
from droptune.local.workflows.expressions import type_name
from droptune.local.workflows.limits import MAX_RESPONSE_BYTES, exceeded

DEFAULT_TIMEOUT = 300.0  # seconds, as the service's default for http.* calls
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def decode_body(response: requests.Response) -> Any:
    content_type = response.headers.get("Content-Type", "")
    if not response.content:
        return None
    if "json" in content_type:
        try:
            return response.json()
        except ValueError:
            return response.text
    if content_type.startswith("text/") or "charset" in content_type:
        return response.text
    return response.content


def encode_body(body: Any, headers: dict[str, str]) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str) and "json" not in headers.get("Content-Type", "application/json"):
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode()


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> requests.Response:
    """One request, with Workflows' errors for failures of the connection, of the status and
    of the size."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise error("ValueError", f"http: url must be an http(s) URL, got {url!r}")
    headers = {str(k): str(v) for k, v in (headers or {}).items()}
    data = encode_body(body, headers)
    params = {k: _query_value(v) for k, v in (query or {}).items()}
    try:
        response = session.request(
            method, url, data=data, headers=headers, params=params, timeout=timeout
        )
    except requests.Timeout as exc:
        raise error("TimeoutError", f"{method} {url}: no answer in {timeout} s: {exc}") from None
    except requests.ConnectionError as exc:
        tag = (
            "ConnectionFailedError"
            if "refused" in str(exc).lower() or "resolve" in str(exc).lower()
            else "ConnectionError"
        )
        raise error(tag, f"{method} {url}: {exc}") from None
    except requests.RequestException as exc:  # a broken answer (ChunkedEncodingError, ...)
        raise error("ConnectionError", f"{method} {url}: {exc}") from None
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise exceeded(
            f"{method} {url}: the response is {len(response.content):,} bytes, more than the "
            f"{MAX_RESPONSE_BYTES:,} (2 MB) a workflow can receive"
        )
    if response.status_code >= 400:
        raise WorkflowRaise({
            "message": f"HTTP server responded with error code {response.status_code}",
            "code": response.status_code,
            "headers": dict(response.headers),
            "body": decode_body(response),
            "tags": ["HttpError"],
        })  # fmt: skip
    return response


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    return value


def functions(session: requests.Session) -> dict[str, Callable[..., Any]]:
    def request(
        method: str,
        url: str,
        timeout: float = DEFAULT_TIMEOUT,
        body: Any = None,
        headers: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        auth: Any = None,
        private_service_name: Any = None,
    ) -> dict[str, Any]:
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise error(
                "ValueError",
                f"http.request: method must be one of {', '.join(METHODS)}, got {method!r}",
            )
        if not isinstance(timeout, int | float) or isinstance(timeout, bool):
            raise error(
                "TypeError", f"http: timeout must be a number of seconds, got {type_name(timeout)}"
            )
        response = send(
            session, method.upper(), url, body=body, headers=headers, query=query, timeout=timeout
        )
        return {
            "body": decode_body(response),
            "code": response.status_code,
            "headers": dict(response.headers),
        }

    def verb(method: str) -> Callable[..., Any]:
        def call(url: str, **kwargs: Any) -> dict[str, Any]:
            return request(method, url, **kwargs)

        return call

    return {"http.request": request, **{f"http.{m.lower()}": verb(m) for m in METHODS}}
