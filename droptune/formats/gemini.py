"""The Gemini tuning format: `contents` with `parts`, and an optional `systemInstruction`.

Also the converter *to* this format, used to write `data/gemini/*.jsonl`.
"""

from __future__ import annotations

from droptune.formats.base import Example, Record

ROLES = {"user": "user", "model": "assistant"}


def is_gemini_contents(record: Record) -> bool:
    return "contents" in record


def _text_path(base: str, parts: list) -> str:
    return f"{base}.parts[0].text" if len(parts) == 1 else f"{base}.parts"


def contents_to_chat(record: Record) -> Example:
    messages, origins = [], []
    system = record.get("systemInstruction")
    if system:
        parts = system["parts"]
        messages.append({"role": "system", "content": "\n".join(p["text"] for p in parts)})
        origins.append(_text_path("$.systemInstruction", parts))
    for i, item in enumerate(record["contents"]):
        parts = item["parts"]
        messages.append({"role": ROLES[item["role"]], "content": "".join(p["text"] for p in parts)})
        origins.append(_text_path(f"$.contents[{i}]", parts))
    return Example(messages, origins)


def to_gemini(record: Record) -> Record:
    """A canonical chat record -> the Vertex AI Gemini tuning record.

    >>> to_gemini({"messages": [{"role": "system", "content": "Be brief."},
    ...     {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'systemInstruction': {'role': 'system', 'parts': [{'text': 'Be brief.'}]},
     'contents': [{'role': 'user', 'parts': [{'text': 'Hi'}]},
                  {'role': 'model', 'parts': [{'text': 'Hello'}]}]}
    """
    system = [m["content"] for m in record["messages"] if m["role"] == "system"]
    contents = [
        {"role": "user" if m["role"] == "user" else "model", "parts": [{"text": m["content"]}]}
        for m in record["messages"]
        if m["role"] != "system"
    ]
    out: Record = {}
    if system:
        out["systemInstruction"] = {"role": "system", "parts": [{"text": "\n\n".join(system)}]}
    out["contents"] = contents
    return out
