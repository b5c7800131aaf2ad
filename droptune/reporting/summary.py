"""What a user looks at after a run, as data: the verdict, the metrics baseline vs tuned, what
tuning cost, where the model is. The HTML page and the terminal render this same summary, so
they cannot disagree (results are data, rendering is separate).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from droptune.evaluation import BETTER, MIN_SIGNIFICANCE_N, NO_CHANGE, UNCLEAR, WORSE, change
from droptune.reporting.examples import Changed, most_changed
from droptune.reporting.facts import (
    Fact,
    call_examples,
    cost_facts,
    dataset_facts,
    deployment,
    token_rows,
    tuning_facts,
    vertex_field,
)
from droptune.reporting.files import RunFiles

# name -> (how people read it, direction: +1 higher is better, -1 lower is cheaper, 0 neutral)
METRIC_NAMES: dict[str, tuple[str, int]] = {
    "exact_match": ("exact match", 1),
    "accuracy": ("accuracy", 1),
    "macro_f1": ("macro F1", 1),
    "rouge_l": ("ROUGE-L", 1),
    "mean_output_tokens": ("output tokens per answer", -1),
    "mean_input_tokens": ("input tokens per prompt", 0),
    "mean_latency_s": ("seconds per request", -1),
}
FAILED_STATES = {"REJECTED", "FAILED", "CANCELLED"}


@dataclass(frozen=True)
class MetricRow:
    name: str
    title: str
    baseline: float | None
    tuned: float | None
    delta: float | None
    ci95: tuple[float, float] | None
    direction: int
    gated: bool = False  # the quality gate's metric
    n: int | None = None  # test examples measured

    @property
    def change(self) -> str:
        """`better`, `worse`, `no change` or `unclear` (droptune.evaluation.change)."""
        return change(self.delta, self.ci95, self.n, self.direction)


@dataclass(frozen=True)
class Verdict:
    kind: str  # passed | unclear (passed, not measurably better) | gated | failed | pending
    title: str
    detail: str


@dataclass
class Training:
    """Loss curves and throughput of the custom backend's trainer (training/metrics.json)."""

    train_loss: list[tuple[float, float]]
    eval_loss: list[tuple[float, float]]
    facts: list[Fact]


@dataclass
class RunSummary:
    run_id: str
    uri: str
    state: str | None
    backend: str | None
    base_model: str | None
    verdict: Verdict
    n: int | None = None
    gate: dict[str, Any] | None = None
    metrics: list[MetricRow] = field(default_factory=list)
    labels: dict[str, Any] | None = None  # evaluation/metrics.json's `labels`
    tokens: list[dict[str, Any]] = field(default_factory=list)
    dataset: list[Fact] = field(default_factory=list)
    token_stats: dict[str, Any] | None = None  # validation/report.json's `tokens`
    training: Training | None = None
    tuning: list[Fact] = field(default_factory=list)
    tuning_tokens: dict[str, Any] | None = None  # Gemini's token distributions, with buckets
    cost: list[Fact] = field(default_factory=list)
    deployment: list[Fact] = field(default_factory=list)
    calls: dict[str, str] = field(default_factory=dict)
    regressions: list[Changed] = field(default_factory=list)
    improvements: list[Changed] = field(default_factory=list)
    answer_tokens: dict[str, list[float]] = field(default_factory=dict)  # per test example
    history: list[dict[str, Any]] = field(default_factory=list)
    emulated: bool = False
    created_at: str | None = None
    updated_at: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def headline(self) -> MetricRow | None:
        """The metric a run is judged on: the gate's, else the first one measured."""
        return next((m for m in self.metrics if m.gated), self.metrics[0] if self.metrics else None)

    def to_dict(self) -> dict[str, Any]:
        """As JSON: facts as {name: value}; the per-example lengths left to predictions.csv."""
        out = asdict(self)
        del out["answer_tokens"]
        for key in ("dataset", "tuning", "cost", "deployment"):
            out[key] = dict(out[key])
        if out["training"]:
            out["training"]["facts"] = dict(out["training"]["facts"])
        return out


def summarize(files: RunFiles) -> RunSummary:
    run, status = files.run or {}, files.status or {}
    config = run.get("config") or {}
    metrics = files.metrics or {}
    gate = metrics.get("gate") or status.get("gate")
    worse, better = most_changed(files.predictions, (gate or {}).get("metric"))
    tuning_job = files.tuning_job or {}
    backend = config.get("backend") or ("gemini" if files.tuning_job else None)
    return RunSummary(
        run_id=files.run_id,
        uri=files.uri,
        state=status.get("state"),
        backend=backend,
        base_model=config.get("base_model"),
        verdict=verdict(status, gate, backend, metrics.get("n")),
        n=metrics.get("n"),
        gate=gate,
        metrics=metric_rows(metrics),
        labels=metrics.get("labels"),
        tokens=token_rows(metrics.get("tokens")),
        dataset=dataset_facts(files.validation),
        token_stats=(files.validation or {}).get("tokens"),
        training=training(files.training),
        tuning=tuning_facts(tuning_job),
        tuning_tokens=vertex_field(
            vertex_field(tuning_job, "tuningDataStats"), "supervisedTuningDataStats"
        ),
        cost=cost_facts(files),
        deployment=deployment(files),
        calls=call_examples(files.endpoint),
        regressions=worse,
        improvements=better,
        answer_tokens=answer_tokens(files.predictions),
        history=status.get("history") or [],
        emulated=bool(tuning_job.get("emulated")),
        created_at=run.get("created_at"),
        updated_at=status.get("updated_at"),
        problems=files.problems,
    )


