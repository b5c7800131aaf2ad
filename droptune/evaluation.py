"""Baseline-vs-tuned evaluation metrics, shared by both backends.

Per example (`score`): `exact_match` (after normalising case, whitespace and surrounding
punctuation), `accuracy` for labelled data (the prediction, normalised, names the reference
label), `rouge_l` (ROUGE-L F1 from `rouge-score`, Google's reference implementation, with a
Unicode word tokenizer so non-English text counts), and what was measured on the way: output
and input tokens, seconds per request. Labelled data also records which label the reference
and the prediction name, for per-label precision, recall and F1 and the confusion matrices.

Per model (`Comparison.metrics`) the means, plus macro F1 for labelled data; the deltas tuned -
baseline with a paired bootstrap 95% interval (the same resampled examples for both models),
so a small test set cannot pass for a clear win. Latency gets no interval where a batch's
answers share one wall time (`shared_latency`): they are not independent draws. `gate` decides whether the tuned model may be
deployed, and `write_results` writes `evaluation/metrics.json` (the fixed core of the run
layout, plus `labels`), `evaluation/predictions.csv` and `evaluation/gate.json`, to a local
folder or gs:// alike. gate.json is the gate's decision alone: the workflow reads it, not
metrics.json, whose per-label tables grow with the label set while a Workflows execution
holds at most 512 KB of variables.

>>> normalize("  The answer: Sports. ")
'the answer: sports'
>>> score("Sports.", "sports", labels=["sports", "world"])["accuracy"]
1.0
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import orjson

from droptune.storage import join, open_output, write_all

# Sentence punctuation, quotes, brackets and Markdown emphasis around an answer ("**Sports**.",
# "(b)"), and a leading list bullet; not signs or symbols that tell labels apart (-1, C++, C#).
_PUNCT = r"\s.,;:!?¡¿…'\"`*_()\[\]{}«»“”‘’。，、；：！？（）「」"
_EDGE_PUNCT = re.compile(rf"^(?:[-•]\s+|[{_PUNCT}])+|[{_PUNCT}]+$")
_SPACE = re.compile(r"\s+")
# Scripts written without spaces between words (Chinese, Japanese kana, Thai) count a word per
# character, as ROUGE for them usually does; other scripts count runs of word characters.
_UNSPACED = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_UNSPACED}]|[^\W{_UNSPACED}]+")
MIN_SIGNIFICANCE_N = 20  # fewer test examples than this give no interval worth trusting
METRICS = (
    "exact_match",
    "accuracy",
    "macro_f1",
    "rouge_l",
    "mean_output_tokens",
    "mean_input_tokens",
    "mean_latency_s",
)
LOWER_IS_BETTER = frozenset({"mean_output_tokens", "mean_latency_s"})  # for `change`
# Per-example scores averaged as they are (fractions of examples, mean ROUGE-L) ...
_MEANS = ("exact_match", "accuracy", "rouge_l")
# ... and measurements reported as a mean under another name.
_MEASURED = {
    "output_tokens": "mean_output_tokens",
    "input_tokens": "mean_input_tokens",
    "latency_s": "mean_latency_s",
}
BOOTSTRAP_SAMPLES = 1000
NO_LABEL = -1  # the code of a prediction (or reference) that names none of the labels

Scores = dict[str, Any]  # metric -> float; for labelled data also "label"/"predicted_label"


def normalize(text: str) -> str:
    """Lower case, single spaces, no punctuation around it.

    >>> [normalize(t) for t in ("**Sports**.", "- World", "-1", "C++.", "(b)")]
    ['sports', 'world', '-1', 'c++', 'b']
    """
    return _EDGE_PUNCT.sub("", _SPACE.sub(" ", text.strip().lower()))


class _UnicodeWords:
    """rouge-score's default tokenizer keeps only [a-z0-9]; this keeps every letter.

    >>> _UnicodeWords().tokenize("Café 今天很好")
    ['café', '今', '天', '很', '好']
    """

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


@cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_UnicodeWords())


def rouge_l(prediction: str, reference: str) -> float:
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


def label_of(prediction: str, labels: Sequence[str]) -> str | None:
    """The label a prediction names: equal after normalising, else the longest one it starts
    with as a whole word ("No, because" names "no"; "Nobody knows" does not).

    >>> [label_of(p, ["yes", "no"]) for p in ("No, because", "Nobody knows", "yes.")]
    ['no', None, 'yes']
    """
    said = normalize(prediction)
    by_norm = {normalize(label): label for label in labels}
    if said in by_norm:
        return by_norm[said]
    for norm, label in sorted(by_norm.items(), key=lambda kv: -len(kv[0])):
        if norm and said.startswith(norm) and not said[len(norm)].isalnum():
            return label
    return None


def score(
    prediction: str,
    reference: str,
    labels: Sequence[str] | None = None,
    output_tokens: int | None = None,
    *,
    input_tokens: int | None = None,
    latency_s: float | None = None,
) -> Scores:
    """One example's scores. With `labels`, also `accuracy` and the labels that the
    reference (`label`) and the prediction (`predicted_label`, None when it names none) name.

    >>> score("Billing, I think", "billing", ["billing", "bug"], 4, latency_s=0.5)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'exact_match': 0.0, 'rouge_l': 0.5, 'accuracy': 1.0, 'label': 'billing',
     'predicted_label': 'billing', 'output_tokens': 4.0, 'latency_s': 0.5}
    """
    scores: Scores = {
        "exact_match": float(normalize(prediction) == normalize(reference)),
        "rouge_l": rouge_l(prediction, reference),
    }
    if labels:
        expected, said = label_of(reference, labels), label_of(prediction, labels)
        scores["accuracy"] = float(expected is not None and said == expected)
        scores["label"], scores["predicted_label"] = expected, said
    for name, value in (
        ("output_tokens", output_tokens),
        ("input_tokens", input_tokens),
        ("latency_s", latency_s),
    ):
        if value is not None:
            scores[name] = float(value)
    return scores


def prediction_row(
    user_input: str,
    reference: str,
    baseline_response: str,
    tuned_response: str,
    baseline: Scores,
    tuned: Scores,
) -> dict[str, Any]:
    """One row of `predictions.csv`, the same columns for every backend: the texts, then
    `baseline_<score>` and `tuned_<score>`; for labelled data `reference_label` and the
    label each model's answer names (`baseline_label`, `tuned_label`)."""
    row: dict[str, Any] = {"user_input": user_input, "reference": reference}
    if "label" in tuned:
        row["reference_label"] = tuned["label"]
    row |= {"baseline_response": baseline_response, "tuned_response": tuned_response}
    for model, scores in (("baseline", baseline), ("tuned", tuned)):
        for name, value in scores.items():
            if name == "predicted_label":
                row[f"{model}_label"] = value
            elif name != "label":
                row[f"{model}_{name}"] = value
    return row


