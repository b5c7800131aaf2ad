"""Chat `messages` (OpenAI style) and Gemini 1.0 `messages`: predicates and converters."""

from __future__ import annotations

import orjson
import pytest

from droptune.formats import RecordProblem
from droptune.formats.chat import (
    chat_to_chat,
    gemini_messages_to_chat,
    is_chat,
    is_gemini_messages,
    parse_tool_call,
    parse_tools,
    split_parts,
)

CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}


@pytest.mark.parametrize(
    ("record", "chat", "gemini"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, True, False),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "model", "content": "yo"}]},
            False,
            True,
        ),
        ({"messages": "not a list"}, True, False),
        ({"messages": ["x", {"role": "model"}]}, False, True),
        ({"contents": []}, False, False),
    ],
)
def test_predicates(record: dict, chat: bool, gemini: bool) -> None:
    assert is_chat(record) is chat
    assert is_gemini_messages(record) is gemini


def test_plain_messages_keep_their_origins() -> None:
    example = chat_to_chat(
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        }
    )
    assert example.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert example.origins == [f"$.messages[{i}].content" for i in range(3)]
    assert example.tools is None


def test_tool_calls_and_results() -> None:
    example = chat_to_chat(
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {
                    "role": "function",
                    "content": "3",
                    "name": "get_weather",
                    "tool_call_id": "c1",
                    "x": 1,
                },
                {"role": "assistant", "content": "3 °C"},
            ],
            "tools": '[{"type": "function", "function": {"name": "get_weather"}}]',
        }
    )
    assert example.messages[1] == {"role": "assistant", "content": "", "tool_calls": [CALL]}
    assert example.messages[2] == {
        "role": "tool",
        "content": "3",
        "tool_call_id": "c1",
        "name": "get_weather",
    }
    assert example.tools == [{"type": "function", "function": {"name": "get_weather"}}]


def test_weights_and_reasoning() -> None:
    example = chat_to_chat(
        {
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": "a",
                    "loss_weight": 0.0,
                    "reasoning_content": "why",
                },
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "b", "weight": 1},
            ]
        }
    )
    assert example.messages[1] == {
        "role": "assistant",
        "content": "a",
        "reasoning_content": "why",
        "weight": 0,
    }
    assert example.messages[3] == {"role": "assistant", "content": "b", "weight": 1}


def test_content_parts_become_text_reasoning_and_calls() -> None:
    example = chat_to_chat(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "value": "b"}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "text": "hmm"},
                        {"type": "text", "text": "answer"},
                        {"type": "tool_call", "text": '{"name": "f", "arguments": {"x": 1}}'},
                    ],
                },
            ]
        }
    )
    assert example.messages[0] == {"role": "user", "content": "ab"}
    assert example.messages[1] == {
        "role": "assistant",
        "content": "answer",
        "reasoning_content": "hmm",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}],
    }


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([{"type": "text", "text": "a"}, {"type": "text", "value": "b"}], ("ab", "", [])),
        ([{"type": "reasoning", "text": "r"}, {"type": "text", "text": "t"}], ("t", "r", [])),
        (
            [{"type": "tool_call", "value": {"name": "f"}}],
            ("", "", [{"type": "function", "function": {"name": "f", "arguments": {}}}]),
        ),
        ([], ("", "", [])),
    ],
)
def test_split_parts(parts: list, expected: tuple) -> None:
    assert split_parts(parts, "$.messages[0].content") == expected


