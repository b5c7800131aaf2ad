"""Single-turn formats: alpaca, prompt/response pairs, classification."""

from __future__ import annotations

import pytest

from droptune.formats.pairs import (
    alpaca_to_chat,
    classification_to_chat,
    is_alpaca,
    is_classification,
    is_prompt_response,
    pair_keys,
    prompt_response_to_chat,
)


@pytest.mark.parametrize(
    ("record", "user"),
    [
        ({"instruction": "Add", "input": "1+1", "output": "2"}, "Add\n\n1+1"),
        ({"instruction": "Add", "input": "", "output": "2"}, "Add"),
        ({"instruction": "Add", "input": "  \n", "output": "2"}, "Add"),
        ({"instruction": "Add", "input": None, "output": "2"}, "Add"),
        ({"instruction": "Add", "output": "2"}, "Add"),
        ({"instruction": " ", "input": "1+1", "output": "2"}, "1+1"),
    ],
)
def test_alpaca_user_turn(record: dict, user: str) -> None:
    example = alpaca_to_chat(record)
    assert example.messages == [
        {"role": "user", "content": user},
        {"role": "assistant", "content": "2"},
    ]
    assert example.origins == ["$.instruction", "$.output"]


def test_alpaca_history_and_system_come_first() -> None:
    example = alpaca_to_chat(
        {
            "instruction": "3?",
            "output": "4",
            "system": "Count.",
            "history": [["1?", "2"], ["2?", "3"]],
        }
    )
    assert [(m["role"], m["content"]) for m in example.messages] == [
        ("system", "Count."),
        ("user", "1?"),
        ("assistant", "2"),
        ("user", "2?"),
        ("assistant", "3"),
        ("user", "3?"),
        ("assistant", "4"),
    ]
    assert example.origins == [
        "$.system",
        "$.history[0][0]",
        "$.history[0][1]",
        "$.history[1][0]",
        "$.history[1][1]",
        "$.instruction",
        "$.output",
    ]


@pytest.mark.parametrize(
    ("record", "keys"),
    [
        ({"question": "q", "answer": "a"}, ("question", "answer")),
        ({"prompt": "p", "completion": "c"}, ("prompt", "completion")),
        ({"prompt": "p", "response": "r"}, ("prompt", "response")),
        ({"query": "q", "response": "r"}, ("query", "response")),
        ({"textInput": "t", "output": "o"}, ("textInput", "output")),
        ({"input": "i", "output": "o"}, ("input", "output")),
        # Priority when several pairs are present.
        (
            {"question": "q", "answer": "a", "prompt": "p", "completion": "c"},
            ("question", "answer"),
        ),
        ({"prompt": "p", "completion": "c", "response": "r"}, ("prompt", "completion")),
        ({"question": "q"}, None),
        ({"prompt": "p", "output": "o"}, None),
    ],
)
def test_pair_keys(record: dict, keys) -> None:
    assert pair_keys(record) == keys
    assert is_prompt_response(record) is (keys is not None)


def test_prompt_response_to_chat() -> None:
    example = prompt_response_to_chat({"query": "2*3", "response": "6", "system": "Maths."})
    assert example.messages == [
        {"role": "system", "content": "Maths."},
        {"role": "user", "content": "2*3"},
        {"role": "assistant", "content": "6"},
    ]
    assert example.origins == ["$.system", "$.query", "$.response"]


def test_empty_system_is_dropped() -> None:
    for system in ("", None):
        messages = prompt_response_to_chat(
            {"prompt": "p", "completion": "c", "system": system}
        ).messages
        assert [m["role"] for m in messages] == ["user", "assistant"]


def test_alpaca_wins_over_input_output() -> None:
    record = {"instruction": "i", "input": "x", "output": "o"}
    assert is_alpaca(record)
    assert not is_alpaca({"input": "x", "output": "o"})


@pytest.mark.parametrize(
    ("record", "user", "label"),
    [
        ({"text": "great", "label": "pos"}, "great", "pos"),
        ({"text": "great", "label": 1}, "great", "1"),
        (
            {"text": "great", "label": "pos", "instruction": "Sentiment?"},
            "Sentiment?\n\ngreat",
            "pos",
        ),
    ],
)
def test_classification_to_chat(record: dict, user: str, label: str) -> None:
    assert is_classification(record)
    example = classification_to_chat(record)
    assert example.messages == [
        {"role": "user", "content": user},
        {"role": "assistant", "content": label},
    ]
    assert example.label == label
    assert example.origins == ["$.text", "$.label"]
    assert example.to_record() == {"messages": example.messages, "label": label}


def test_classification_needs_both_fields() -> None:
    assert not is_classification({"text": "x"})
    assert not is_classification({"label": "x"})
