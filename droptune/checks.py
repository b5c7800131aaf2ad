"""Checks on a converted example that a JSON Schema cannot express: turn order and text.

The rules, for every backend: an optional system message first; then user and assistant
turns alternating, starting with the user and ending with the assistant. A tool-calling
exchange (assistant with `tool_calls`, then `tool` results, then the assistant again) counts as
one assistant turn. Each problem is (code, message index, message).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import orjson

from droptune.formats.base import Example

_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}")


def turn_problems(example: Example) -> Iterator[tuple[str, int, str]]:
    messages = example.messages or []
    side = None  # "user" or "assistant": whose turn the last one was
    last_role = None
    for i, message in enumerate(messages):
        role = message["role"]
        content = message["content"]
        if not content.strip() and not message.get("tool_calls"):
            yield "empty_text", i, f"the {role} message is empty"
        if role == "system":
            if side is not None or (last_role == "system"):
                yield "system_not_first", i, "a system message must come first, and only once"
            last_role = role
            continue
        if role == "tool":
            if last_role not in ("assistant", "tool") or (
                last_role == "assistant" and not messages[i - 1].get("tool_calls")
            ):
                yield "consecutive_turns", i, "a tool result must follow an assistant tool call"
            last_role = role
            continue
        if side is None and role != "user":
            yield "first_turn_not_user", i, f"the conversation starts with {role}, not user"
        elif role == side and not (role == "assistant" and last_role == "tool"):
            yield "consecutive_turns", i, f"two {role} turns in a row"
        side, last_role = role, role
    if last_role != "assistant":
        where = len(messages) - 1
        yield "last_turn_not_assistant", where, "the last turn must be the assistant's response"


def tool_call_problems(example: Example) -> Iterator[tuple[str, int, int, str]]:
    """(code, message index, call index, message) for each tool call a model would learn to
    make wrongly: `function.arguments` that is a string but not JSON, or JSON but not an
    object (a string holding a string: encoded twice) is an error; a call to a tool that the
    example's `tools` does not declare, a warning.

    >>> calls = [{"type": "function", "function": {"name": "f", "arguments": '"{}"'}}]
    >>> list(tool_call_problems(Example([{"role": "assistant", "content": "", "tool_calls": calls}])))
    [('invalid_tool_arguments', 0, 0, 'function.arguments holds JSON that is not an object (str): a string encoded twice?')]
    """
    declared = _tool_names(example.tools)
    for i, message in enumerate(example.messages or ()):
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                try:
                    parsed = orjson.loads(arguments)
                except orjson.JSONDecodeError as exc:
                    yield "invalid_tool_arguments", i, j, f"function.arguments is not JSON: {exc}"
                    continue
                if not isinstance(parsed, dict):
                    kind = type(parsed).__name__
                    yield (
                        "invalid_tool_arguments",
                        i,
                        j,
                        f"function.arguments holds JSON that is not an object ({kind})"
                        + (": a string encoded twice?" if kind == "str" else ""),
                    )
            name = function.get("name")
            if declared is not None and name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                yield (
                    "undeclared_tool",
                    i,
                    j,
                    f"calls {name!r}, which `tools` does not declare ({known})",
                )


def _tool_names(tools: list | None) -> set[str] | None:
    """Names of the declared tools (OpenAI's {"type", "function": {...}} or bare schemas);
    None when the example declares none, so that no call can be checked against them."""
    if not tools:
        return None
    names = set()
    for tool in tools:
        schema = tool.get("function", tool) if isinstance(tool, dict) else None
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            names.add(schema["name"])
    return names


def has_placeholder(example: Example) -> int | None:
    """Index of the first message with a `{{placeholder}}`, if any."""
    for i, message in enumerate(example.messages or ()):
        content = message["content"]
        # "{" first: a one-character search is a memchr, several times faster than "{{"
        if "{" in content and "{{" in content and _PLACEHOLDER.search(content):
            return i
    return None


def uses_tools(example: Example) -> bool:
    return bool(example.tools) or any(
        m["role"] == "tool" or m.get("tool_calls") for m in example.messages or ()
    )


def first_unweighted(example: Example) -> int | None:
    """Index of the first assistant turn marked not to be learned (`weight: 0`), if any."""
    return _first_assistant(example, lambda m: m.get("weight") == 0)


def first_reasoning(example: Example) -> int | None:
    """Index of the first assistant turn that carries `reasoning_content`, if any."""
    return _first_assistant(example, lambda m: bool(m.get("reasoning_content")))


def _first_assistant(example: Example, test: Callable[[dict], bool]) -> int | None:
    for i, message in enumerate(example.messages or ()):
        if message["role"] == "assistant" and test(message):
            return i
    return None


# Left out of the trainer's text, these make a tool call an empty answer: such examples are
# refused (dropped reasoning leaves the answers, and is a warning).
TOOL_PARTS = frozenset({"tools", "tool_calls"})


def parts_used(messages: list[dict] | None, tools: list | None) -> set[str]:
    """Which of `tools`, `tool_calls` and `reasoning_content` a conversation has."""
    used = {"tools"} if tools else set()
    for message in messages or ():
        if message.get("tool_calls"):
            used.add("tool_calls")
        if message.get("reasoning_content"):
            used.add("reasoning_content")
    return used
