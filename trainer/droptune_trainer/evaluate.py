"""Baseline vs tuned on `data/test.jsonl`: batched greedy generation, the core's metrics.

    python -m droptune_trainer evaluate --run-dir RUN

Each test conversation is cut before its last assistant turn; the model answers the rest
and the cut turn is the reference. Prompts are batched by length under a token budget and
padded on the left, so every row of a batch starts generating at the same position; the
baseline is the base model itself (LoRA adapters switched off, no second copy in memory).
Writes `evaluation/predictions.csv` and `evaluation/metrics.json` (with the quality gate)
through the core's `write_results`, then the report (`evaluation/report.html`). Each answer's
latency is the wall time of the batch that produced it: every request in a batch waits for
the whole batch, as it would on a server that batches requests. Answers that share one time
are not independent samples, so latency gets means and a delta but no bootstrap interval.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from droptune import evaluation
from droptune.cases import Answer, Case, cases, compare, labels_of
from droptune.log import get_logger, labelled
from droptune.reporting import try_render_run
from droptune_trainer.data import read_run, read_split, run_id_of
from droptune_trainer.errors import TrainerError
from droptune_trainer.generation import (
    batches,
    generate,
    prompt_lengths,
    render,
    token_budget,
    turn_shape,
)

log = get_logger("droptune.trainer")
MAX_NEW_TOKENS = 256
LABEL_SLACK = 4  # tokens after the longest label: an end-of-turn token, punctuation


def answer_budget(tokenizer: Any, labels: list[str] | None, max_new_tokens: int) -> int:
    """Tokens to generate per test answer. A classifier's answer is a label, and accuracy
    reads the label the answer starts with, so for labelled data no more than the longest
    label's tokens plus a little slack, and what the chat template writes before an answer
    (Qwen3's empty thinking block): a base model that would ramble on stops there."""
    if not labels:
        return max_new_tokens
    longest = max(len(ids) for ids in tokenizer(labels, add_special_tokens=False)["input_ids"])
    return min(max_new_tokens, longest + LABEL_SLACK + turn_shape(tokenizer).lead)


def answer_all(
    model: Any,
    tokenizer: Any,
    items: list[Case],
    max_new_tokens: int,
    device: torch.device,
    adapters_off: bool,
) -> list[Answer]:
    texts = [render(tokenizer, c.prompt, c.tools) for c in items]
    lengths = prompt_lengths(tokenizer, texts)
    results: list[Answer] = [Answer("", 0, n, 0.0) for n in lengths]
    if adapters_off and not hasattr(model, "disable_adapter"):
        raise TrainerError(
            "the baseline is the base model, and this model has no adapters to switch off: "
            "pass the base model as baseline_model (full tuning)"
        )
    switch = model.disable_adapter() if adapters_off else nullcontext()
    model.eval()
    with switch:
        for group in batches(lengths, token_budget(model, device), max_new_tokens):
            started = time.perf_counter()
            answers = generate(model, tokenizer, [texts[i] for i in group], max_new_tokens, device)
            seconds = time.perf_counter() - started
            for i, answer in zip(group, answers, strict=True):
                results[i] = Answer(answer.text.strip(), answer.tokens, lengths[i], seconds)
    return results


def warm_up(model: Any, tokenizer: Any, items: list[Case], device: torch.device) -> None:
    """One short untimed generation first: the first on a device pays for kernels and
    allocations, which would otherwise be counted as the baseline's latency."""
    if items:
        model.eval()
        generate(model, tokenizer, [render(tokenizer, items[0].prompt, items[0].tools)], 2, device)


def evaluate(
    model: Any,
    tokenizer: Any,
    run_dir: Path,
    device: torch.device,
    baseline_model: Any = None,
    gate: dict[str, Any] | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    merge: bool = False,
) -> dict[str, Any]:
    """Compare base and tuned on the run's test split; write the results and the report.
    The baseline is `model` with its adapters off unless a separate `baseline_model` is
    given (full tuning); the quality gate is the run's (`gate` in run.json's config) unless
    `gate` is given. With `merge`, the adapters are merged into the weights (in place) after
    the baseline: the tuned answers and their latency are then the merged model's, the one
    that is saved and served."""
    with labelled(run_id=run_id_of(run_dir)):
        items = cases(read_split(run_dir, "test", required=True))
        labels = labels_of(str(run_dir))
        max_new_tokens = answer_budget(tokenizer, labels, max_new_tokens)
        warm_up(baseline_model or model, tokenizer, items, device)
        baseline = answer_all(
            baseline_model or model,
            tokenizer,
            items,
            max_new_tokens,
            device,
            adapters_off=baseline_model is None,
        )
        if merge:
            model.merge_adapter()
        tuned = answer_all(model, tokenizer, items, max_new_tokens, device, adapters_off=False)
        metrics, rows = compare(items, baseline, tuned, labels, batched=True)
        if gate is None:
            gate = read_run(run_dir)["config"].get("gate")
        metrics["gate"] = evaluation.gate(metrics, **(gate or {}))
        evaluation.write_results(str(run_dir / "evaluation"), metrics, rows)
        log.info(
            f"evaluated {len(items)} test examples: {metrics['gate']['reason']}",
            gate_passed=metrics["gate"]["passed"],
        )
        try_render_run(str(run_dir))
    return metrics
