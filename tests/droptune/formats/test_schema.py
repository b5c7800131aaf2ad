"""JSON Schemas per format, and how a failing keyword becomes a located droptune code."""

from __future__ import annotations

import pytest

from droptune.formats import FORMATS
from droptune.formats.schema import RecordSchema, json_path, load_schema
from droptune.issues import CATALOGUE

U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "hello"}
G = {"role": "user", "parts": [{"text": "hi"}]}
M = {"role": "model", "parts": [{"text": "hello"}]}


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        ([], "$"),
        (["messages", 2, "role"], "$.messages[2].role"),
        (["contents", 0, "parts", 1, "text"], "$.contents[0].parts[1].text"),
        (["a b"], "$['a b']"),
        (["1st"], "$['1st']"),
    ],
)
def test_json_path(parts: list, path: str) -> None:
    assert json_path(parts) == path


@pytest.mark.parametrize("name", sorted({f.schema for f in FORMATS}))
def test_every_format_schema_loads_and_names_real_codes(name: str) -> None:
    schema = load_schema(name)
    assert schema.title

    def codes(node):
        if isinstance(node, dict):
            code = node.get("x-code")
            if isinstance(code, str):
                yield code
            elif isinstance(code, dict):
                yield from code.values()
            for value in node.values():
                yield from codes(value)
        elif isinstance(node, list):
            for value in node:
                yield from codes(value)

    assert set(codes(schema.schema)) <= set(CATALOGUE)


@pytest.mark.parametrize(
    ("schema", "record", "code", "path"),
    [
        # Gemini contents: codes named after Google's own validator.
        (
            "gemini_contents",
            {"contents": [G, {"role": "bot", "parts": [{"text": "x"}]}]},
            "unrecognized_role",
            "$.contents[1].role",
        ),
        (
            "gemini_contents",
            {"contents": [{"role": "user"}, M]},
            "content_item_missing_key",
            "$.contents[0].parts",
        ),
        (
            "gemini_contents",
            {"contents": [G, {"role": "model", "parts": [{}]}]},
            "missing_text",
            "$.contents[1].parts[0].text",
        ),
        (
            "gemini_contents",
            {"contents": [G, {"role": "model", "parts": []}]},
            "missing_or_invalid_parts",
            "$.contents[1].parts",
        ),
        (
            "gemini_contents",
            {"contents": [G, {"role": "model", "parts": "x"}]},
            "missing_or_invalid_parts",
            "$.contents[1].parts",
        ),
        (
            "gemini_contents",
            {"contents": [G, {"role": "model", "parts": [7]}]},
            "invalid_part",
            "$.contents[1].parts[0]",
        ),
        (
            "gemini_contents",
            {"contents": [G, {"role": "model", "parts": [{"text": None}]}]},
            "invalid_part",
            "$.contents[1].parts[0].text",
        ),
        ("gemini_contents", {"contents": [[], M]}, "invalid_content_item", "$.contents[0]"),
        ("gemini_contents", {"contents": {}}, "missing_contents_list", "$.contents"),
        ("gemini_contents", {"contents": []}, "missing_contents_list", "$.contents"),
        (
            "gemini_contents",
            {"systemInstruction": {"parts": [{}]}, "contents": [G, M]},
            "missing_text",
            "$.systemInstruction.parts[0].text",
        ),
        (
            "gemini_contents",
            {"systemInstruction": "Be brief.", "contents": [G, M]},
            "invalid_type",
            "$.systemInstruction",
        ),
        ("gemini_contents", {}, "missing_contents_list", "$.contents"),
        ("gemini_contents", [], "not_an_object", "$"),
        # Chat.
        (
            "chat",
            {"messages": [{"role": "bot", "content": "x"}, A]},
            "unrecognized_role",
            "$.messages[0].role",
        ),
        ("chat", {"messages": [{"content": "x"}, A]}, "message_missing_key", "$.messages[0].role"),
        ("chat", {"messages": [U, 3]}, "invalid_message", "$.messages[1]"),
        (
            "chat",
            {"messages": [U, {"role": "assistant", "content": 3}]},
            "invalid_content",
            "$.messages[1].content",
        ),
        (
            "chat",
            {"messages": [U, {"role": "assistant", "content": [{"text": "x"}]}]},
            "invalid_content",
            "$.messages[1].content",
        ),
        ("chat", {"messages": []}, "missing_messages", "$.messages"),
        ("chat", {"messages": None}, "missing_messages", "$.messages"),
        ("chat", {"messages": [U, A], "tools": 3}, "invalid_type", "$.tools"),
        (
            "chat",
            {"messages": [U, {"role": "assistant", "tool_calls": [{"function": {}}]}]},
            "invalid_type",
            "$.messages[1].tool_calls[0].function.name",
        ),
        (
            "chat",
            {"messages": [U, {"role": "assistant", "content": "x", "weight": 0.5}]},
            "invalid_type",
            "$.messages[1].weight",
        ),
        # Gemini messages.
        (
            "gemini_messages",
            {"messages": [U, {"role": "model"}]},
            "message_missing_key",
            "$.messages[1].content",
        ),
        (
            "gemini_messages",
            {"messages": [U, {"role": "assistant", "content": "x"}]},
            "unrecognized_role",
            "$.messages[1].role",
        ),
        # ShareGPT.
        (
            "sharegpt",
            {"conversations": [{"from": "human"}]},
            "message_missing_key",
            "$.conversations[0].value",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "bot", "value": "x"}]},
            "unrecognized_role",
            "$.conversations[0].from",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "gpt", "value": 1}]},
            "invalid_content",
            "$.conversations[0].value",
        ),
        ("sharegpt", {"conversations": []}, "missing_messages", "$.conversations"),
        (
            "sharegpt",
            {"conversations": [{"from": "gpt", "value": "x"}], "tools": 3},
            "invalid_type",
            "$.tools",
        ),
        # Single-turn formats.
        ("alpaca", {"instruction": "x"}, "missing_field", "$.output"),
        (
            "alpaca",
            {"instruction": "x", "output": "y", "history": [["only one"]]},
            "invalid_type",
            "$.history[0]",
        ),
        ("prompt_response", {"question": "x", "answer": ["y"]}, "invalid_type", "$.answer"),
        ("classification", {"text": "x", "label": 1.5}, "invalid_type", "$.label"),
        ("classification", {"text": None, "label": "a"}, "invalid_type", "$.text"),
        ("text", {"text": 3}, "invalid_type", "$.text"),
        ("text", {}, "missing_field", "$.text"),
        # Conversation exports.
        ("conversation_export", {"session_id": "s", "role": "user"}, "missing_field", "$.content"),
        (
            "conversation_export",
            {"session_id": "s", "role": "robot", "content": "x"},
            "unrecognized_role",
            "$.role",
        ),
        (
            "conversation_export",
            {"session_id": 1.5, "role": "user", "content": "x"},
            "invalid_type",
            "$.session_id",
        ),
    ],
)
def test_schema_problem_codes_and_paths(schema: str, record, code: str, path: str) -> None:
    compiled = load_schema(schema)
    assert not compiled.is_valid(record)
    problems = [(p.code, p.path) for p in compiled.problems(record)]
    assert (code, path) in problems


