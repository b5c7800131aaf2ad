"""Short labelled facts drawn from a run's files: the dataset, the tuning job, the cost, where
the model is and how to call it. Each function takes one file's content (possibly absent)
and returns what it can say, so a missing file leaves its section empty, not the report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from droptune.reporting.files import RunFiles


class Fact(NamedTuple):
    name: str
    value: str


def vertex_field(resource: dict[str, Any] | None, camel: str) -> Any:
    """A field of a Vertex AI resource as REST returns it (camelCase) or the SDK (snake_case).

    >>> vertex_field({"tuned_model": {"model": "m"}}, "tunedModel")
    {'model': 'm'}
    """
    if not resource:
        return None
    if camel in resource:
        return resource[camel]
    return resource.get("".join(f"_{c.lower()}" if c.isupper() else c for c in camel))


def _int(value: Any) -> int | None:
    """Vertex AI writes int64 fields as JSON strings."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def dataset_facts(report: dict[str, Any] | None) -> list[Fact]:
    """From validation/report.json: format, examples, split, labels."""
    if not report:
        return []
    facts = []
    fmt = report.get("format") or {}
    if fmt.get("title") or fmt.get("name"):
        facts.append(Fact("format", str(fmt.get("title") or fmt.get("name"))))
    counts = report.get("counts") or {}
    if "valid" in counts:
        facts.append(Fact("examples", f"{counts['valid']:,} valid of {counts.get('records', 0):,}"))
    if counts.get("splits"):
        facts.append(Fact("split", ", ".join(f"{k} {v:,}" for k, v in counts["splits"].items())))
    if counts.get("labels"):
        facts.append(Fact("labels", ", ".join(f"{k} {v:,}" for k, v in counts["labels"].items())))
    if report.get("warnings"):
        facts.append(Fact("warnings", f"{report['warnings']:,} (see validation/report.md)"))
    return facts


def tuning_facts(job: dict[str, Any] | None) -> list[Fact]:
    """From a Gemini tuning job (training/tuning_job.json): its name, state and data stats,
    among them the examples Vertex AI dropped or truncated, which no other file records."""
    if not job:
        return []
    facts = []
    for camel, title in (("name", "tuning job"), ("state", "state"), ("baseModel", "base model")):
        if value := vertex_field(job, camel):
            facts.append(Fact(title, str(value)))
    stats = vertex_field(vertex_field(job, "tuningDataStats"), "supervisedTuningDataStats") or {}
    for camel, title in (
        ("tuningDatasetExampleCount", "examples tuned on"),
        ("tuningStepCount", "tuning steps"),
        ("totalBillableTokenCount", "billable tokens"),
        ("totalTruncatedExampleCount", "dropped or truncated examples"),
    ):
        count = _int(vertex_field(stats, camel))
        if count is not None:
            facts.append(Fact(title, f"{count:,}"))
    reasons = vertex_field(stats, "droppedExampleReasons") or []
    if reasons:
        shown = "; ".join(str(r) for r in reasons[:3])
        facts.append(
            Fact(
                "why dropped", shown + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else "")
            )
        )
    if seconds := _duration(vertex_field(job, "startTime"), vertex_field(job, "endTime")):
        facts.append(Fact("tuning time", f"{seconds / 60:,.1f} min"))
    return facts


def _duration(start: str | None, end: str | None) -> float | None:
    try:
        began = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        ended = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (ended - began).total_seconds()


