"""Errors of the trainer package; every one is a `TrainerError` (a `DroptuneError`)."""

from droptune.errors import DroptuneError


class TrainerError(DroptuneError):
    """Base class of the errors the trainer raises on purpose."""


class RunFolderError(TrainerError):
    """The run folder lacks a file the trainer needs, or a file there is malformed."""