@pytest.mark.parametrize(
    ("parts", "code", "path"),
    [
        (
            [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}],
            "multimodal_unsupported",
            "$.c[1]",
        ),
        ([{"type": "input_audio"}], "multimodal_unsupported", "$.c[0]"),
        ([{"type": "refusal", "refusal": "no"}], "non_text_content", "$.c[0]"),
        ([{"type": "text", "text": 3}], "invalid_content", "$.c[0]"),
        ([{"type": "text"}], "invalid_content", "$.c[0]"),
        ([{"type": "tool_call", "text": "{oops"}], "invalid_content", "$.c[0]"),
    ],
)
def test_split_parts_problems(parts: list, code: str, path: str) -> None:
    with pytest.raises(RecordProblem) as caught:
        split_parts(parts, "$.c")
    assert (caught.value.code, caught.value.path) == (code, path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            {"name": "f", "arguments": {"a": 1}},
            {"type": "function", "function": {"name": "f", "arguments": {"a": 1}}},
        ),
        (
            '{"name": "f", "arguments": "{}"}',
            {"type": "function", "function": {"name": "f", "arguments": "{}"}},
        ),
        ({"name": "f"}, {"type": "function", "function": {"name": "f", "arguments": {}}}),
    ],
)
def test_parse_tool_call(value, expected: dict) -> None:
    assert parse_tool_call(value, "$") == expected


@pytest.mark.parametrize("value", ["not json", "[1]", {"arguments": {}}, {"name": 3}, 7])
def test_parse_tool_call_problems(value) -> None:
    with pytest.raises(RecordProblem) as caught:
        parse_tool_call(value, "$.x")
    assert (caught.value.code, caught.value.path) == ("invalid_content", "$.x")


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (None, None),
        ("", None),
        ([], None),
        ("[]", None),
        ('[{"name": "f"}]', [{"name": "f"}]),
        ([{"name": "f"}], [{"name": "f"}]),
    ],
)
def test_parse_tools(tools, expected) -> None:
    assert parse_tools(tools) == expected


@pytest.mark.parametrize("tools", ["{oops", '{"name": "f"}', {"name": "f"}])
def test_parse_tools_problems(tools) -> None:
    with pytest.raises(RecordProblem) as caught:
        parse_tools(tools)
    assert (caught.value.code, caught.value.path) == ("invalid_type", "$.tools")


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user"},
        {"role": "user", "content": None},
        {"role": "tool", "content": None},
        {"role": "assistant", "content": None, "tool_calls": []},
    ],
)
def test_messages_without_content(message: dict) -> None:
    with pytest.raises(RecordProblem) as caught:
        chat_to_chat({"messages": [message]})
    assert (caught.value.code, caught.value.path) == (
        "message_missing_key",
        "$.messages[0].content",
    )


def test_gemini_messages_to_chat() -> None:
    example = gemini_messages_to_chat(
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "model", "content": "m"},
            ]
        }
    )
    assert [(m["role"], m["content"]) for m in example.messages] == [
        ("system", "s"),
        ("user", "u"),
        ("assistant", "m"),
    ]
    assert example.origins == [
        "$.messages[0].content",
        "$.messages[1].content",
        "$.messages[2].content",
    ]


def test_openais_legacy_function_calling_is_read_as_tools_and_tool_calls() -> None:
    record = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"role": "function", "name": "get_weather", "content": "18C"},
            {"role": "assistant", "content": "18C."},
        ],
        "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
    }
    example = chat_to_chat(record)
    call = example.messages[1]["tool_calls"][0]["function"]
    assert call == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert example.messages[2] == {"role": "tool", "content": "18C", "name": "get_weather"}
    assert example.tools == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert example.unread is None


def test_documented_fields_are_said_to_be_ignored_not_unknown(validate_data) -> None:
    chat = {
        "messages": [
            {"role": "user", "content": "hi", "name": "ana"},
            {"role": "assistant", "content": "hello"},
        ],
        "parallel_tool_calls": False,
    }
    report = validate_data(orjson.dumps(chat) + b"\n")
    said = {i.path: i.message for i in report.issues if i.code == "unknown_field"}
    assert said["$.parallel_tool_calls"].startswith("OpenAI's 'parallel_tool_calls' is ignored: ")
    assert said["$.messages[0].name"].startswith("a message's 'name' is ignored: ")
    assert not any("not a field" in m for m in said.values())
