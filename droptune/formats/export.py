"""Conversation-message exports: one message per record, grouped into conversations.

Records carry `session_id`, `role`, `content` and optionally `message_id` and
`related_message`, in one of two shapes:
- an id: the message this one answers. A session's messages follow the `related_message`
  chain when every message has both ids, file order otherwise;
- the reply itself, `{"content", "role"}`: the record is a user turn followed by its reply,
  and a session is its records' exchanges in file order. Without `session_id`, each such
  record is one exchange.
Sessions are collected in memory until the end of the file, since exports often interleave
sessions.

>>> rows = [(1, {"session_id": "s", "role": "user", "content": "Hi",
...              "related_message": {"role": "assistant", "content": "Hello"}})]
>>> [m["content"] for m in session_to_chat(next(group_sessions(rows))[1]).messages]
['Hi', 'Hello']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from droptune.formats.base import Example, Record

_EXCHANGE = object()  # the session key of a record without session_id: (this, its line)
ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "bot": "assistant",
}


def is_conversation_export(record: Record) -> bool:
    return "role" in record and (
        "session_id" in record or type(record.get("related_message")) is dict
    )


def _reply(record: Record) -> Record | None:
    """The reply a record holds (`related_message` as an object), else None."""
    reply = record.get("related_message")
    return reply if type(reply) is dict else None


def _message_id(record: Record) -> object:
    """The message's id when it is a usable key (string or integer), else None."""
    value = record.get("message_id", record.get("id"))
    return value if isinstance(value, str | int) else None


def _chain_order(rows: list[tuple[int, Record]]) -> list[tuple[int, Record]]:
    """Order by the related_message chain when it is complete; keep file order otherwise."""
    ids = [_message_id(row[1]) for row in rows]
    if None in ids or any(_reply(row[1]) is not None for row in rows):
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
        # Without a session id, a record holding its reply is an exchange of its own.
        key = record.get("session_id", (_EXCHANGE, line))
        sessions.setdefault(key, []).append((line, record))
    for key, members in sessions.items():
        members = _chain_order(members)
        session_id = None if isinstance(key, tuple) and key[0] is _EXCHANGE else key
        yield members[0][0], {"session_id": session_id, "rows": members}


def session_to_chat(session: Record) -> Example:
    messages, origins, lines = [], [], []
    for line, row in session["rows"]:
        messages.append({"role": ROLES[row["role"]], "content": row["content"]})
        origins.append("$.content")
        lines.append(line)
        if (reply := _reply(row)) is not None:
            messages.append({"role": ROLES[reply["role"]], "content": reply["content"]})
            origins.append("$.related_message.content")
            lines.append(line)
    return Example(messages, origins, lines=lines)
