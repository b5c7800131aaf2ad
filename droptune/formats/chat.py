"""Chat `messages` (OpenAI style, tool calls included) and the older Gemini `messages` format.

OpenAI's documented optional fields each have a stated fate, never "not a field":
- kept: `tools`/`tool_calls`, `weight`, and the legacy `functions`/`function_call` (read as
  `tools`/`tool_calls`; a `function` message is a tool result);
- ignored, with a warning that says why: `parallel_tool_calls` (training learns the calls as
  written) and `name` on a user, assistant or system message (chat templates do not render
  it; a tool message's `name` is kept);
- refused: images, audio, video and files (`image_url`, `input_audio`, ... parts, or
  LLaMA-Factory's `images`/`videos`/`audios` lists): droptune's backends tune on text.
"""

from __future__ import annotations

from typing import Any

import orjson

from droptune.formats.base import Example, Message, Record, RecordProblem
from droptune.formats.schema import json_path

ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
GEMINI_ROLES = {"system": "system", "user": "user", "model": "assistant"}


def is_chat(record: Record) -> bool:
    """Chat data: a `messages` list whose roles are not Gemini's `model`.

    >>> is_chat({"messages": [{"role": "user", "content": "hi"}]})
    True
    >>> is_chat({"messages": [{"role": "model", "content": "hi"}]})
    False
    """
    return "messages" in record and not is_gemini_messages(record)


def is_gemini_messages(record: Record) -> bool:
    messages = record.get("messages")
    if type(messages) is not list:
        return False
    for m in messages:  # noqa: SIM110 -- a loop, not any(genexpr): 40% faster, on every record
        if type(m) is dict and m.get("role") == "model":
            return True
    return False


REASONING_PARTS = frozenset({"reasoning", "thinking"})
# Content parts and record keys that carry images, audio, video or files.
MEDIA_PARTS = frozenset(
    {"image_url", "image", "input_image", "input_audio", "audio", "video", "file", "input_file"}
)
MEDIA_KEYS = ("images", "videos", "audios")
MULTIMODAL = "multimodal data is not supported by droptune's backends, which tune on text"
# Documented OpenAI fields that are read but not used, and why (unread.py says it).
IGNORED_FIELDS = {
    "parallel_tool_calls": "training learns the tool calls as the examples make them",
}
IGNORED_MESSAGE_FIELDS = {
    "name": "chat templates do not render a participant's name (a tool message's is kept)",
}
# What a message's keys mean to the conversion; anything else in a message is dropped.
MESSAGE_FIELDS = frozenset(
    {"role", "content", "reasoning_content", "tool_calls", "function_call", "weight", "loss_weight"}
)
TOOL_MESSAGE_FIELDS = MESSAGE_FIELDS | {"tool_call_id", "name"}


def parse_tool_call(value: Any, path: str) -> dict[str, Any]:
    """A tool call given as {"name", "arguments"} (or its JSON string) -> OpenAI's shape."""
    call = value
    if isinstance(value, str):
        try:
            call = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordProblem(
                "invalid_content", path, f"a tool call must be JSON: {exc}"
            ) from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise RecordProblem(
            "invalid_content", path, 'a tool call must be {"name": ..., "arguments": ...}'
        )
    return {
        "type": "function",
        "function": {"name": call["name"], "arguments": call.get("arguments", {})},
    }


