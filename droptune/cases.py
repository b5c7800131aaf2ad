"""A run's test split as both backends evaluate it: examples cut into a prompt and a
reference, the models' answers, and their comparison with the core's metrics.

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

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from droptune import evaluation
from droptune.errors import DroptuneError
from droptune.formats.base import without_weights
from droptune.instruction import tuned_system_prompt
from droptune.storage import join, read_all


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


@dataclass(frozen=True)
class Answer:
    """One model's answer to one case, and what it cost."""

    text: str
    output_tokens: int | None
    input_tokens: int | None
    latency_s: float  # for a batched generation, the wall time of its batch


def cases(records: Iterable[dict[str, Any]]) -> list[Case]:
    out = []
    for record in records:
        messages = without_weights(record.get("messages", []))
        if (
            messages
            and messages[-1]["role"] == "assistant"
            and isinstance(messages[-1].get("content"), str)
        ):
            out.append(Case(messages[:-1], messages[-1]["content"], record.get("tools")))
    return out


def system_prompt_of(run_uri: str, config: dict | None = None) -> str | None:
    """`tuned_system_prompt` of the run at `run_uri` (its validation report read here)."""
    try:
        report = json.loads(read_all(join(run_uri, "validation", "report.json")))
    except (DroptuneError, ValueError):
        report = {}
    return tuned_system_prompt(report if isinstance(report, dict) else {}, config)


def labels_of(run_uri: str) -> list[str] | None:
    """The label set of labelled data (validation/report.json), for accuracy; else None."""
    try:
        report = json.loads(read_all(join(run_uri, "validation", "report.json")))
    except (DroptuneError, ValueError):
        return None
    labels = (report.get("counts") or {}).get("labels")
    return list(labels) if labels else None


def score(answer: Answer, case: Case, labels: list[str] | None) -> evaluation.Scores:
    return evaluation.score(
        answer.text,
        case.reference,
        labels,
        answer.output_tokens,
        input_tokens=answer.input_tokens,
        latency_s=answer.latency_s,
    )


def compare(
    items: list[Case],
    baseline: list[Answer],
    tuned: list[Answer],
    labels: list[str] | None,
    batched: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The core's metrics of both models' answers, and the rows of predictions.csv.
    `batched`: the answers came from batched generation, each with its batch's time."""
    comparison = evaluation.Comparison(labels=labels or (), shared_latency=batched)
    rows = []
    for case, b_answer, t_answer in zip(items, baseline, tuned, strict=True):
        b, t = score(b_answer, case, labels), score(t_answer, case, labels)
        comparison.add(b, t)
        rows.append(
            evaluation.prediction_row(
                case.user_input, case.reference, b_answer.text, t_answer.text, b, t
            )
        )
    return comparison.metrics(), rows
