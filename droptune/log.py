"""Structured logs: one JSON object per line, as Cloud Logging parses them.

Each line carries `severity`, `message` and, under `logging.googleapis.com/labels`, the
labels a reader filters on (`run_id`, `object`). Locally the same lines go to stderr.
`labelled(run_id=...)` adds labels to every line these loggers write inside a block, so a
process that works on one run (the trainer) tags its lines without passing the id to each
call.

>>> import io
>>> stream = io.StringIO()
>>> log = get_logger("droptune.example", stream=stream)
>>> log.info("run queued", run_id="abc")
>>> '"severity":"INFO"' in stream.getvalue()
True
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

_LABELS_KEY = "logging.googleapis.com/labels"
_CONTEXT_LABELS: ContextVar[dict[str, Any] | None] = ContextVar("droptune_log_labels", default=None)


@contextmanager
def labelled(**labels: Any) -> Iterator[None]:
    """Labels for every line logged inside the block (nested blocks add to the outer ones).

    >>> import io
    >>> stream = io.StringIO()
    >>> log = get_logger("droptune.example", stream=stream)
    >>> with labelled(run_id="abc"):
    ...     log.info("evaluating")
    >>> '"logging.googleapis.com/labels":{"run_id":"abc"}' in stream.getvalue()
    True
    """
    token = _CONTEXT_LABELS.set(
        {**(_CONTEXT_LABELS.get() or {}), **{k: v for k, v in labels.items() if v is not None}}
    )
    try:
        yield
    finally:
        _CONTEXT_LABELS.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        labels = {**(_CONTEXT_LABELS.get() or {}), **(getattr(record, "labels", None) or {})}
        if labels:
            entry[_LABELS_KEY] = {k: str(v) for k, v in labels.items()}
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class StructuredLogger:
    """A thin wrapper: `log.info("message", run_id=..., extra_field=...)`.

    Keyword arguments named in `label_keys` become labels; the rest become fields of the entry.
    """

    label_keys = frozenset({"run_id", "object", "backend", "state"})

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, message: str, exc_info: bool = False, **kw: Any) -> None:
        labels = {k: v for k, v in kw.items() if k in self.label_keys and v is not None}
        fields = {k: v for k, v in kw.items() if k not in self.label_keys}
        self._logger.log(
            level, message, exc_info=exc_info, extra={"labels": labels, "fields": fields}
        )

    def debug(self, message: str, **kw: Any) -> None:
        self._log(logging.DEBUG, message, **kw)

    def info(self, message: str, **kw: Any) -> None:
        self._log(logging.INFO, message, **kw)

    def warning(self, message: str, **kw: Any) -> None:
        self._log(logging.WARNING, message, **kw)

    def error(self, message: str, exc_info: bool = False, **kw: Any) -> None:
        self._log(logging.ERROR, message, exc_info=exc_info, **kw)


def get_logger(name: str, stream: IO[str] | None = None) -> StructuredLogger:
    """A logger writing JSON lines to `stream` (stderr by default), configured once per name."""
    logger = logging.getLogger(name)
    if not logger.handlers or stream is not None:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return StructuredLogger(logger)
