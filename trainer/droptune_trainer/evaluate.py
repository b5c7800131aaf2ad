"""Baseline vs tuned on `data/test.jsonl`: batched greedy generation, the core's metrics.

    python -m droptune_trainer evaluate --run-dir RUN

Each test conversation is cut before its last assistant turn; the model answers the rest
and the cut turn is the reference. Prompts are batched by length under a token budget and
padded on the left, so every row of a batch starts generating at the same position; the
baseline is the base model itself (LoRA adapters switched off, no second copy in memory).
Writes `evaluation/predictions.csv` and `evaluation/metrics.json` (with the quality gate).
"""

from __future__ import annotations

import csv
import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from droptune import evaluation
from droptune.log import get_logger
from droptune_trainer.data import read_run, read_split
from droptune_trainer.generation import generate, render

log = get_logger("droptune.trainer")
MAX_NEW_TOKENS = 256
PROMPT_TOKENS_PER_BATCH = 16_384


@dataclass
class Case:
    prompt: list[dict[str, Any]]
    reference: str
    tools: Any = None

    @property
    def user_input(self) -> str:
        return next(
            (m.get("content") or "" for m in reversed(self.prompt) if m["role"] == "user"), ""
        )


def cases(records: list[dict[str, Any]]) -> list[Case]:
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


def labels_of(run_dir: Path) -> list[str] | None:
    report = run_dir / "validation" / "report.json"
    if not report.is_file():
        return None
    labels = json.loads(report.read_text()).get("counts", {}).get("labels")
    return list(labels) if labels else None


def batches(tokenizer: Any, items: list[Case], budget: int) -> list[list[int]]:
    """Indices of `items` grouped by prompt length so that padding stays small."""
    lengths = [
        len(tokenizer.apply_chat_template(c.prompt, tools=c.tools, add_generation_prompt=True))
        for c in items
    ]
    order = sorted(range(len(items)), key=lambda i: lengths[i])
    groups, current = [], []
    for i in order:
        if current and lengths[i] * (len(current) + 1) > budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def answer_all(
    model: Any,
    tokenizer: Any,
    items: list[Case],
    max_new_tokens: int,
    device: torch.device,
    adapters_off: bool,
) -> list[tuple[str, int]]:
    results: list[tuple[str, int]] = [("", 0)] * len(items)
    switch = (
        model.disable_adapter()
        if adapters_off and hasattr(model, "disable_adapter")
        else nullcontext()
    )
    model.eval()
    with switch:
        for group in batches(tokenizer, items, PROMPT_TOKENS_PER_BATCH):
            texts = [render(tokenizer, items[i].prompt, items[i].tools) for i in group]
            for i, answer in zip(
                group,
                generate(model, tokenizer, texts, max_new_tokens, device),
                strict=True,
            ):
                results[i] = answer
    return results


def evaluate(
    model: Any,
    tokenizer: Any,
    run_dir: Path,
    device: torch.device,
    baseline_model: Any = None,
    gate: dict[str, Any] | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> dict[str, Any]:
    """Compare base and tuned on the run's test split; write the results. The baseline is
    `model` with its adapters off unless a separate `baseline_model` is given (full tuning);
    the quality gate is the run's (`gate` in run.json's config) unless `gate` is given."""
    records = read_split(run_dir, "test", required=True)
    items = cases(records)
    labels = labels_of(run_dir)
    if baseline_model is None:
        baseline = answer_all(model, tokenizer, items, max_new_tokens, device, adapters_off=True)
    else:
        baseline = answer_all(
            baseline_model, tokenizer, items, max_new_tokens, device, adapters_off=False
        )
    tuned = answer_all(model, tokenizer, items, max_new_tokens, device, adapters_off=False)
    comparison = evaluation.Comparison()
    rows = []
    for case, (b_text, b_tokens), (t_text, t_tokens) in zip(items, baseline, tuned, strict=True):
        b = evaluation.score(b_text, case.reference, labels, b_tokens)
        t = evaluation.score(t_text, case.reference, labels, t_tokens)
        comparison.add(b, t)
        row = {
            "user_input": case.user_input,
            "reference": case.reference,
            "baseline_response": b_text,
            "tuned_response": t_text,
        }
        row |= {f"baseline_{k}": v for k, v in b.items()} | {f"tuned_{k}": v for k, v in t.items()}
        rows.append(row)
    metrics = comparison.metrics()
    if gate is None:
        gate = read_run(run_dir)["config"].get("gate")
    metrics["gate"] = evaluation.gate(metrics, **(gate or {}))
    write(run_dir / "evaluation", metrics, rows)
    log.info(f"evaluated {len(items)} test examples: {metrics['gate']['reason']}")
    return metrics


def write(folder: Path, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with (folder / "predictions.csv").open("w", newline="", encoding="utf-8") as out:
        columns = (
            list(rows[0])
            if rows
            else ["user_input", "reference", "baseline_response", "tuned_response"]
        )
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
