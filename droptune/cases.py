"""Test examples as a prompt and a reference: what both backends' evaluations answer.

A canonical chat record is cut before its last assistant turn; the turns before it are the
prompt, that turn's text is the reference. Records that do not end with a plain-text
assistant turn (a tool call, say) have no reference to compare with and are left out.

>>> [c.reference for c in cases([
...     {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
...     {"messages": [{"role": "user", "content": "hi"}]},
... ])]
['4']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    prompt: list[dict[str, Any]]
    reference: str
    tools: Any = None

    @property
    def user_input(self) -> str:
        """The last user turn: what a person reading the predictions wants to see."""
        return next(
            (m.get("content") or "" for m in reversed(self.prompt) if m["role"] == "user"), ""
        )


def cases(records: Iterable[dict[str, Any]]) -> list[Case]:
    out = []
    for record in records:
        messages = [
            {k: v for k, v in m.items() if k != "weight"} for m in record.get("messages", [])
        ]
        if (
            messages
            and messages[-1]["role"] == "assistant"
            and isinstance(messages[-1].get("content"), str)
        ):
            out.append(Case(messages[:-1], messages[-1]["content"], record.get("tools")))
    return out
