"""`droptune.formats.classify`: which format claims a record (detection order matters)."""

from __future__ import annotations

import pytest

from droptune.formats import BY_NAME, FORMATS, classify, is_preference

U = {"role": "user", "content": "q"}


@pytest.mark.parametrize(
    ("record", "name"),
    [
        ({"contents": [], "messages": []}, "gemini_contents"),
        ({"messages": [U, {"role": "model", "content": "a"}]}, "gemini_messages"),
        ({"messages": [U, {"role": "assistant", "content": "a"}]}, "chat"),
        ({"messages": []}, "chat"),
        ({"conversations": []}, "sharegpt"),
        ({"session_id": 1, "role": "user", "content": "x"}, "conversation_export"),
        ({"instruction": "i", "input": "x", "output": "o"}, "alpaca"),
        ({"input": "x", "output": "o"}, "prompt_response"),
        ({"question": "q", "answer": "a"}, "prompt_response"),
        ({"text": "t", "label": "l"}, "classification"),
        ({"text": "t", "label": 0}, "classification"),
        ({"text": "### Human: a ### Assistant: b"}, "guanaco"),
        ({"text": "t"}, "text"),
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "preference"),
        ({"messages": [U], "label": False}, "preference"),
        ({"rejected": "b"}, "preference"),
        ({"foo": 1}, None),
        ({}, None),
        ([{"text": "t"}], None),
        ("text", None),
        (None, None),
        (3, None),
    ],
)
def test_classify(record, name) -> None:
    assert classify(record) == name


def test_is_preference_needs_a_boolean_label() -> None:
    assert is_preference({"label": True})
    assert not is_preference({"label": 1})
    assert not is_preference({"label": "true"})


def test_format_table() -> None:
    assert list(BY_NAME) == [f.name for f in FORMATS]
    for fmt in FORMATS:
        assert fmt.title and fmt.example
    assert [f.name for f in FORMATS if not f.chat_only] == ["text"]
    assert [f.name for f in FORMATS if f.groups_records] == ["conversation_export"]
