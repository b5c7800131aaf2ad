"""The system instruction droptune writes for labelled data that came without one.

A `text,label` file says what to answer but not what the task is: a model shown "Wall St.
closes higher" cannot guess that "Business" is one of four allowed answers, so a base model
scores near 0 and tuning must learn the label set from scratch. When the run sets no
`system_instruction` and the examples bring no system turn, the intake writes one that names
the task and the labels, puts it into every split (so training, evaluation and the Gemini
files see the same text), and records it in validation/report.json as the run's
`system_prompt`, which `droptune runs ask`, the served model and the report use.

>>> classification_instruction(["World", "Sports", "Business"])
'Classify the text. Answer with exactly one of these labels and nothing else: World, Sports, Business.'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Past these, the label list would cost more prompt tokens per example than it saves: the
# instruction then says the task without the list.
MAX_LISTED_LABELS = 100
MAX_LISTED_CHARS = 2_000


def classification_instruction(labels: Sequence[str]) -> str:
    """The task and its labels, in the order the data first used them."""
    listed = ", ".join(labels)
    if len(labels) > MAX_LISTED_LABELS or len(listed) > MAX_LISTED_CHARS:
        return (
            f"Classify the text into one of {len(labels)} labels. Answer with exactly one "
            "label and nothing else."
        )
    return f"Classify the text. Answer with exactly one of these labels and nothing else: {listed}."


def with_system(record: dict[str, Any], text: str) -> dict[str, Any]:
    """`record` opened with a system turn of `text`, unless it has one already.

    >>> with_system({"messages": [{"role": "user", "content": "hi"}]}, "Be brief.")["messages"][0]
    {'role': 'system', 'content': 'Be brief.'}
    """
    messages = record.get("messages")
    if not messages or messages[0].get("role") == "system":
        return record
    return {**record, "messages": [{"role": "system", "content": text}, *messages]}


def token_overhead(counter: Any, record: dict[str, Any], text: str) -> int:
    """Tokens the system turn adds to an example, as the run's counter counts them (a chat
    template may already write a default system turn that this one replaces)."""
    before, after = counter.count([record, with_system(record, text)])
    return max(0, after - before)


def tuned_system_prompt(report: dict | None, config: dict | None) -> str | None:
    """The system turn a run's conversations without one were tuned with: the one every
    example opened with (validation/report.json's `system_prompt`), else the run's
    `system_instruction`. The one rule `droptune runs ask`, the Gemini evaluation's calls and
    the custom backend's server follow.

    >>> tuned_system_prompt({"system_prompt": None}, {"system_instruction": "Be brief."})
    'Be brief.'
    """
    for prompt in ((report or {}).get("system_prompt"), (config or {}).get("system_instruction")):
        if isinstance(prompt, str) and prompt:
            return prompt
    return None