# --- labelled data ------------------------------------------------------------------------
def macro_f1(reference: np.ndarray, predicted: np.ndarray, n_labels: int) -> np.ndarray:
    """Mean F1 over the labels that occur in the references or the predictions, along the
    last axis (label codes; `NO_LABEL` matches no label), so it works on a batch of
    bootstrap resamples at once.

    >>> float(macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, -1]), 2))
    0.5833333333333333
    """
    total = np.zeros(reference.shape[:-1])
    present = np.zeros(reference.shape[:-1])
    for label in range(n_labels):
        ref, pred = reference == label, predicted == label
        tp = (ref & pred).sum(axis=-1)
        wrong = (ref ^ pred).sum(axis=-1)  # false positives + false negatives
        denominator = 2 * tp + wrong
        total += np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        present += denominator > 0
    return total / np.maximum(present, 1)


def label_report(reference: np.ndarray, predicted: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-label precision, recall, F1 and support, macro F1, and the confusion matrix: one
    row per reference label (in `names` order), one column per predicted label plus a last
    column for answers that name no label."""
    k = len(names)
    labelled = reference != NO_LABEL
    cells = reference[labelled] * (k + 1) + np.where(
        predicted[labelled] == NO_LABEL, k, predicted[labelled]
    )
    confusion = np.bincount(cells, minlength=k * (k + 1)).reshape(k, k + 1)
    per_label = {}
    for i, name in enumerate(names):
        tp = int(confusion[i, i])
        predicted_as = int((predicted == i).sum())
        support = int(confusion[i].sum())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return {
        "per_label": per_label,
        "macro_f1": float(macro_f1(reference, predicted, k)),
        "confusion": confusion.tolist(),
        "no_label": int((predicted == NO_LABEL).sum()),
    }


def _codes(values: list[str | None], names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(v, NO_LABEL) if v is not None else NO_LABEL for v in values])


# --- both models --------------------------------------------------------------------------
@dataclass
class Comparison:
    """Scores of the same examples by two models. `labels`: the label set in the order the
    report shows it; labels that only the answers name are added after it. `shared_latency`:
    the answers were generated in batches and each carries its batch's time, so latency gets
    its means and delta but no interval (resampling answers would treat one measurement as
    many and give a falsely narrow one)."""

    baseline: list[Scores] = field(default_factory=list)
    tuned: list[Scores] = field(default_factory=list)
    labels: Sequence[str] = ()
    shared_latency: bool = False

    def add(self, baseline: Scores, tuned: Scores) -> None:
        self.baseline.append(baseline)
        self.tuned.append(tuned)

    def metrics(self, seed: int = 0) -> dict[str, Any]:
        n = len(self.tuned)
        out: dict[str, Any] = {
            "split": "test",
            "n": n,
            "baseline": {},
            "tuned": {},
            "delta": {},
            "ci95": {},
        }
        if not n:
            return out
        draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_SAMPLES, n))
        for name in [*_MEANS, *_MEASURED]:
            base = np.array([s.get(name, np.nan) for s in self.baseline], dtype=float)
            tuned = np.array([s.get(name, np.nan) for s in self.tuned], dtype=float)
            # A measurement an answer lacks (no usage reported) leaves its pair out of that
            # measurement's means and delta; scores are on every answer.
            paired = ~(np.isnan(base) | np.isnan(tuned))
            if paired.any():
                resampled = (
                    None  # a batch's answers share one time: no interval
                    if name == "latency_s" and self.shared_latency
                    else _resampled_mean(np.where(paired, tuned - base, 0.0), paired, draws)
                )
                _record(
                    out,
                    _MEASURED.get(name, name),
                    base[paired].mean(),
                    tuned[paired].mean(),
                    resampled,
                )
            if name == "accuracy" and "label" in self.tuned[0]:
                self._add_labels(out, draws)
        return out

    def _add_labels(self, out: dict[str, Any], draws: np.ndarray) -> None:
        names = self._label_names()
        reference = _codes([s["label"] for s in self.tuned], names)
        base = _codes([s["predicted_label"] for s in self.baseline], names)
        tuned = _codes([s["predicted_label"] for s in self.tuned], names)
        k = len(names)
        resampled = macro_f1(reference[draws], tuned[draws], k) - macro_f1(
            reference[draws], base[draws], k
        )
        _record(
            out, "macro_f1", macro_f1(reference, base, k), macro_f1(reference, tuned, k), resampled
        )
        out["labels"] = {
            "names": names,
            "baseline": label_report(reference, base, names),
            "tuned": label_report(reference, tuned, names),
        }

    def _label_names(self) -> list[str]:
        seen = {
            s.get(key)
            for s in [*self.baseline, *self.tuned]
            for key in ("label", "predicted_label")
        }
        given = list(self.labels)
        return given + sorted(x for x in seen if x is not None and x not in given)


def _resampled_mean(values: np.ndarray, kept: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The mean of the kept `values` in each resample (resamples that keep none left out)."""
    counts = kept[draws].sum(axis=1)
    sums = values[draws].sum(axis=1)
    return sums[counts > 0] / counts[counts > 0]


def _record(
    out: dict[str, Any],
    name: str,
    baseline: float,
    tuned: float,
    resampled: np.ndarray | None,
) -> None:
    out["baseline"][name] = float(baseline)
    out["tuned"][name] = float(tuned)
    out["delta"][name] = float(tuned - baseline)
    if resampled is not None:
        out["ci95"][name] = [float(np.percentile(resampled, q)) for q in (2.5, 97.5)]


# --- the quality gate ---------------------------------------------------------------------
# How a change reads, for a metric where higher is better (direction +1) or lower (-1):
BETTER, WORSE, NO_CHANGE, UNCLEAR = "better", "worse", "no change", "unclear"


def change(
    delta: float | None,
    ci95: Sequence[float] | None,
    n: int | None,
    direction: int = 1,
) -> str:
    """`better` or `worse` when the delta's 95% interval lies on one side of 0, `no change`
    when it spans 0 (nothing measurable), `unclear` from fewer than MIN_SIGNIFICANCE_N
    examples (a bootstrap interval from a handful of examples is far narrower than the
    truth) or without an interval. A delta of 0 or less is never `better`.

    >>> change(0.2, [0.1, 0.3], 40), change(0.0, [-0.1, 0.1], 40), change(0.2, [0.1, 0.3], 5)
    ('better', 'no change', 'unclear')
    >>> change(-2.0, [-3.0, -1.0], 40, direction=-1)  # seconds per request, fewer is better
    'better'
    """
    if direction == 0 or delta is None or not ci95:
        return UNCLEAR
    if n is not None and n < MIN_SIGNIFICANCE_N:
        return UNCLEAR
    low, high = ci95
    if low > 0 or high < 0:
        improved = (low > 0) == (direction > 0)
        if improved and delta * direction > 0:
            return BETTER
        return WORSE if not improved else NO_CHANGE
    return NO_CHANGE


def gate(
    metrics: dict[str, Any],
    metric: str | None = None,
    min_delta: float = 0.0,
    *,
    require_significance: bool = True,
) -> dict[str, Any]:
    """Whether the tuned model beats the baseline by more than `min_delta` on `metric`
    (default: accuracy for labelled data, else ROUGE-L), with the numbers the decision rests
    on and the `outcome` the report names (`change`).

    By default (`require_significance`) the model must be measurably better: the lower end of
    the delta's 95% interval above `min_delta`, so that neither an equal model nor a lucky
    draw of a small test set is deployed. From fewer than MIN_SIGNIFICANCE_N test examples an
    interval means little: the rule is then the delta alone, and the outcome is `unclear`.
    `require_significance: false` asks only that the delta exceed `min_delta`.

    >>> m = {"n": 50, "baseline": {"rouge_l": 0.4}, "tuned": {"rouge_l": 0.5},
    ...      "delta": {"rouge_l": 0.1}, "ci95": {"rouge_l": [-0.02, 0.2]}}
    >>> decision = gate(m)
    >>> decision["passed"], decision["outcome"]
    (False, 'no change')
    >>> decision["reason"]
    'tuned - baseline rouge_l = +0.1000 (95% interval -0.0200 to +0.2000): no measurable change, the interval does not lie above +0.0000'
    >>> gate(m, require_significance=False)["passed"]
    True
    """
    metric = metric or ("accuracy" if "accuracy" in metrics["delta"] else "rouge_l")
    decision: dict[str, Any] = {
        "metric": metric,
        "min_delta": min_delta,
        "require_significance": require_significance,
    }
    if metric not in metrics["delta"]:
        return decision | {
            "passed": False,
            "outcome": UNCLEAR,
            "reason": f"{metric} was not measured",
        }
    delta = metrics["delta"][metric]
    interval = metrics.get("ci95", {}).get(metric)
    n = metrics.get("n", 0)
    direction = -1 if metric in LOWER_IS_BETTER else 1
    decision |= {
        "baseline": metrics.get("baseline", {}).get(metric),
        "tuned": metrics.get("tuned", {}).get(metric),
        "delta": delta,
        "ci95": interval,
        "outcome": change(delta, interval, n, direction),
    }
    said = f"tuned - baseline {metric} = {delta:+.4f}"
    if interval:
        said += f" (95% interval {interval[0]:+.4f} to {interval[1]:+.4f})"
    if not delta > min_delta:
        passed = False
        reason = f"{said} does not exceed the required {min_delta:+.4f}"
    elif not require_significance:
        passed, reason = True, f"{said} exceeds the required {min_delta:+.4f}"
    elif n < MIN_SIGNIFICANCE_N:
        passed = True
        reason = (
            f"{said} exceeds the required {min_delta:+.4f}; from {n} test examples (fewer "
            f"than {MIN_SIGNIFICANCE_N}) no interval is trusted, so the delta alone decides "
            "and the result is unclear"
        )
    elif not interval:
        passed = False
        reason = f"{said}: {metric} has no 95% interval to show a measurable change with"
    elif interval[0] <= min_delta:
        passed = False
        reason = f"{said}: no measurable change, the interval does not lie above {min_delta:+.4f}"
    else:
        passed, reason = True, f"{said}: the interval lies above {min_delta:+.4f}"
    return decision | {"passed": passed, "reason": reason}


# --- results ------------------------------------------------------------------------------
PREDICTION_COLUMNS = ["user_input", "reference", "baseline_response", "tuned_response"]


def write_results(folder_uri: str, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write `metrics.json`, `predictions.csv` and `gate.json` into `folder_uri` (a local
    folder or a gs:// prefix such as `gs://runs/runs/<run_id>/evaluation`). gate.json comes
    last: once it is there, the evaluation is whole."""
    options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    write_all(join(folder_uri, "metrics.json"), orjson.dumps(metrics, option=options))
    columns = list(dict.fromkeys(key for row in rows for key in row)) or PREDICTION_COLUMNS
    with open_output(join(folder_uri, "predictions.csv")) as out:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        text.flush()
        text.detach()  # the stream is closed by its own `with`
    write_all(join(folder_uri, "gate.json"), orjson.dumps(gate_record(metrics), option=options))


def gate_record(metrics: dict[str, Any]) -> dict[str, Any]:
    """What `evaluation/gate.json` holds: the gate's decision (metric, min_delta, passed,
    reason and the numbers it rests on) and the test split's size; no per-label table, so
    its size does not depend on the data.

    >>> gate_record({"split": "test", "n": 3, "labels": {"a": {}}, "gate": {"passed": True}})
    {'split': 'test', 'n': 3, 'passed': True}
    """
    return {"split": metrics.get("split", "test"), "n": metrics.get("n", 0), **metrics["gate"]}
