"""Turn order and text checks on converted examples, tool-calling exchanges included."""

from __future__ import annotations

import pytest

from droptune.checks import has_placeholder, turn_problems, uses_tools
from droptune.formats import Example

CALL = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]


def m(spec: str) -> dict:
    """'user', 'assistant', 'system', 'tool', 'call' (assistant with a tool call), '' = empty."""
    if spec == "call":
        return {"role": "assistant", "content": "", "tool_calls": CALL}
    role, _, text = spec.partition(":")
    return {"role": role, "content": text if _ else f"{role} text"}


def problems(*specs: str) -> list[tuple[str, int]]:
    example = Example([m(s) for s in specs], [f"$.messages[{i}]" for i in range(len(specs))])
    return [(code, i) for code, i, _ in turn_problems(example)]


@pytest.mark.parametrize(
    "specs",
    [
        ("user", "assistant"),
        ("system", "user", "assistant"),
        ("user", "assistant", "user", "assistant"),
        ("user", "call", "tool", "assistant"),
        ("user", "call", "tool", "tool", "assistant"),
        ("user", "call", "tool", "call", "tool", "assistant"),
        ("system", "user", "call", "tool", "assistant", "user", "assistant"),
    ],
)
def test_good_turn_orders(specs) -> None:
    assert problems(*specs) == []


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (("assistant",), [("first_turn_not_user", 0)]),
        (("system", "assistant", "user", "assistant"), [("first_turn_not_user", 1)]),
        (("user", "user", "assistant"), [("consecutive_turns", 1)]),
        (("user", "assistant", "assistant"), [("consecutive_turns", 2)]),
        (("user", "assistant", "user"), [("last_turn_not_assistant", 2)]),
        (("user",), [("last_turn_not_assistant", 0)]),
        (("system",), [("last_turn_not_assistant", 0)]),
        (("user", "system", "assistant"), [("system_not_first", 1)]),
        (("system", "system", "user", "assistant"), [("system_not_first", 1)]),
        (("user", "assistant:  ", "user", "assistant"), [("empty_text", 1)]),
        (("user:", "assistant"), [("empty_text", 0)]),
        # Tool results must answer an assistant tool call.
        (("tool", "user", "assistant"), [("consecutive_turns", 0)]),
        (("user", "assistant", "tool", "assistant"), [("consecutive_turns", 2)]),
        (("user", "tool", "assistant"), [("consecutive_turns", 1)]),
        (("user", "call", "tool"), [("last_turn_not_assistant", 2)]),
        (("user", "call", "assistant"), [("consecutive_turns", 2)]),
        (("user", "call"), []),
    ],
)
def test_turn_problems(specs, expected) -> None:
    assert problems(*specs) == expected


def test_several_problems_in_one_example() -> None:
    assert problems("assistant", "assistant", "user") == [
        ("first_turn_not_user", 0),
        ("consecutive_turns", 1),
        ("last_turn_not_assistant", 2),
    ]


def test_empty_tool_call_message_is_not_empty_text() -> None:
    assert problems("user", "call", "tool", "assistant") == []


def test_no_messages() -> None:
    assert [code for code, _, _ in turn_problems(Example([], []))] == ["last_turn_not_assistant"]


@pytest.mark.parametrize(
    ("texts", "index"),
    [
        (["Hi {{name}}", "x"], 0),
        (["Hi", "I am {{ bot.name }}"], 1),
        (["{{a}}", "{{b}}"], 0),
        (["Hi", "{{}}"], None),
        (["Hi", "{{ 1x }}"], None),
        (["Hi", "{name}"], None),
        (["Hi", "{{name"], None),
    ],
)
def test_has_placeholder(texts, index) -> None:
    messages = [{"role": "user", "content": t} for t in texts]
    assert has_placeholder(Example(messages, [])) == index


@pytest.mark.parametrize(
    ("example", "tools"),
    [
        (Example([m("user"), m("assistant")], []), False),
        (Example([m("user"), m("call"), m("tool"), m("assistant")], []), True),
        (Example([m("user"), m("tool")], []), True),
        (Example([m("user"), m("assistant")], [], tools=[{"name": "f"}]), True),
        (Example(text="plain"), False),
    ],
)
def test_uses_tools(example: Example, tools: bool) -> None:
    assert uses_tools(example) is tools
