"""What a dataset format is, and what converting a record produces.

A format is recognised by a small pure predicate over one record (`matches`), checked with its
JSON Schema, and converted to droptune's canonical chat example (`to_chat`). Converters may
assume the record passed the schema; problems a schema cannot express are raised as
`RecordProblem` (one per record) or found later by `droptune.checks`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]
Message = dict[str, Any]


class RecordProblem(Exception):
    """A record that passed its schema but still cannot be converted."""

    def __init__(self, code: str, path: str, message: str) -> None:
        super().__init__(message)
        self.code, self.path, self.message = code, path, message


@dataclass(slots=True)
class Example:
    """A canonical example.

    `messages` is OpenAI-style chat (system/user/assistant/tool); plain-text data sets `text`
    instead. `origins[i]` is the JSON path, in the source record, of message i's text, so
    problems found after conversion still point into the user's file.
    Formats that build one example from several records also set `lines[i]`.
    """

    messages: list[Message] | None = None
    origins: list[str] = field(default_factory=list)
    text: str | None = None
    tools: list[Any] | None = None
    label: str | None = None
    lines: list[int] | None = None  # per message, for formats that group several records
    unread: list[tuple[str, str]] | None = None  # (key, JSON path) in a message, not read

    def give_system(self, text: str) -> None:
        """Open the conversation with a system turn of `text` unless it has one; the turn
        comes from the run configuration, so its origin is the record as a whole."""
        if self.messages is None or (self.messages and self.messages[0]["role"] == "system"):
            return
        self.messages.insert(0, {"role": "system", "content": text})
        self.origins.insert(0, "$")
        if self.lines:
            self.lines.insert(0, self.lines[0])

    def to_record(self) -> Record:
        """The JSON object written to data/*.jsonl."""
        if self.text is not None:
            return {"text": self.text}
        record: Record = {"messages": self.messages}
        if self.tools:
            record["tools"] = self.tools
        if self.label is not None:
            record["label"] = self.label
        return record


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    schema: str  # file stem under formats/schemas/
    matches: Callable[[Record], bool]
    to_chat: Callable[[Record], Example]
    example: str  # one-line example record, for docs and messages
    chat_only: bool = True  # False for plain text (completion) data
    groups_records: bool = False  # True when several records form one example


def without_weights(messages: list[Message]) -> list[Message]:
    """The messages as a chat template or a model sees them: without droptune's per-turn
    `weight` (copied only when a message has one)."""
    if not any("weight" in m for m in messages):
        return messages
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def text_of(message: Message) -> str:
    """The text of a canonical message ("" when it only carries tool calls)."""
    content = message.get("content")
    return content if isinstance(content, str) else ""
