"""ShareGPT conversations (`from`/`value`), function calls and observations included."""

from __future__ import annotations

import pytest

from droptune.formats import RecordProblem
from droptune.formats.sharegpt import is_sharegpt, sharegpt_to_chat


def test_predicate() -> None:
    assert is_sharegpt({"conversations": []})
    assert not is_sharegpt({"messages": []})


def test_roles_map_onto_chat_roles() -> None:
    record = {
        "conversations": [
            {"from": "system", "value": "s"},
            {"from": "human", "value": "h"},
            {"from": "gpt", "value": "g"},
            {"from": "user", "value": "u"},
            {"from": "assistant", "value": "a"},
        ]
    }
    example = sharegpt_to_chat(record)
    assert [(m["role"], m["content"]) for m in example.messages] == [
        ("system", "s"),
        ("user", "h"),
        ("assistant", "g"),
        ("user", "u"),
        ("assistant", "a"),
    ]
    assert example.origins == [f"$.conversations[{i}].value" for i in range(5)]


def test_function_call_and_observation() -> None:
    record = {
        "system": "Use tools.",
        "conversations": [
            {"from": "human", "value": "17*3?"},
            {"from": "function_call", "value": '{"name": "mul", "arguments": {"a": 17, "b": 3}}'},
            {"from": "observation", "value": "51"},
            {"from": "gpt", "value": "51"},
        ],
        "tools": '[{"name": "mul"}]',
    }
    example = sharegpt_to_chat(record)
    assert example.messages == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "17*3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "mul", "arguments": {"a": 17, "b": 3}}}
            ],
        },
        {"role": "tool", "content": "51"},
        {"role": "assistant", "content": "51"},
    ]
    assert example.origins[0] == "$.system"
    assert example.tools == [{"name": "mul"}]


def test_bad_function_call_points_at_its_turn() -> None:
    record = {
        "conversations": [
            {"from": "human", "value": "x"},
            {"from": "function_call", "value": "nope"},
        ]
    }
    with pytest.raises(RecordProblem) as caught:
        sharegpt_to_chat(record)
    assert (caught.value.code, caught.value.path) == ("invalid_content", "$.conversations[1].value")
