"""`evaluation/report.html`: one self-contained page (inline CSS, charts as data URIs, no
script, nothing fetched), so it opens from a bucket download, an email or an air-gapped
machine exactly as it was written.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from html import escape
from typing import Any

from droptune.evaluation import MIN_SIGNIFICANCE_N
from droptune.reporting.examples import Changed
from droptune.reporting.facts import Fact
from droptune.reporting.summary import MetricRow, RunSummary, shown

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
 margin:0 auto;max-width:1080px;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid
 #d0d7de;padding-bottom:4px}.sub{color:#59636e}
.verdict{border-radius:8px;padding:14px 18px;margin:18px 0;border:2px solid}
.verdict h2{border:0;margin:0 0 4px;font-size:20px;padding:0}
.passed{background:#dafbe1;border-color:#1a7f37}.gated{background:#fff8c5;border-color:#bf8700}
.failed{background:#ffebe9;border-color:#cf222e}.pending{background:#ddf4ff;border-color:#0969da}
.verdict.unclear{background:#f6f8fa;border-color:#59636e;color:inherit}
.banner{background:#fbefff;border:1px solid #8250df;border-radius:6px;padding:8px 12px}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 10px;text-align:left;
 border-bottom:1px solid #d0d7de;vertical-align:top}td.n,th.n{text-align:right;
 font-variant-numeric:tabular-nums}tr.gated td{font-weight:600;background:#f6f8fa}
.better{color:#1a7f37}.worse{color:#cf222e}.unclear,.no-change{color:#59636e}
img{max-width:100%;display:block;margin:8px 0}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.case{border:1px solid #d0d7de;border-radius:6px;padding:8px 10px;margin:8px 0;font-size:13px}
.case p{margin:2px 0 6px;white-space:pre-wrap;word-break:break-word}
.case b{color:#59636e;font-weight:600}
pre{background:#f6f8fa;padding:10px;border-radius:6px;overflow-x:auto;font-size:13px}
footer{margin-top:32px;color:#59636e;font-size:12px}
"""


def to_html(summary: RunSummary, plots: dict[str, bytes], plots_missing: str = "") -> str:
    """The report page of `summary`, with the PNGs in `plots` embedded."""
    sections = [
        _header(summary),
        _verdict(summary),
        _metrics(summary, plots),
        _tokens(summary, plots),
        _training(summary, plots),
        _data(summary, plots),
        _labels(summary, plots),
        _changed(summary),
        _facts_section("Cost", summary.cost),
        _deployment(summary),
        _history(summary),
        _problems(summary, plots_missing),
    ]
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>droptune run {escape(summary.run_id)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(s for s in sections if s)}"
        f"<footer>Written by droptune on {written} from {escape(summary.uri)}.</footer>"
        "</body></html>\n"
    )


