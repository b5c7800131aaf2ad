"""The dataset formats droptune reads, in detection order.

Each entry pairs a predicate over one record with a JSON Schema and a converter to the
canonical chat example. Order matters: the first format whose predicate matches a record
claims it (alpaca's instruction/output before the generic input/output pair, classification's
text+label before plain text).
"""

from __future__ import annotations

from droptune.formats import chat, export, gemini, pairs, sharegpt, text
from droptune.formats.base import Example, Format, Record, RecordProblem

FORMATS: tuple[Format, ...] = (
    Format(
        "gemini_contents",
        "Gemini tuning format (contents/parts)",
        "gemini_contents",
        gemini.is_gemini_contents,
        gemini.contents_to_chat,
        '{"systemInstruction": {...}, "contents": [{"role": "user", "parts": [{"text": "..."}]}, ...]}',
    ),
    Format(
        "gemini_messages",
        "Gemini 1.0 messages (user/model roles)",
        "gemini_messages",
        chat.is_gemini_messages,
        chat.gemini_messages_to_chat,
        '{"messages": [{"role": "user", "content": "..."}, {"role": "model", "content": "..."}]}',
    ),
    Format(
        "chat",
        "Chat messages (OpenAI style)",
        "chat",
        chat.is_chat,
        chat.chat_to_chat,
        '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}',
    ),
    Format(
        "sharegpt",
        "ShareGPT conversations (from/value)",
        "sharegpt",
        sharegpt.is_sharegpt,
        sharegpt.sharegpt_to_chat,
        '{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", "value": "..."}]}',
    ),
    Format(
        "conversation_export",
        "Conversation-message export (one message per record)",
        "conversation_export",
        export.is_conversation_export,
        export.session_to_chat,
        '{"session_id": "s1", "role": "user", "content": "...", "related_message": null}',
        groups_records=True,
    ),
    Format(
        "alpaca",
        "Alpaca (instruction/input/output)",
        "alpaca",
        pairs.is_alpaca,
        pairs.alpaca_to_chat,
        '{"instruction": "...", "input": "...", "output": "..."}',
    ),
    Format(
        "prompt_response",
        "Prompt/response pairs",
        "prompt_response",
        pairs.is_prompt_response,
        pairs.prompt_response_to_chat,
        '{"question": "...", "answer": "..."}  (or prompt/completion, input/output, textInput/output)',
    ),
    Format(
        "classification",
        "Classification (text + label)",
        "classification",
        pairs.is_classification,
        pairs.classification_to_chat,
        '{"text": "...", "label": "positive"}',
    ),
    Format(
        "guanaco",
        "Guanaco/OpenAssistant dialogue text",
        "text",
        text.is_guanaco,
        text.guanaco_to_chat,
        '{"text": "### Human: ... ### Assistant: ..."}',
    ),
    Format(
        "text",
        "Plain text (completion data)",
        "text",
        text.is_text,
        text.text_to_example,
        '{"text": "..."}',
        chat_only=False,
    ),
)

BY_NAME: dict[str, Format] = {f.name: f for f in FORMATS}


def is_preference(record: Record) -> bool:
    """DPO-style chosen/rejected pairs or KTO's boolean labels.

    >>> is_preference({"prompt": "p", "chosen": "a", "rejected": "b"})
    True
    >>> is_preference({"messages": [], "label": True})
    True
    """
    if "chosen" in record or "rejected" in record:
        return True
    return type(record.get("label")) is bool


def classify(record: object) -> str | None:
    """The name of the first format whose predicate matches `record`, "preference", or None."""
    if type(record) is not dict:
        return None
    if is_preference(record):
        return "preference"
    for fmt in FORMATS:
        if fmt.matches(record):
            return fmt.name
    return None


__all__ = ["BY_NAME", "FORMATS", "Example", "Format", "Record", "RecordProblem", "classify"]
