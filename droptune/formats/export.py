"""Conversation-message exports: one message per record, grouped into conversations.

Records carry `session_id`, `role`, `content` and optionally `message_id` and
`related_message` (the message this one answers). A session's messages follow the
`related_message` chain when every message has both ids, file order otherwise. Sessions are
collected in memory until the end of the file, since exports often interleave sessions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from droptune.formats.base import Example, Record

ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "bot": "assistant",
}


def is_conversation_export(record: Record) -> bool:
    return "session_id" in record and "role" in record


def _message_id(record: Record) -> object:
    """The message's id when it is a usable key (string or integer), else None."""
    value = record.get("message_id", record.get("id"))
    return value if isinstance(value, str | int) else None


def _chain_order(rows: list[tuple[int, Record]]) -> list[tuple[int, Record]]:
    """Order by the related_message chain when it is complete; keep file order otherwise."""
    ids = [_message_id(row[1]) for row in rows]
    if None in ids:
        return rows
    by_parent = {row[1].get("related_message"): row for row in rows}
    if len(by_parent) != len(rows) or None not in by_parent:
        return rows
    ordered, parent = [], None
    while parent in by_parent and len(ordered) < len(rows):
        row = by_parent[parent]
        ordered.append(row)
        parent = _message_id(row[1])
    return ordered if len(ordered) == len(rows) else rows


def group_sessions(rows: Iterable[tuple[int, Record]]) -> Iterator[tuple[int, Record]]:
    """(line, message record) pairs -> (first line, {"session_id", "rows": [...]}) per session."""
    sessions: dict[object, list[tuple[int, Record]]] = {}
    for line, record in rows:
        sessions.setdefault(record["session_id"], []).append((line, record))
    for session_id, members in sessions.items():
        members = _chain_order(members)
        yield members[0][0], {"session_id": session_id, "rows": members}


def session_to_chat(session: Record) -> Example:
    messages, lines = [], []
    for line, row in session["rows"]:
        messages.append({"role": ROLES[row["role"]], "content": row["content"]})
        lines.append(line)
    return Example(messages, ["$.content"] * len(messages), lines=lines)
