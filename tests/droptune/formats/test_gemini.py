"""The Gemini tuning format (`contents`/`parts`): reading it, and writing canonical chat to it."""

from __future__ import annotations

import pytest

from droptune.formats.gemini import contents_to_chat, is_gemini_contents, to_gemini


def test_predicate() -> None:
    assert is_gemini_contents({"contents": []})
    assert is_gemini_contents({"contents": "anything", "messages": []})
    assert not is_gemini_contents({"messages": []})


def test_contents_to_chat_joins_parts_and_points_into_the_record() -> None:
    example = contents_to_chat(
        {
            "systemInstruction": {"parts": [{"text": "Be"}, {"text": "brief."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "Hi "}, {"text": "there"}]},
                {"role": "model", "parts": [{"text": "Hello"}]},
            ],
        }
    )
    assert example.messages == [
        {"role": "system", "content": "Be\nbrief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert example.origins == [
        "$.systemInstruction.parts",
        "$.contents[0].parts",
        "$.contents[1].parts[0].text",
    ]


def test_empty_system_instruction_is_dropped() -> None:
    record = {"systemInstruction": {}, "contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    assert [m["role"] for m in contents_to_chat(record).messages] == ["user"]


def test_to_gemini() -> None:
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
        ]
    }
    assert to_gemini(record) == {
        "systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
        ],
    }


def test_to_gemini_without_system_and_with_several() -> None:
    plain = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert "systemInstruction" not in to_gemini(plain)
    two = {
        "messages": [
            {"role": "system", "content": "one"},
            {"role": "system", "content": "two"},
            *plain["messages"],
        ]
    }
    assert to_gemini(two)["systemInstruction"]["parts"] == [{"text": "one\n\ntwo"}]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [
            {"role": "system", "content": "Answer in French.\nAlways."},
            {"role": "user", "content": "Good morning"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "  spaces kept  "},
            {"role": "assistant", "content": 'émoji 🙂 and "quotes"'},
        ],
    ],
)
def test_chat_to_gemini_and_back_gives_the_same_messages(messages: list) -> None:
    assert contents_to_chat(to_gemini({"messages": messages})).messages == messages
