"""Text records: Guanaco/OpenAssistant dialogue text and plain completion text."""

from __future__ import annotations

import re

from droptune.formats.base import Example, Record, RecordProblem

_TURN = re.compile(r"###\s*(Human|Assistant)\s*:")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def is_guanaco(record: Record) -> bool:
    text = record.get("text")
    return "label" not in record and type(text) is str and _TURN.search(text) is not None


def guanaco_to_chat(record: Record) -> Example:
    """`### Human: ... ### Assistant: ...` -> alternating turns.

    >>> guanaco_to_chat({"text": "### Human: Hi ### Assistant: Hello"}).messages
    [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
    """
    pieces = _TURN.split(record["text"])
    if len(pieces) < 3:
        raise RecordProblem(
            "format_mismatch", "$.text", "no `### Human:` / `### Assistant:` turns in this text"
        )
    messages = []
    if pieces[0].strip():
        messages.append({"role": "system", "content": pieces[0].strip()})
    for speaker, content in zip(pieces[1::2], pieces[2::2], strict=True):
        messages.append({"role": _ROLES[speaker], "content": content.strip()})
    return Example(messages, ["$.text"] * len(messages))


def is_text(record: Record) -> bool:
    return "text" in record and "label" not in record


def text_to_example(record: Record) -> Example:
    return Example(text=record["text"], origins=["$.text"])
