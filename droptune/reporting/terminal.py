"""The run summary for a terminal (`droptune runs show`): the report's facts as rich tables,
loss curves as sparklines. Same `RunSummary` as the HTML page, so the two agree."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from droptune.reporting.examples import Changed
from droptune.reporting.facts import Fact
from droptune.reporting.summary import MetricRow, RunSummary, shown

BARS = "▁▂▃▄▅▆▇█"
VERDICT_STYLE = {
    "passed": "green",
    "unclear": "white",
    "gated": "yellow",
    "failed": "red",
    "pending": "cyan",
}
CHANGE_STYLE = {"better": "green", "worse": "red", "no change": "dim", "unclear": "dim"}
SHOWN_CASES = 3
CASE_CHARS = 60


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """`values` as block characters, at most `width` of them (averaged in equal buckets).

    >>> sparkline([3, 2, 1.5, 1, 0.5])
    '█▅▄▂▁'
    >>> len(sparkline(range(100), width=10))
    10
    """
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := values[round(i * step) : round((i + 1) * step)])
        ]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(BARS[round((v - low) / span * (len(BARS) - 1))] for v in values)


def show(console: Console, summary: RunSummary, report: str | None = None) -> None:
    """Print everything `runs show` prints; `report`: where the HTML page is, if anywhere.
    Commands and paths are printed unwrapped (the terminal folds them), so that no line
    break lands inside what a reader copies."""
    console.print(render(summary))
    if "curl" in summary.calls:
        console.print("\ncall it:", style="bold")
        console.print(f"  {summary.calls['curl']}", soft_wrap=True, markup=False)
    if report:
        console.print(f"\nreport: {report}", soft_wrap=True, markup=False)


def render(summary: RunSummary) -> Group:
    """The summary's sections, one after another."""
    parts: list[RenderableType] = [_header(summary), _verdict(summary)]
    for section in _sections(summary):
        parts += [Text(""), section]
    return Group(*parts)


def _sections(s: RunSummary) -> Iterator[RenderableType]:
    if s.metrics:
        yield _metrics(s)
    if s.tokens:
        yield _tokens(s)
    if s.training or s.tuning:
        yield _training(s)
    if s.labels and s.labels.get("names"):
        yield _labels(s)
    if s.regressions or s.improvements:
        yield _changed(s)
    for title, facts in (("data", s.dataset), ("cost", s.cost), ("model", s.deployment)):
        if facts:
            yield _facts(title, facts)
    for problem in s.problems:
        yield Text(f"note: {problem}", style="yellow")


def _header(s: RunSummary) -> Text:
    text = Text(f"run {s.run_id}", style="bold")
    details = [
        f"backend {s.backend or 'unknown'}",
        f"base model {s.base_model or 'unknown'}",
        f"state {s.state}" if s.state else "state not recorded (status.json is missing)",
    ]
    if s.created_at:
        details.append(f"started {s.created_at}")
    text.append("\n" + " · ".join(details), style="dim")
    if s.emulated:
        text.append("\nemulated locally: a small local model stood in for Gemini", style="magenta")
    return text


def _verdict(s: RunSummary) -> Panel:
    v = s.verdict
    style = VERDICT_STYLE.get(v.kind, "cyan")
    return Panel(
        Text(v.detail or "–"),
        title=Text(v.title, style=f"bold {style}"),
        border_style=style,
        title_align="left",
    )


def _table(title: str, *columns: str, text: int = 1) -> Table:
    """A borderless table under a title; the first `text` columns align left, the rest
    (numbers) right. No columns: no header (a list of facts)."""
    table = Table(
        title=title, title_justify="left", show_header=bool(columns), box=None, pad_edge=False
    )
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < text else "right")
    return table


def _metrics(s: RunSummary) -> Table:
    n = f" on {s.n:,} test examples" if s.n is not None else ""
    table = _table(
        f"baseline vs tuned{n}", "metric", "baseline", "tuned", "delta", "95% interval", "change"
    )
    table.columns[-1].justify = "left"
    for m in s.metrics:
        table.add_row(*_metric_cells(m), style="bold" if m.gated else None)
    return table


def _metric_cells(m: MetricRow) -> list[str | Text]:
    interval = (
        f"{shown(m.name, m.ci95[0], True)} … {shown(m.name, m.ci95[1], True)}" if m.ci95 else ""
    )
    return [
        m.title + (" (gate)" if m.gated else ""),
        shown(m.name, m.baseline),
        shown(m.name, m.tuned),
        shown(m.name, m.delta, signed=True),
        interval,
        Text(m.change if m.direction else "", style=CHANGE_STYLE[m.change]),
    ]


def _tokens(s: RunSummary) -> Table:
    table = _table("evaluation tokens", "tokens", "baseline", "tuned", "saved")
    for row in s.tokens:
        saved = f"{row['saved']:.1%}" if row["saved"] is not None else "–"
        table.add_row(row["kind"], f"{row['baseline'] or 0:,}", f"{row['tuned'] or 0:,}", saved)
    return table


def _training(s: RunSummary) -> Table:
    table = _table("training")
    training = s.training
    if training:
        for title, series in (
            ("training loss", training.train_loss),
            ("validation loss", training.eval_loss),
        ):
            if series:
                losses = [loss for _, loss in series]
                table.add_row(title, f"{sparkline(losses)}  {losses[0]:.3f} → {losses[-1]:.3f}")
        for fact in training.facts:
            table.add_row(fact.name, Text(fact.value))
    for fact in s.tuning:
        table.add_row(fact.name, Text(fact.value))
    return table


def _labels(s: RunSummary) -> Table:
    labels = s.labels or {}
    table = _table("per label", "label", "baseline F1", "tuned F1", "tuned P", "tuned R", "support")
    for name in labels["names"]:
        base = ((labels.get("baseline") or {}).get("per_label") or {}).get(name, {})
        tuned = ((labels.get("tuned") or {}).get("per_label") or {}).get(name, {})
        table.add_row(
            Text(name),
            f"{base.get('f1', 0):.2f}",
            f"{tuned.get('f1', 0):.2f}",
            f"{tuned.get('precision', 0):.2f}",
            f"{tuned.get('recall', 0):.2f}",
            str(tuned.get("support", 0)),
        )
    return table


def _changed(s: RunSummary) -> Table:
    table = _table("answers that changed most", "change", "input", "baseline", "tuned", text=4)
    for kind, cases in (("worse", s.regressions), ("better", s.improvements)):
        for case in cases[:SHOWN_CASES]:
            table.add_row(Text(kind, style=CHANGE_STYLE[kind]), *_case_cells(case))
    return table


def _case_cells(c: Changed) -> list[Text]:
    """The texts as they are: data, never rich markup ("[/x]" would be a broken tag)."""

    def cut(text: str) -> Text:
        text = " ".join(text.split())
        return Text(text if len(text) <= CASE_CHARS else text[: CASE_CHARS - 1] + "…")

    return [cut(c.user_input), cut(c.baseline), cut(c.tuned)]


def _facts(title: str, facts: list[Fact]) -> Table:
    table = _table(title)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # resource names in full: they are copied from here
    for fact in facts:
        table.add_row(fact.name, Text(fact.value))
    return table