def _img(plots: dict[str, bytes], name: str, alt: str) -> str:
    if name not in plots:
        return ""
    data = base64.b64encode(plots[name]).decode()
    return f"<img id='plot-{name}' alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def _table(
    head: list[str],
    rows: list[list[str]],
    numeric: frozenset[int] = frozenset(),
    marked: frozenset[int] = frozenset(),
) -> str:
    """A table of already escaped cells; columns in `numeric` align right, rows in `marked`
    stand out."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(
            f"<{tag}{' class=n' if i in numeric else ''}>{v}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(
        f"<tr{' class=gated' if i in marked else ''}>{cells('td', row)}</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _facts_table(facts: list[Fact]) -> str:
    rows = "".join(f"<tr><th>{escape(f.name)}</th><td>{escape(f.value)}</td></tr>" for f in facts)
    return f"<table>{rows}</table>"


def _facts_section(title: str, facts: list[Fact]) -> str:
    return f"<h2>{escape(title)}</h2>{_facts_table(facts)}" if facts else ""


# A page rendered where status.json is not at hand (the trainer, at the end of evaluation).
NO_STATE = (
    "state as of evaluation (this page was written before the run ended: "
    "<code>droptune runs show RUN --open</code> renders it with the final state)"
)


def _header(s: RunSummary) -> str:
    parts = [
        f"backend <b>{escape(s.backend or 'unknown')}</b>",
        f"base model <b>{escape(s.base_model or 'unknown')}</b>",
        f"state <b>{escape(s.state)}</b>" if s.state else NO_STATE,
    ]
    if s.created_at:
        parts.append(f"started {escape(s.created_at)}")
    banner = (
        "<p class='banner'>Emulated locally: Gemini tuning was stood in for by tuning a small "
        "local model. Metrics describe that model, not Gemini.</p>"
        if s.emulated
        else ""
    )
    return (
        f"<h1>droptune run {escape(s.run_id)}</h1>"
        f"<div class='sub'>{' · '.join(parts)}</div>{banner}"
    )


def _verdict(s: RunSummary) -> str:
    v = s.verdict
    return (
        f"<section id='verdict' class='verdict {v.kind}'><h2>{escape(v.title)}</h2>"
        f"<div>{escape(v.detail)}</div></section>"
    )


def _metrics(s: RunSummary, plots: dict[str, bytes]) -> str:
    if not s.metrics:
        return ""
    table = _table(
        ["metric", "baseline", "tuned", "delta", "95% interval", "change"],
        [_metric_cells(m) for m in s.metrics],
        numeric=frozenset({1, 2, 3, 4}),
        marked=frozenset(i for i, m in enumerate(s.metrics) if m.gated),
    )
    n = f" on {s.n:,} test examples" if s.n is not None else ""
    gate = s.gate or {}
    needs = (
        f"; the gate requires tuned − baseline {escape(str(gate.get('metric')))} > "
        f"{gate.get('min_delta', 0):+g}"
        + (
            f", and from {MIN_SIGNIFICANCE_N} test examples on its 95% interval above it"
            if gate.get("require_significance")
            else " (require_significance: false)"
        )
        if gate
        else ""
    )
    few = (
        f" With fewer than {MIN_SIGNIFICANCE_N} test examples no change counts as better or "
        "worse: their intervals are far narrower than the truth."
        if s.n is not None and s.n < MIN_SIGNIFICANCE_N
        else ""
    )
    return (
        f"<h2>Baseline vs tuned</h2><p class='sub'>Measured{n}{needs}. Intervals: paired "
        f"bootstrap, 95%.{few}</p><div id='metrics'>{table}</div>"
        + _img(plots, "deltas", "tuned minus baseline per metric with 95% intervals")
    )


def _metric_cells(m: MetricRow) -> list[str]:
    interval = (
        f"{shown(m.name, m.ci95[0], True)} … {shown(m.name, m.ci95[1], True)}" if m.ci95 else ""
    )
    title = escape(m.title) + (" (gate)" if m.gated else "")
    change = m.change if m.direction else ""
    return [
        title,
        shown(m.name, m.baseline),
        shown(m.name, m.tuned),
        shown(m.name, m.delta, signed=True),
        interval,
        f"<span class='{m.change.replace(' ', '-')}'>{change}</span>",
    ]


def _tokens(s: RunSummary, plots: dict[str, bytes]) -> str:
    lengths = _img(plots, "lengths", "answer lengths in tokens, baseline and tuned")
    if not s.tokens:
        return f"<h2>Answer length</h2>{lengths}" if lengths else ""
    rows = [
        [
            escape(r["kind"]),
            _count(r["baseline"]),
            _count(r["tuned"]),
            f"{r['saved']:.1%}" if r["saved"] is not None else "–",
        ]
        for r in s.tokens
    ]
    return (
        "<h2>Answer length and tokens</h2>"
        + lengths
        + _table(["tokens", "baseline", "tuned", "saved by tuning"], rows, frozenset({1, 2, 3}))
    )


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "–"


def _training(s: RunSummary, plots: dict[str, bytes]) -> str:
    body = _img(plots, "loss", "training and validation loss per step")
    if s.training:
        body += _facts_table(s.training.facts)
    if s.tuning:
        body += "<h3>Gemini tuning job</h3>" + _facts_table(s.tuning)
    return f"<h2>Training</h2>{body}" if body else ""


def _data(s: RunSummary, plots: dict[str, bytes]) -> str:
    body = _facts_table(s.dataset) if s.dataset else ""
    body += _img(plots, "tokens", "tokens per example in the dataset")
    return f"<h2>Data</h2>{body}" if body else ""


def _labels(s: RunSummary, plots: dict[str, bytes]) -> str:
    labels = s.labels or {}
    names = labels.get("names") or []
    if not names:
        return ""
    rows = []
    for name in names:
        cells = [escape(name)]
        for model in ("baseline", "tuned"):
            stats = ((labels.get(model) or {}).get("per_label") or {}).get(name, {})
            cells += [f"{stats.get(k, 0):.2f}" for k in ("precision", "recall", "f1")]
        rows.append([*cells, str(stats.get("support", 0))])  # stats: the tuned model's
    head = [
        "label",
        *(f"{m} {k}" for m in ("baseline", "tuned") for k in ("P", "R", "F1")),
        "support",
    ]
    return (
        "<h2>Per label</h2>"
        + _table(head, rows, frozenset(range(1, 8)))
        + _img(plots, "confusion", "confusion matrices, baseline and tuned")
    )


def _changed(s: RunSummary) -> str:
    if not (s.regressions or s.improvements):
        return ""
    metric = (s.regressions or s.improvements)[0].metric
    columns = [
        ("Worst regressions", s.regressions),
        ("Best improvements", s.improvements),
    ]
    body = "".join(
        f"<div><h3>{title}</h3>{''.join(_case(c) for c in cases) or '<p>none</p>'}</div>"
        for title, cases in columns
    )
    return (
        f"<h2>Answers that changed most</h2><p class='sub'>Ranked by the change in "
        f"{escape(metric)} per test example.</p><div class='pair' id='examples'>{body}</div>"
    )


def _case(c: Changed) -> str:
    return (
        f"<div class='case'><b>input</b><p dir='auto'>{escape(c.user_input)}</p>"
        f"<b>reference</b><p dir='auto'>{escape(c.reference)}</p>"
        f"<b>baseline ({shown(c.metric, c.baseline_score)})</b>"
        f"<p dir='auto'>{escape(c.baseline)}</p>"
        f"<b>tuned ({shown(c.metric, c.tuned_score)})</b><p dir='auto'>{escape(c.tuned)}</p></div>"
    )


def _deployment(s: RunSummary) -> str:
    if not (s.deployment or s.calls):
        return ""
    calls = "".join(
        f"<h3>{escape(name)}</h3><pre>{escape(code)}</pre>" for name, code in s.calls.items()
    )
    return f"<h2>Model and endpoint</h2>{_facts_table(s.deployment)}{calls}"


def _history(s: RunSummary) -> str:
    if not s.history:
        return ""
    rows = [
        [
            escape(str(h.get("at", ""))),
            escape(str(h.get("state", ""))),
            escape(str(h.get("detail", ""))),
        ]
        for h in s.history
    ]
    return "<h2>History</h2>" + _table(["at", "state", "detail"], rows)


def _problems(s: RunSummary, plots_missing: str) -> str:
    notes = [*s.problems, *([plots_missing] if plots_missing else [])]
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
