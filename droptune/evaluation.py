"""Baseline-vs-tuned evaluation metrics, shared by both backends.

Per example: `exact_match` (after normalising case, whitespace and surrounding punctuation),
`accuracy` for labelled data (the prediction, normalised, names the reference label),
`rouge_l` (ROUGE-L F1 from `rouge-score`, Google's reference implementation, with a Unicode
word tokenizer so non-English text counts) and `output_tokens`. Per model the means; the
deltas tuned - baseline with a paired bootstrap 95% interval, so a small test set cannot pass
for a clear win. `evaluation/metrics.json` has the fixed core of the run layout.

>>> normalize("  The answer: Sports. ")
'the answer: sports'
>>> score("Sports.", "sports", labels=["sports", "world"])["accuracy"]
1.0
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
METRICS = ("exact_match", "accuracy", "rouge_l", "mean_output_tokens")
BOOTSTRAP_SAMPLES = 1000


def normalize(text: str) -> str:
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", text.strip().lower()))


class _UnicodeWords:
    """rouge-score's default tokenizer keeps only [a-z0-9]; this keeps every letter."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_UnicodeWords())


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def label_of(prediction: str, labels: Sequence[str]) -> str | None:
    """The label a prediction names: equal after normalising, else the one it starts with."""
    said = normalize(prediction)
    by_norm = {normalize(label): label for label in labels}
    if said in by_norm:
        return by_norm[said]
    for norm, label in sorted(by_norm.items(), key=lambda kv: -len(kv[0])):
        if norm and said.startswith(norm):
            return label
    return None


def score(
    prediction: str,
    reference: str,
    labels: Sequence[str] | None = None,
    output_tokens: int | None = None,
) -> dict[str, float]:
    scores = {
        "exact_match": float(normalize(prediction) == normalize(reference)),
        "rouge_l": rouge_l(prediction, reference),
    }
    if labels:
        expected = label_of(reference, labels)
        scores["accuracy"] = float(
            expected is not None and label_of(prediction, labels) == expected
        )
    if output_tokens is not None:
        scores["output_tokens"] = float(output_tokens)
    return scores


@dataclass
class Comparison:
    """Scores of the same examples by two models."""

    baseline: list[dict[str, float]] = field(default_factory=list)
    tuned: list[dict[str, float]] = field(default_factory=list)

    def add(self, baseline: dict[str, float], tuned: dict[str, float]) -> None:
        self.baseline.append(baseline)
        self.tuned.append(tuned)

    def metrics(self, seed: int = 0) -> dict[str, Any]:
        n = len(self.tuned)
        names = [
            m for m in ("exact_match", "accuracy", "rouge_l") if self.tuned and m in self.tuned[0]
        ]
        out: dict[str, Any] = {
            "split": "test",
            "n": n,
            "baseline": {},
            "tuned": {},
            "delta": {},
            "ci95": {},
        }
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n)) if n else None
        for name in [*names, "output_tokens"]:
            if not self.tuned or name not in self.tuned[0]:
                continue
            base = np.array([s[name] for s in self.baseline])
            tuned = np.array([s[name] for s in self.tuned])
            key = "mean_output_tokens" if name == "output_tokens" else name
            out["baseline"][key] = float(base.mean())
            out["tuned"][key] = float(tuned.mean())
            out["delta"][key] = float(tuned.mean() - base.mean())
            deltas = (tuned - base)[draws].mean(axis=1)
            out["ci95"][key] = [
                float(np.percentile(deltas, 2.5)),
                float(np.percentile(deltas, 97.5)),
            ]
        return out


def gate(
    metrics: dict[str, Any], metric: str | None = None, min_delta: float = 0.0
) -> dict[str, Any]:
    """Whether the tuned model beats the baseline by `min_delta` on `metric` (default:
    accuracy for labelled data, else ROUGE-L)."""
    metric = metric or ("accuracy" if "accuracy" in metrics["delta"] else "rouge_l")
    if metric not in metrics["delta"]:
        return {
            "metric": metric,
            "min_delta": min_delta,
            "passed": False,
            "reason": f"{metric} was not measured",
        }
    delta = metrics["delta"][metric]
    passed = delta >= min_delta
    verdict = "meets" if passed else "misses"
    reason = f"tuned - baseline {metric} = {delta:+.4f} {verdict} the required {min_delta:+.4f}"
    return {"metric": metric, "min_delta": min_delta, "passed": passed, "reason": reason}