# The outcome of the gate's metric, as the headline says it.
OUTCOME_TITLES = {
    BETTER: "Tuned model is better",
    NO_CHANGE: "No measurable change",
    WORSE: "Tuned model is worse",
    UNCLEAR: "Unclear",
}


def verdict(
    status: dict[str, Any],
    gate: dict[str, Any] | None,
    backend: str | None = None,
    n: int | None = None,
) -> Verdict:
    """One sentence on the outcome, then whether the model was deployed and why. The outcome
    is the gate metric's change (better only when its 95% interval lies above 0; unclear from
    fewer than MIN_SIGNIFICANCE_N test examples); the gate decides deployment; the state says
    whether the model went out (a report written at the end of evaluation predates
    deployment). A Gemini tuning job serves its model itself: gated, it is not promoted, but
    it exists."""
    state = status.get("state")
    detail = status.get("detail") or ""
    if state in FAILED_STATES:
        error = status.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        if state == "FAILED" and gate and gate.get("passed"):  # tuned and better: not deployed
            return Verdict(
                "failed", "Failed at deployment: the tuned model is not served", message or detail
            )
        return Verdict("failed", f"{state.title()}: no tuned model", message or detail)
    if not gate:
        where = f" (state {state})" if state else ""
        return Verdict("pending", f"Not evaluated yet{where}", detail)
    outcome = gate_outcome(gate, n)
    title = OUTCOME_TITLES[outcome]
    if outcome == UNCLEAR and n is not None and n < MIN_SIGNIFICANCE_N:
        title += f" ({n} test examples, fewer than {MIN_SIGNIFICANCE_N})"
    reason = gate.get("reason", "")
    if gate.get("passed"):
        went = {"SUCCEEDED": "deployed", "DEPLOYING": "deploying"}.get(state or "")
        kind = "passed" if outcome == BETTER else "unclear"  # green only for a clear gain
        return Verdict(kind, f"{title}: {went or 'passed the gate'}", reason)
    if outcome == BETTER:  # measurably better, by less than the gate asks
        title += f", by less than the required {gate.get('min_delta', 0):+g}"
    held = "not promoted (its tuning endpoint remains)" if backend == "gemini" else "not deployed"
    return Verdict("gated", f"{title}: {held}", reason)


def gate_outcome(gate: dict[str, Any], n: int | None = None) -> str:
    """The gate metric's change: recorded by the gate, or worked out from its numbers for a
    run evaluated before the gate recorded it."""
    if gate.get("outcome") in OUTCOME_TITLES:
        return gate["outcome"]
    return change(gate.get("delta"), gate.get("ci95"), n if n is not None else gate.get("n"))


def metric_rows(metrics: dict[str, Any]) -> list[MetricRow]:
    gated = (metrics.get("gate") or {}).get("metric")
    names = list(metrics.get("tuned") or {})
    names.sort(key=lambda n: list(METRIC_NAMES).index(n) if n in METRIC_NAMES else len(names))
    rows = []
    for name in names:
        title, direction = METRIC_NAMES.get(name, (name, 0))
        interval = (metrics.get("ci95") or {}).get(name)
        rows.append(
            MetricRow(
                name,
                title,
                (metrics.get("baseline") or {}).get(name),
                metrics["tuned"][name],
                (metrics.get("delta") or {}).get(name),
                tuple(interval) if interval else None,
                direction,
                gated=name == gated,
                n=metrics.get("n"),
            )
        )
    return rows


def training(metrics: dict[str, Any] | None) -> Training | None:
    if not metrics:
        return None
    facts: list[Fact] = []
    for key, title, unit in (
        ("steps", "optimizer steps", ""),
        ("final_train_loss", "final training loss", ""),
        ("best_eval_loss", "best validation loss", ""),
        ("tokens_per_second", "throughput", " tokens/s"),
        ("wall_seconds", "training time", " s"),
        ("peak_memory_mb", "peak memory", " MB"),
        ("device", "device", ""),
        ("method", "method", ""),
    ):
        value = metrics.get(key)
        if value is not None:
            shown = f"{value:,.4g}" if isinstance(value, float) else str(value)
            facts.append(Fact(title, shown + unit))
    if metrics.get("stopped_early"):
        facts.append(Fact("stopped early", "validation loss stopped improving"))
    return Training(_series(metrics.get("train_loss")), _series(metrics.get("eval_loss")), facts)


def answer_tokens(rows: list[dict[str, str]]) -> dict[str, list[float]]:
    """Output tokens per answer for each model, from predictions.csv."""
    out: dict[str, list[float]] = {}
    for model in ("baseline", "tuned"):
        try:
            out[model] = [float(row[f"{model}_output_tokens"]) for row in rows]
        except (KeyError, ValueError):
            continue
    return out


def _series(points: Any) -> list[tuple[float, float]]:
    out = []
    for point in points or []:
        try:
            x, y = float(point[0]), float(point[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(x) and math.isfinite(y):  # a diverged step's NaN is no point to draw
            out.append((x, y))
    return out


def shown(name: str, value: float | None, signed: bool = False) -> str:
    """A metric's value as people read it: fractions to 3 decimals, counts to 1.

    >>> shown("accuracy", 0.81234), shown("accuracy", 0.25, signed=True), shown("rouge_l", None)
    ('0.812', '+0.250', '–')
    >>> shown("mean_output_tokens", 12.34, signed=True)
    '+12.3'
    """
    if value is None:
        return "–"
    digits = 1 if name.endswith("_tokens") else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
