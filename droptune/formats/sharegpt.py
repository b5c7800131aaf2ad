"""ShareGPT `conversations` with `from`/`value` turns, function calls included."""

from __future__ import annotations

from droptune.formats.base import Example, Record
from droptune.formats.chat import parse_tool_call, parse_tools

ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}


def is_sharegpt(record: Record) -> bool:
    return "conversations" in record


def sharegpt_to_chat(record: Record) -> Example:
    messages, origins = [], []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
        origins.append("$.system")
    for i, turn in enumerate(record["conversations"]):
        path = f"$.conversations[{i}].value"
        if turn["from"] == "function_call":
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [parse_tool_call(turn["value"], path)],
                }
            )
        else:
            messages.append({"role": ROLES[turn["from"]], "content": turn["value"]})
        origins.append(path)
    return Example(messages, origins, tools=parse_tools(record.get("tools")))