def split_parts(parts: list[Any], path: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Content given as a list of parts -> (text, reasoning, tool calls).

    Text parts use `text` (OpenAI) or `value` (LLaMA-Factory); `reasoning`/`thinking` parts
    become the message's reasoning; `tool_call` parts become tool calls; anything else
    (images, audio, files) is a problem for text tuning.

    >>> split_parts([{"type": "text", "text": "a"}, {"type": "text", "value": "b"}], "$")
    ('ab', '', [])
    """
    texts, reasoning, calls = [], [], []
    for j, part in enumerate(parts):
        kind, where = part.get("type"), f"{path}[{j}]"
        value = part.get("text", part.get("value"))
        if kind == "tool_call":
            calls.append(parse_tool_call(value, where))
            continue
        if kind in MEDIA_PARTS:
            raise RecordProblem("multimodal_unsupported", where, f"a {kind} part: {MULTIMODAL}")
        if kind != "text" and kind not in REASONING_PARTS:
            raise RecordProblem(
                "non_text_content", where, f"content part of type {kind!r} is not text"
            )
        if type(value) is not str:
            raise RecordProblem("invalid_content", where, f"a {kind} part needs a string `text`")
        (texts if kind == "text" else reasoning).append(value)
    return "".join(texts), "".join(reasoning), calls


def parse_tools(tools: Any, path: str = "$.tools") -> list[Any] | None:
    """`tools` as a list, or as a JSON string holding one (ShareGPT exports)."""
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = orjson.loads(tools)
        except orjson.JSONDecodeError as exc:
            raise RecordProblem(
                "invalid_type", path, f"`tools` is a string but not JSON: {exc}"
            ) from None
    if not isinstance(tools, list):
        raise RecordProblem("invalid_type", path, "`tools` must be a list of function schemas")
    return tools or None


def _message(m: dict[str, Any], role: str, path: str) -> Message:
    content, reasoning, calls = m.get("content"), m.get("reasoning_content"), m.get("tool_calls")
    if not calls and isinstance(m.get("function_call"), dict):  # OpenAI's legacy shape
        calls = [
            parse_tool_call(m["function_call"], path.removesuffix("content") + "function_call")
        ]
    if type(content) is not str:
        if type(content) is list:
            content, part_reasoning, part_calls = split_parts(content, path)
            reasoning, calls = reasoning or part_reasoning, calls or part_calls
        elif content is None and role == "assistant" and calls:
            content = ""
        else:
            raise RecordProblem("message_missing_key", path, f"the {role} message has no content")
    message: Message = {"role": role, "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    if role == "tool":
        for key in ("tool_call_id", "name"):
            if key in m:
                message[key] = m[key]
    if "weight" in m:
        message["weight"] = m["weight"]
    elif "loss_weight" in m:
        message["weight"] = 1 if m["loss_weight"] else 0
    return message


_CONTENT_PATHS = tuple(f"$.messages[{i}].content" for i in range(64))


def content_paths(n: int) -> list[str]:
    """`$.messages[i].content` for i < n.

    >>> content_paths(2)
    ['$.messages[0].content', '$.messages[1].content']
    """
    if n <= len(_CONTENT_PATHS):
        return list(_CONTENT_PATHS[:n])
    return [f"$.messages[{i}].content" for i in range(n)]


def chat_to_chat(record: Record) -> Example:
    """A chat record as it is; keys of a message that nothing reads are listed in `unread`.

    >>> chat_to_chat({"messages": [{"role": "user", "content": "hi", "wieght": 0}]}).unread
    [('wieght', '$.messages[0].wieght')]
    """
    for key in MEDIA_KEYS:
        if record.get(key):
            raise RecordProblem("multimodal_unsupported", f"$.{key}", f"`{key}`: {MULTIMODAL}")
    messages: list[Message] = []
    unread: list[tuple[str, str]] = []
    for i, m in enumerate(record["messages"]):
        role = ROLES[m["role"]]
        content = m.get("content")
        if type(content) is str and len(m) == 2:  # just role and content: most messages
            messages.append({"role": role, "content": content})
            continue
        messages.append(_message(m, role, f"$.messages[{i}].content"))
        known = TOOL_MESSAGE_FIELDS if role == "tool" else MESSAGE_FIELDS
        if not known.issuperset(m):
            unread += [(k, json_path(["messages", i, k])) for k in m if k not in known]
    tools = parse_tools(record.get("tools"))
    if tools is None and record.get("functions"):  # OpenAI's legacy function definitions
        functions = parse_tools(record["functions"], "$.functions") or []
        tools = [{"type": "function", "function": f} for f in functions]
    return Example(messages, content_paths(len(messages)), tools=tools, unread=unread or None)


def gemini_messages_to_chat(record: Record) -> Example:
    messages, origins = [], []
    for i, m in enumerate(record["messages"]):
        path = f"$.messages[{i}].content"
        messages.append({"role": GEMINI_ROLES[m["role"]], "content": m["content"]})
        origins.append(path)
    return Example(messages, origins)
