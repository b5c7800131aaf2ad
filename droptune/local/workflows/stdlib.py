"""The Workflows standard library: the functions a workflow can `call` or use in `${...}`.

Each function takes the argument names the Workflows reference gives them, so a `call` step's
`args` map onto keyword arguments and an expression's arguments onto positional ones. What
needs the outside world goes through the `Runtime`: environment variables, the clock (virtual
in tests, so `sys.sleep(600)` takes no time), logs and HTTP.
"""

from __future__ import annotations

import base64 as b64
import json as pyjson
import math as pymath
import re
import sys as pysys
import time as pytime
import urllib.parse
import uuid as pyuuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from droptune.local.workflows.errors import error
from droptune.local.workflows.expressions import is_number, type_name


class Clock:
    """Wall-clock time; `sys.sleep` really sleeps."""

    def now(self) -> float:
        return pytime.time()

    def sleep(self, seconds: float) -> None:
        pytime.sleep(seconds)


class VirtualClock(Clock):
    """Time that moves only when the workflow sleeps: a 2-hour poll loop runs in milliseconds."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += seconds


@dataclass
class Runtime:
    env: dict[str, str] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)
    logs: list[dict[str, Any]] = field(default_factory=list)
    echo_logs: bool = False
    # Root URL per Google API for `googleapis.*` connectors, e.g. {"storage": "http://127.0.0.1:4443"}
    connector_roots: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionRef:
    """A library function used as a value, e.g. `predicate: ${http.default_retry_predicate}`."""

    name: str


def _need(value: Any, kind: type | tuple[type, ...], what: str, fn: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise error("TypeError", f"{fn}: {what} must be {_kind(kind)}, got {type_name(value)}")
    return value


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a double",
        list: "a list",
        dict: "a map",
        bytes: "bytes",
        bool: "a boolean",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def to_string(value: Any) -> str:
    """`string(x)`: numbers, booleans and strings; maps and lists are a TypeError."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        raise error("TypeError", "string: bytes need text.decode")
    raise error("TypeError", f"string: cannot convert a {type_name(value)} to a string")


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise error("TypeError", "int: cannot convert a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                raise error("ValueError", f"int: not a number: {value!r}") from None
    raise error("TypeError", f"int: cannot convert a {type_name(value)}")


def to_double(value: Any) -> float:
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise error("ValueError", f"double: not a number: {value!r}") from None
    raise error("TypeError", f"double: cannot convert a {type_name(value)}")


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if is_number(value):
        return value != 0
    raise error("TypeError", f"bool: cannot convert {value!r}")


def length(value: Any) -> int:
    if isinstance(value, str | list | dict | bytes):
        return len(value)
    raise error("TypeError", f"len: a {type_name(value)} has no length")


def keys(map: Any) -> list[str]:
    return list(_need(map, dict, "the argument", "keys"))


def default(value: Any, default_value: Any) -> Any:
    return default_value if value is None else value


# --- text -------------------------------------------------------------------------------
def text_split(source: str, separator: str) -> list[str]:
    _need(source, str, "source", "text.split")
    _need(separator, str, "separator", "text.split")
    if separator == "":
        return list(source)
    return source.split(separator)


def text_substring(source: str, start: int, end: int) -> str:
    _need(source, str, "source", "text.substring")
    start, end = max(0, to_int(start)), min(len(source), to_int(end))
    return source[start:end] if start < end else ""


def text_find_all(source: str, substr: str) -> list[dict[str, Any]]:
    _need(source, str, "source", "text.find_all")
    _need(substr, str, "substr", "text.find_all")
    found, start = [], 0
    while substr and (index := source.find(substr, start)) >= 0:
        found.append({"index": index, "match": substr})
        start = index + 1
    return found


def _regex(pattern: str, fn: str) -> re.Pattern[str]:
    _need(pattern, str, "regexp", fn)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise error("ValueError", f"{fn}: bad regular expression {pattern!r}: {exc}") from None


def text_find_all_regex(source: str, regexp: str) -> list[dict[str, Any]]:
    pattern = _regex(regexp, "text.find_all_regex")
    return [
        {"index": m.start(), "match": m.group(0)}
        for m in pattern.finditer(_need(source, str, "source", "text.find_all_regex"))
    ]


def text_match_regex(source: str, regexp: str) -> bool:
    return (
        _regex(regexp, "text.match_regex").search(_need(source, str, "source", "text.match_regex"))
        is not None
    )


def text_replace_all(source: str, substr: str, value: str) -> str:
    _need(source, str, "source", "text.replace_all")
    return source.replace(
        _need(substr, str, "substr", "text.replace_all"),
        _need(value, str, "value", "text.replace_all"),
    )


def text_replace_all_regex(source: str, regexp: str, replacement: str) -> str:
    pattern = _regex(regexp, "text.replace_all_regex")
    # Workflows writes group references as \1; Python's re takes those as they are.
    return pattern.sub(
        _need(replacement, str, "replacement", "text.replace_all_regex"),
        _need(source, str, "source", "text.replace_all_regex"),
    )


def text_encode(text: str, charset: str = "UTF-8") -> bytes:
    try:
        return _need(text, str, "text", "text.encode").encode(charset)
    except LookupError:
        raise error("ValueError", f"text.encode: unknown charset {charset!r}") from None


def text_decode(data: bytes, charset: str = "UTF-8") -> str:
    try:
        return _need(data, bytes, "data", "text.decode").decode(charset)
    except UnicodeDecodeError as exc:
        raise error("ValueError", f"text.decode: not {charset}: {exc}") from None


# --- json, base64 -----------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return b64.b64encode(value).decode()
    raise error("TypeError", f"json.encode: cannot encode a {type_name(value)}")


def json_encode_to_string(data: Any, indent: Any = None) -> str:
    if isinstance(indent, dict):  # {prefix, indent} as in the reference
        indent = indent.get("indent")
    elif indent is True:
        indent = 2
    return pyjson.dumps(
        data,
        default=_json_default,
        ensure_ascii=False,
        indent=indent,
        separators=None if indent else (",", ":"),
    )


def json_encode(data: Any, indent: Any = None) -> bytes:
    return json_encode_to_string(data, indent).encode()


def json_decode(data: Any) -> Any:
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    _need(data, str, "data", "json.decode")
    try:
        return pyjson.loads(data)
    except ValueError as exc:
        raise error("ValueError", f"json.decode: not JSON: {exc}") from None


def base64_encode(data: bytes, padding: bool = True) -> str:
    out = b64.b64encode(_need(data, bytes, "data", "base64.encode")).decode()
    return out if padding else out.rstrip("=")


def base64_decode(data: str, padding: bool = True) -> bytes:
    text = _need(data, str, "data", "base64.decode")
    try:
        return b64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise error("ValueError", "base64.decode: not base64") from None


# --- map, list --------------------------------------------------------------------------
def map_get(map: Any, keys: Any) -> Any:
    current = map
    for key in keys if isinstance(keys, list) else [keys]:
        if not isinstance(current, dict) or key not in current:
            return None
        current = current[key]
    return current


def map_merge(first: Any, second: Any) -> dict[str, Any]:
    return {
        **_need(first, dict, "first", "map.merge"),
        **_need(second, dict, "second", "map.merge"),
    }


def map_merge_nested(first: Any, second: Any) -> dict[str, Any]:
    out = dict(_need(first, dict, "first", "map.merge_nested"))
    for key, value in _need(second, dict, "second", "map.merge_nested").items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = map_merge_nested(out[key], value)
        else:
            out[key] = value
    return out


def map_delete(map: Any, key: str) -> dict[str, Any]:
    out = dict(_need(map, dict, "map", "map.delete"))
    out.pop(key, None)
    return out


def list_concat(objs: Any, val: Any) -> list[Any]:
    return [*_need(objs, list, "objs", "list.concat"), val]


def list_prepend(objs: Any, val: Any) -> list[Any]:
    return [val, *_need(objs, list, "objs", "list.prepend")]


# --- time, math, uuid -------------------------------------------------------------------
def time_format(seconds: Any, timezone: str | None = None) -> str:
    if not is_number(seconds):
        raise error("TypeError", f"time.format: seconds must be a number, got {type_name(seconds)}")
    try:
        zone = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise error("ValueError", f"time.format: unknown time zone {timezone!r}") from None
    moment = datetime.fromtimestamp(seconds, zone)
    text = moment.isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z") if zone is UTC else text


def time_parse(value: str) -> float:
    text = _need(value, str, "value", "time.parse")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise error("ValueError", f"time.parse: not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise error("ValueError", f"time.parse: {text!r} has no time zone offset")
    return moment.timestamp()


def _number(fn: str, value: Any) -> Any:
    if not is_number(value):
        raise error("TypeError", f"{fn}: needs a number, got {type_name(value)}")
    return value


def math_floor(x: Any) -> int:
    return pymath.floor(_number("math.floor", x))


def math_sqrt(x: Any) -> float:
    value = _number("math.sqrt", x)
    if value < 0:
        raise error("ValueError", "math.sqrt: negative number")
    return pymath.sqrt(value)


# --- retry policies and predicates ------------------------------------------------------
DEFAULT_BACKOFF = {"initial_delay": 1, "max_delay": 60, "multiplier": 1.25}
HTTP_RETRY_CODES = (429, 502, 503, 504)
HTTP_RETRY_NON_IDEMPOTENT_CODES = (429, 503)
RETRY_TAGS = ("ConnectionError", "ConnectionFailedError", "TimeoutError")


def _retryable(e: Any, codes: tuple[int, ...]) -> bool:
    if not isinstance(e, dict):
        return False
    if any(tag in (e.get("tags") or []) for tag in RETRY_TAGS):
        return True
    return "HttpError" in (e.get("tags") or []) and e.get("code") in codes


def http_default_retry_predicate(e: Any) -> bool:
    """Retry 429, 502, 503, 504 and connection errors and timeouts."""
    return _retryable(e, HTTP_RETRY_CODES)


def http_default_retry_predicate_non_idempotent(e: Any) -> bool:
    """Retry 429 and 503 only (the request may have had an effect) and connection failures."""
    return _retryable(e, HTTP_RETRY_NON_IDEMPOTENT_CODES)


CONSTANTS: dict[str, Any] = {
    "http.default_retry": {
        "predicate": FunctionRef("http.default_retry_predicate"),
        "max_retries": 5,
        "backoff": DEFAULT_BACKOFF,
    },
    "http.default_retry_non_idempotent": {
        "predicate": FunctionRef("http.default_retry_predicate_non_idempotent"),
        "max_retries": 5,
        "backoff": DEFAULT_BACKOFF,
    },
    "retry.default_backoff": DEFAULT_BACKOFF,
}


def functions(runtime: Runtime) -> dict[str, Callable[..., Any]]:
    """Every library function by its dotted name, bound to `runtime`."""

    def get_env(name: str, default: Any = None) -> Any:
        return runtime.env.get(_need(name, str, "name", "sys.get_env"), default)

    def now() -> float:
        return runtime.clock.now()

    def sleep(seconds: Any) -> None:
        if not is_number(seconds) or seconds < 0:
            raise error("ValueError", f"sys.sleep: seconds must be a number >= 0, got {seconds!r}")
        runtime.clock.sleep(seconds)

    def log(
        data: Any = None,
        severity: str = "DEFAULT",
        text: Any = None,
        json: Any = None,
        timeout: Any = None,
    ) -> None:
        payload = next((v for v in (data, text, json) if v is not None), None)
        entry = {"severity": severity, "data": payload, "time": runtime.clock.now()}
        runtime.logs.append(entry)
        if runtime.echo_logs:
            print(
                pyjson.dumps({"severity": severity, "message": payload}, default=str),
                file=pysys.stderr,
            )

    return {
        "sys.get_env": get_env,
        "sys.now": now,
        "sys.sleep": sleep,
        "sys.log": log,
        "string": to_string,
        "int": to_int,
        "double": to_double,
        "bool": to_bool,
        "len": length,
        "keys": keys,
        "default": default,
        "text.split": text_split,
        "text.substring": text_substring,
        "text.find_all": text_find_all,
        "text.find_all_regex": text_find_all_regex,
        "text.match_regex": text_match_regex,
        "text.replace_all": text_replace_all,
        "text.replace_all_regex": text_replace_all_regex,
        "text.to_lower": lambda source: _need(source, str, "source", "text.to_lower").lower(),
        "text.to_upper": lambda source: _need(source, str, "source", "text.to_upper").upper(),
        "text.encode": text_encode,
        "text.decode": text_decode,
        "text.url_encode": lambda source: urllib.parse.quote(
            _need(source, str, "source", "text.url_encode"), safe="-_.!~*'()"
        ),
        "text.url_encode_plus": lambda source: urllib.parse.quote_plus(
            _need(source, str, "source", "text.url_encode_plus")
        ),
        "text.url_decode": lambda source: urllib.parse.unquote_plus(
            _need(source, str, "source", "text.url_decode")
        ),
        "json.encode": json_encode,
        "json.encode_to_string": json_encode_to_string,
        "json.decode": json_decode,
        "base64.encode": base64_encode,
        "base64.decode": base64_decode,
        "map.get": map_get,
        "map.merge": map_merge,
        "map.merge_nested": map_merge_nested,
        "map.delete": map_delete,
        "list.concat": list_concat,
        "list.prepend": list_prepend,
        "time.format": time_format,
        "time.parse": time_parse,
        "uuid.generate": lambda: str(pyuuid.uuid4()),
        "math.abs": lambda x: abs(_number("math.abs", x)),
        "math.floor": math_floor,
        "math.max": lambda x, y: max(_number("math.max", x), _number("math.max", y)),
        "math.min": lambda x, y: min(_number("math.min", x), _number("math.min", y)),
        "math.sqrt": math_sqrt,
        "retry.always": lambda e: True,
        "retry.never": lambda e: False,
        "http.default_retry_predicate": http_default_retry_predicate,
        "http.default_retry_predicate_non_idempotent": http_default_retry_predicate_non_idempotent,
    }
