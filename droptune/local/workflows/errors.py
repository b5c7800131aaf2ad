"""Errors of the local Workflows engine.

Two kinds, as in the service: a workflow file that cannot run (`WorkflowSyntaxError`, found
before anything runs, with its line) and an error raised while it runs (`WorkflowRaise`,
carrying the Workflows error value: a map with `message` and `tags`, or whatever a `raise`
step raised). Runtime errors can be caught by `try`/`except` steps, except a resource limit
the engine enforces (`catchable` false, see limits.py); syntax errors cannot.
"""

from __future__ import annotations

from typing import Any

from droptune.errors import DroptuneError


class WorkflowSyntaxError(DroptuneError):
    """The workflow file is malformed: the message names the line and what to fix."""


class WorkflowRaise(DroptuneError):
    """A Workflows error in flight. `value` is what an `except: as: e` step would see."""

    def __init__(self, value: Any, step: str | None = None) -> None:
        self.value = value
        self.step = step  # where it was raised, filled in as it travels up
        self.expression: str | None = None
        self.routine: str | None = None
        self.catchable = True  # false: no except or retry sees it, the execution fails
        self.detail: str | None = None  # what the error map leaves out (a limit's numbers)
        super().__init__(describe(value))

    @property
    def context(self) -> str:
        """Where the error happened, as the service's execution error says it."""
        parts = [f"in {self.step}" if self.step else None]
        if self.routine:
            parts.append(f"routine {self.routine!r}")
        if self.expression:
            parts.append(f"expression {self.expression}")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(p for p in parts if p)

    @property
    def tags(self) -> list[str]:
        if isinstance(self.value, dict):
            return list(self.value.get("tags") or [])
        return []


def error(tag: str, message: str, **extra: Any) -> WorkflowRaise:
    """A built-in error such as TypeError or KeyError, shaped as the service shapes it.

    >>> error("KeyError", "key not found: b").value
    {'message': 'key not found: b', 'tags': ['KeyError']}
    """
    return WorkflowRaise({"message": message, "tags": [tag], **extra})


# What a Python error met while running a step would have been in the service.
_TAGS = (
    (KeyError, "KeyError"),
    (IndexError, "IndexError"),
    (ZeroDivisionError, "ZeroDivisionError"),
    (RecursionError, "RecursionError"),
    (TypeError, "TypeError"),
    (ArithmeticError, "ValueError"),  # an overflow: a number out of range
    (ValueError, "ValueError"),
)


def from_python(exc: Exception) -> WorkflowRaise:
    """A Python error that escaped a step, as the Workflows error the service would raise
    there (a workflow's `except` can catch it), naming the Python error; a Workflows error
    as it is.

    >>> from_python(OverflowError("int too large")).value
    {'message': 'OverflowError: int too large', 'tags': ['ValueError']}
    """
    if isinstance(exc, WorkflowRaise):
        return exc
    tag = next((tag for kind, tag in _TAGS if isinstance(exc, kind)), "SystemError")
    return error(tag, f"{type(exc).__name__}: {exc}")


def describe(value: Any) -> str:
    if isinstance(value, dict):
        tags = ",".join(value.get("tags") or [])
        message = value.get("message", value)
        return f"{tags}: {message}" if tags else str(message)
    return str(value)
