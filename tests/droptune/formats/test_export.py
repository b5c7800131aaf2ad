"""Conversation-message exports: one message per record, grouped into sessions."""

from __future__ import annotations

import pytest

from droptune.formats.export import group_sessions, is_conversation_export, session_to_chat


def msg(session, role, content, mid=None, parent=None, key="message_id") -> dict:
    record = {"session_id": session, "role": role, "content": content}
    if mid is not None:
        record[key] = mid
        record["related_message"] = parent
    return record


def sessions(rows: list[dict]) -> list[tuple[int, list[str]]]:
    grouped = group_sessions(enumerate(rows, start=1))
    return [(line, [r["content"] for _, r in s["rows"]]) for line, s in grouped]


def test_predicate() -> None:
    assert is_conversation_export({"session_id": "s", "role": "user"})
    assert not is_conversation_export({"session_id": "s", "content": "x"})


def test_interleaved_sessions_are_grouped_in_order_of_first_appearance() -> None:
    rows = [
        msg("a", "user", "a1"),
        msg("b", "user", "b1"),
        msg("a", "bot", "a2"),
        msg("b", "model", "b2"),
    ]
    assert sessions(rows) == [(1, ["a1", "a2"]), (2, ["b1", "b2"])]


def test_complete_related_message_chain_orders_the_session() -> None:
    rows = [
        msg("s", "assistant", "third", 3, 2),
        msg("s", "user", "first", 1, None),
        msg("s", "user", "second?", 2, 1),
    ]
    assert sessions(rows) == [(2, ["first", "second?", "third"])]


def test_id_is_an_alias_of_message_id() -> None:
    rows = [
        msg("s", "assistant", "answer", "m2", "m1", key="id"),
        msg("s", "user", "question", "m1", None, key="id"),
    ]
    assert sessions(rows) == [(2, ["question", "answer"])]


@pytest.mark.parametrize(
    "rows",
    [
        # One message without ids.
        [msg("s", "assistant", "x", 2, 1), msg("s", "user", "y")],
        # Two roots.
        [msg("s", "user", "x", 1, None), msg("s", "user", "y", 2, None)],
        # No root.
        [msg("s", "user", "x", 1, 2), msg("s", "assistant", "y", 2, 1)],
        # A chain that stops early.
        [msg("s", "user", "x", 1, None), msg("s", "assistant", "y", 2, 99)],
    ],
)
def test_incomplete_chains_keep_file_order(rows: list[dict]) -> None:
    assert sessions(rows) == [(1, ["x", "y"])]


def test_session_to_chat_keeps_each_messages_line() -> None:
    rows = [(3, msg("s", "human", "hi")), (7, msg("s", "bot", "yo"))]
    example = session_to_chat({"session_id": "s", "rows": rows})
    assert example.messages == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    assert example.lines == [3, 7]
    assert example.origins == ["$.content", "$.content"]


def test_unhashable_id_keeps_file_order() -> None:
    rows = [
        msg("s", "user", "x", [1], None, key="id"),
        msg("s", "assistant", "y", [2], "z", key="id"),
    ]
    assert sessions(rows) == [(1, ["x", "y"])]
