"""Keys a dataset has that nothing reads: top-level fields its format ignores, and keys of a
chat message the conversion drops. Each is reported once, as an `unknown_field` warning at
its first line and JSON path, with how many records have it and the key it may have meant
(`wieght`: did you mean `weight`?); the records themselves are kept.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from droptune.formats import Format
from droptune.formats.chat import IGNORED_FIELDS, IGNORED_MESSAGE_FIELDS, MEDIA_KEYS, MESSAGE_FIELDS
from droptune.formats.schema import json_path, load_schema
from droptune.issues import Issue


@dataclass
class _Seen:
    line: int  # the first line that has the key
    path: str  # its JSON path there
    records: int = 0


class UnreadKeys:
    def __init__(self) -> None:
        self._fields: dict[str, _Seen] = {}
        self._in_messages: dict[str, _Seen] = {}

    def fields(self, line: int, keys: Iterable[str]) -> None:
        """Top-level keys of one record that its format does not read."""
        for key in keys:
            self._fields.setdefault(key, _Seen(line, json_path([key]))).records += 1

    def in_messages(self, line: int, unread: Iterable[tuple[str, str]]) -> None:
        """(key, JSON path) pairs of one record's messages: a record counts once per key."""
        first: dict[str, str] = {}
        for key, path in unread:
            first.setdefault(key, path)
        for key, path in first.items():
            self._in_messages.setdefault(key, _Seen(line, path)).records += 1

    def issues(self, fmt: Format, records: int, file: str) -> Iterator[Issue]:
        fields = load_schema(fmt.schema).fields
        read = ", ".join(sorted(fields))
        for key, seen in self._fields.items():
            if key in MEDIA_KEYS:  # refused where they hold media; empty, there is nothing
                continue
            if key in IGNORED_FIELDS:
                yield _known(f"OpenAI's {key!r}", IGNORED_FIELDS[key], seen, records, file)
                continue
            said = f"{key!r} is not a field of {fmt.title} (it reads {read})"
            yield _warning(said, key, fields, seen, records, file)
        read = ", ".join(sorted(MESSAGE_FIELDS))
        for key, seen in self._in_messages.items():
            said = (
                f"{key!r} is not a field of a message (it reads {read}; a tool's message also "
                "tool_call_id and name)"
            )
            if key in IGNORED_MESSAGE_FIELDS:
                why = IGNORED_MESSAGE_FIELDS[key]
                yield _known(f"a message's {key!r}", why, seen, records, file)
                continue
            yield _warning(said, key, MESSAGE_FIELDS, seen, records, file)


def _known(what: str, why: str, seen: _Seen, records: int, file: str) -> Issue:
    """A documented field droptune reads past on purpose, and why."""
    message = f"{what} is ignored: {why}; {seen.records} of {records} records have it"
    return Issue("unknown_field", message, line=seen.line, path=seen.path, file=file)


def _warning(
    said: str, key: str, known: Iterable[str], seen: _Seen, records: int, file: str
) -> Issue:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    message = f"{said}, so it is ignored; {seen.records} of {records} records have it{hint}"
    return Issue("unknown_field", message, line=seen.line, path=seen.path, file=file)
