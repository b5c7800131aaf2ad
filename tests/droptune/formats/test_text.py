"""Text records: Guanaco dialogue text and plain completion text."""

from __future__ import annotations

import pytest

from droptune.formats import RecordProblem
from droptune.formats.text import guanaco_to_chat, is_guanaco, is_text, text_to_example


@pytest.mark.parametrize(
    ("record", "guanaco", "text"),
    [
        ({"text": "### Human: hi ### Assistant: yo"}, True, True),
        ({"text": "###Human:hi"}, True, True),
        ({"text": "plain"}, False, True),
        ({"text": "### Human: hi", "label": "x"}, False, False),
        ({"text": 3}, False, True),
        ({"label": "x"}, False, False),
    ],
)
def test_predicates(record: dict, guanaco: bool, text: bool) -> None:
    assert is_guanaco(record) is guanaco
    assert is_text(record) is text


def test_guanaco_turns_and_preamble() -> None:
    example = guanaco_to_chat(
        {
            "text": "A chat.\n### Human: Hi\n### Assistant: Hello!\n###Human:Bye ###  Assistant : Ciao"
        }
    )
    assert example.messages == [
        {"role": "system", "content": "A chat."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Ciao"},
    ]
    assert example.origins == ["$.text"] * 5


def test_guanaco_without_turns() -> None:
    with pytest.raises(RecordProblem) as caught:
        guanaco_to_chat({"text": "no markers"})
    assert (caught.value.code, caught.value.path) == ("format_mismatch", "$.text")


def test_plain_text() -> None:
    example = text_to_example({"text": "once upon a time"})
    assert example.messages is None
    assert example.to_record() == {"text": "once upon a time"}
    assert example.origins == ["$.text"]
