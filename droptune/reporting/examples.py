"""The test examples where tuning changed the answer most, for and against.

A mean hides what changed; a reader trusts a verdict after seeing the answers. Examples are
ranked by the change of one per-example score (the gate's metric when predictions.csv has
it, else ROUGE-L), ties broken by the change in ROUGE-L, so 0/1 metrics such as accuracy
still put the clearest cases first.
"""

from __future__ import annotations

from dataclasses import dataclass

SHOWN = 5
MAX_CHARS = 600  # longer texts are cut for display; predictions.csv has them whole


@dataclass(frozen=True)
class Changed:
    user_input: str
    reference: str
    baseline: str
    tuned: str
    metric: str
    baseline_score: float
    tuned_score: float

    @property
    def change(self) -> float:
        return self.tuned_score - self.baseline_score


def _number(row: dict[str, str], column: str) -> float | None:
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        return None


def _cut(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def ranking_metric(rows: list[dict[str, str]], preferred: str | None) -> str | None:
    """The per-example score to rank by: `preferred` when the rows have it, else ROUGE-L."""
    if not rows:
        return None
    for metric in (preferred, "rouge_l", "exact_match"):
        if metric and f"tuned_{metric}" in rows[0] and f"baseline_{metric}" in rows[0]:
            return metric
    return None


def most_changed(
    rows: list[dict[str, str]], preferred: str | None = None, shown: int = SHOWN
) -> tuple[list[Changed], list[Changed]]:
    """(worst regressions, best improvements), at most `shown` of each, largest change first.

    >>> rows = [
    ...     {"user_input": "q1", "reference": "a", "baseline_response": "a",
    ...      "tuned_response": "b", "baseline_rouge_l": "1.0", "tuned_rouge_l": "0.0"},
    ...     {"user_input": "q2", "reference": "c", "baseline_response": "d",
    ...      "tuned_response": "c", "baseline_rouge_l": "0.0", "tuned_rouge_l": "1.0"},
    ... ]
    >>> worse, better = most_changed(rows)
    >>> [c.user_input for c in worse], [c.user_input for c in better]
    (['q1'], ['q2'])
    """
    metric = ranking_metric(rows, preferred)
    if metric is None:
        return [], []
    scored: list[tuple[float, float, Changed]] = []
    for row in rows:
        base, tuned = _number(row, f"baseline_{metric}"), _number(row, f"tuned_{metric}")
        if base is None or tuned is None:
            continue
        tie = (_number(row, "tuned_rouge_l") or 0.0) - (_number(row, "baseline_rouge_l") or 0.0)
        if base == tuned and tie == 0:
            continue
        changed = Changed(
            _cut(row.get("user_input")),
            _cut(row.get("reference")),
            _cut(row.get("baseline_response")),
            _cut(row.get("tuned_response")),
            metric,
            base,
            tuned,
        )
        scored.append((tuned - base, tie, changed))
    scored.sort(key=lambda item: (item[0], item[1]))
    worse = [c for delta, tie, c in scored if (delta, tie) < (0, 0)][:shown]
    better = [c for delta, tie, c in reversed(scored) if (delta, tie) > (0, 0)][:shown]
    return worse, better