def cost_facts(files: RunFiles) -> list[Fact]:
    """What tuning cost: training tokens and their estimated price (validation report),
    accelerator time (trainer), billable tokens (Gemini), evaluation tokens."""
    facts = []
    report = files.validation or {}
    if tokens := report.get("tokens"):
        facts.append(
            Fact(
                "training tokens",
                f"{tokens.get('train_total', 0):,} × {tokens.get('epochs', 1)} epochs = "
                f"{tokens.get('billable', 0):,} ({tokens.get('method', 'counted')})",
            )
        )
    cost = report.get("cost") or {}
    if cost.get("usd") is not None:
        facts.append(Fact("estimated price", f"${cost['usd']:,.2f} ({cost.get('basis', '')})"))
    training = files.training or {}
    if training.get("wall_seconds") is not None:
        facts.append(Fact(_machine_time_title(training), _machine_time(files, training)))
    stats = vertex_field(
        vertex_field(files.tuning_job, "tuningDataStats"), "supervisedTuningDataStats"
    )
    billable = _int(vertex_field(stats, "totalBillableTokenCount"))
    if billable is not None:
        epochs = ((files.run or {}).get("config") or {}).get("epochs")
        per = f" per epoch × {epochs} epochs" if epochs else ""
        facts.append(Fact("billable tokens (Vertex AI)", f"{billable:,}{per}"))
    used = (files.metrics or {}).get("tokens") or {}
    for model in ("baseline", "tuned"):
        if model in used:
            facts.append(
                Fact(
                    f"evaluation tokens, {model}",
                    f"{used[model].get('input', 0):,} in, {used[model].get('output', 0):,} out",
                )
            )
    return facts


def _machine_time_title(training: dict[str, Any]) -> str:
    return "CPU time" if training.get("device") == "cpu" else "GPU time"


def _machine_time(files: RunFiles, training: dict[str, Any]) -> str:
    hours = training["wall_seconds"] / 3600
    config = (files.run or {}).get("config") or {}
    machine = config.get("machine_type")
    accelerator, count = config.get("accelerator_type"), config.get("accelerator_count") or 1
    on = ""
    if training.get("device") != "cpu" and accelerator:
        on = f" on {count} × {accelerator}" + (f" ({machine})" if machine else "")
    return f"{hours:.2f} h{on}"


def deployment(files: RunFiles) -> list[Fact]:
    """Where the tuned model is: the endpoint record, else the tuning job's tuned model."""
    card = files.endpoint or {}
    facts = [
        Fact(title, str(card[key]))
        for key, title in (
            ("model", "model"),
            ("endpoint", "endpoint"),
            ("deployed_model_id", "deployed model id"),
            ("predict_url", "call URL"),
        )
        if card.get(key)
    ]
    tuned = vertex_field(files.tuning_job, "tunedModel") or {}
    known = {fact.value for fact in facts}
    for key, title in (("model", "tuned model"), ("endpoint", "tuned model endpoint")):
        if tuned.get(key) and tuned[key] not in known:
            facts.append(Fact(title, str(tuned[key])))
    return facts


def call_examples(card: dict[str, Any] | None) -> dict[str, str]:
    """How to call the model (endpoint.json's ready-to-run examples), curl first."""
    examples = (card or {}).get("examples") or {}
    return {name: str(examples[name]) for name in sorted(examples, key=lambda n: n != "curl")}


def token_rows(tokens: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The evaluation's token totals per model and the share the tuned model saves
    (evaluation/metrics.json's `tokens`, written by the Gemini evaluator).

    >>> token_rows({"baseline": {"input": 100, "output": 50}, "tuned": {"input": 100,
    ...     "output": 20}, "saved": {"input": 0.0, "output": 0.6}})[1]
    {'kind': 'output', 'baseline': 50, 'tuned': 20, 'saved': 0.6}
    """
    if not tokens:
        return []
    rows = []
    for kind in ("input", "output"):
        baseline = (tokens.get("baseline") or {}).get(kind)
        tuned = (tokens.get("tuned") or {}).get(kind)
        if baseline is None and tuned is None:
            continue
        saved = (tokens.get("saved") or {}).get(kind)
        if saved is None and baseline:
            saved = 1 - (tuned or 0) / baseline
        rows.append({"kind": kind, "baseline": baseline, "tuned": tuned, "saved": saved})
    return rows
