"""Conversation-message exports: one message per record, grouped into sessions."""

from __future__ import annotations

import json

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


def exchange(content: str, reply: str, session: str | None = None) -> dict:
    record = {"content": content, "role": "user"}
    if session is not None:
        record["session_id"] = session
    return record | {"related_message": {"content": reply, "role": "assistant"}}


def test_a_reply_object_is_the_turn_after_its_record_grouped_by_session_in_file_order() -> None:
    rows = [exchange("q1", "a1", "s1"), exchange("x", "y", "s2"), exchange("q2", "a2", "s1")]
    grouped = list(group_sessions(enumerate(rows, start=1)))
    assert [line for line, _ in grouped] == [1, 2]
    chat = session_to_chat(grouped[0][1])
    assert [(m["role"], m["content"]) for m in chat.messages] == [
        ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"),
    ]  # fmt: skip
    assert chat.lines == [1, 1, 3, 3]
    assert chat.origins == ["$.content", "$.related_message.content"] * 2


def test_without_session_id_each_record_holding_its_reply_is_one_exchange() -> None:
    assert is_conversation_export(exchange("q", "a"))
    assert not is_conversation_export({"role": "user", "content": "q", "related_message": 3})
    grouped = list(group_sessions(enumerate([exchange("q1", "a1"), exchange("q2", "a2")], 1)))
    assert [s["session_id"] for _, s in grouped] == [None, None]
    assert [len(session_to_chat(s).messages) for _, s in grouped] == [2, 2]


def test_an_invalid_reply_is_reported_with_its_path(tmp_path) -> None:
    from droptune import pipeline
    from droptune.config import RunConfig
    from droptune.tokens import EstimateCounter

    rows = [exchange(f"q{i}", f"a{i}", "s") for i in range(3)]
    rows[1]["related_message"] = {"role": "user"}
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = pipeline.validate(str(path), RunConfig(min_examples=1), counter=EstimateCounter())
    found = {(i.code, i.line, i.path) for i in report.issues}
    assert ("missing_field", 2, "$.related_message.content") in found or (
        "missing_field",
        2,
        "$.related_message",
    ) in found
    assert any(i.code == "unrecognized_role" and i.line == 2 for i in report.issues)