@pytest.mark.parametrize(
    ("schema", "record"),
    [
        ("gemini_contents", {"systemInstruction": {"parts": [{"text": "s"}]}, "contents": [G, M]}),
        (
            "chat",
            {
                "messages": [
                    U,
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
                    },
                ]
            },
        ),
        (
            "chat",
            {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}, A],
                "tools": "[]",
            },
        ),
        ("alpaca", {"instruction": "i", "input": None, "output": "o", "history": [["a", "b"]]}),
        ("classification", {"text": "x", "label": 3}),
        (
            "conversation_export",
            {"session_id": 1, "role": "bot", "content": "x", "related_message": None},
        ),
    ],
)
def test_valid_records_have_no_problems(schema: str, record) -> None:
    compiled = load_schema(schema)
    assert compiled.is_valid(record)
    assert compiled.problems(record) == []


def test_code_falls_back_to_keyword_when_schema_names_none() -> None:
    schema = RecordSchema(
        {
            "type": "object",
            "required": ["a"],
            "properties": {"a": {"type": "string"}, "b": {"enum": [1]}},
        }
    )
    assert [(p.code, p.path) for p in schema.problems({})] == [("missing_field", "$.a")]
    assert [(p.code, p.path) for p in schema.problems({"a": 1})] == [("invalid_type", "$.a")]
    assert [p.code for p in schema.problems({"a": "x", "b": 2})] == ["invalid_type"]


def test_nearest_x_code_wins() -> None:
    schema = RecordSchema(
        {
            "type": "object",
            "x-code": "not_an_object",
            "properties": {
                "outer": {
                    "type": "object",
                    "x-code": {"required": "missing_field"},
                    "required": ["inner"],
                    "properties": {"inner": {"type": "string", "x-code": "empty_text"}},
                }
            },
        }
    )
    assert [p.code for p in schema.problems([])] == ["not_an_object"]
    assert [(p.code, p.path) for p in schema.problems({"outer": {}})] == [
        ("missing_field", "$.outer.inner")
    ]
    assert [p.code for p in schema.problems({"outer": {"inner": 1}})] == ["empty_text"]
    # `outer`'s x-code names only `required`; its `type` keyword falls back to the root's code.
    assert [p.code for p in schema.problems({"outer": 1})] == ["not_an_object"]
