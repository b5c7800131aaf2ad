"""Errors raised by the droptune core. Every one derives from `DroptuneError`.

Problems *in the data* are not exceptions: they are collected as issues in a report
(`droptune.report`). Exceptions are for things that stop the work: bad configuration,
unreadable sources, misuse of the API.
"""


class DroptuneError(Exception):
    """Base class of every error droptune raises on purpose."""


class ConfigError(DroptuneError):
    """A run configuration is invalid (unknown key, wrong type, out-of-range value)."""


class SourceError(DroptuneError):
    """A data source cannot be opened or read (missing file, bad URI, permission)."""


class SourceNotFound(SourceError):
    """The data source does not exist (any more): no such file, object or object generation."""


class TokenizerError(DroptuneError):
    """A base model's tokenizer cannot be loaded."""


class PreconditionFailed(DroptuneError):
    """A conditional write lost: the object was created or changed by someone else first."""
