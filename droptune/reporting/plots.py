"""The report's charts as PNG bytes, drawn with matplotlib's Agg canvas.

Figures are built with the object API (`Figure` + `FigureCanvasAgg`), not pyplot: nothing
global is touched, so rendering works in a server, a thread or a test without a display
and without choosing a backend for the whole process. A chart whose data the run does not
have is left out. matplotlib is optional (`droptune[report]`): without it `draw` returns
nothing and the report says so.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from droptune.reporting.summary import RunSummary

BASELINE, TUNED = "#8c8c8c", "#1f6feb"
BETTER, WORSE, UNCLEAR = "#1a7f37", "#cf222e", "#8c8c8c"
DPI = 100
PLOTTED = ("exact_match", "accuracy", "macro_f1", "rouge_l")  # the [0, 1] metrics


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(summary: RunSummary) -> dict[str, bytes]:
    """name -> PNG for each chart the run has data for, in the order the report shows them."""
    if not available():
        return {}
    charts: dict[str, Callable[[Any, RunSummary], bool]] = {
        "deltas": _deltas,
        "loss": _loss,
        "confusion": _confusion,
        "tokens": _tokens,
        "lengths": _lengths,
    }
    out = {}
    for name, chart in charts.items():
        figure = _figure(name)
        if chart(figure, summary):
            out[name] = _png(figure)
    return out


# Size and fixed margins per chart. Fixed margins, not constrained layout: measuring every
# label to lay a figure out costs more than drawing it, and these charts do not vary much.
_LAYOUT: dict[str, tuple[tuple[float, float], dict[str, float]]] = {
    "deltas": ((7.0, 3.0), {"left": 0.16, "right": 0.97, "bottom": 0.17, "top": 0.9}),
    "confusion": (
        (9.0, 4.2),
        {"left": 0.1, "right": 0.98, "bottom": 0.24, "top": 0.92, "wspace": 0.08},
    ),
}
_DEFAULT_LAYOUT = ((7.0, 3.4), {"left": 0.1, "right": 0.97, "bottom": 0.15, "top": 0.9})


def _figure(name: str) -> Any:
    from matplotlib.figure import Figure

    size, margins = _LAYOUT.get(name, _DEFAULT_LAYOUT)
    figure = Figure(figsize=size, dpi=DPI)
    figure.subplots_adjust(**margins)
    return figure


def _fit_left(figure: Any, labels: list[str]) -> None:
    """Leave room on the left for the longest of `labels` (about 0.08 inch a character)."""
    inches = 0.35 + 0.08 * max((len(label) for label in labels), default=0)
    figure.subplots_adjust(left=min(0.45, inches / figure.get_figwidth()))


def _png(figure: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _deltas(figure: Any, summary: RunSummary) -> bool:
    """Tuned - baseline per quality metric, with its 95% interval and the gate's margin."""
    rows = [m for m in summary.metrics if m.name in PLOTTED and m.delta is not None]
    if not rows:
        return False
    ax = figure.add_subplot()
    for y, row in enumerate(reversed(rows)):
        low, high = row.ci95 or (row.delta, row.delta)
        colour = {"better": BETTER, "worse": WORSE}.get(row.change, UNCLEAR)
        ax.plot([low, high], [y, y], color=colour, linewidth=3, solid_capstyle="round")
        ax.plot([row.delta], [y], "o", color=colour, markersize=8)
    ax.axvline(0, color="#444", linewidth=1)
    gate = summary.gate or {}
    if any(r.gated for r in rows) and gate.get("min_delta"):
        ax.axvline(gate["min_delta"], color=WORSE, linestyle="--", linewidth=1, label="required")
        ax.legend(loc="best", frameon=False)
    ax.set_yticks(range(len(rows)), [r.title for r in reversed(rows)])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    _fit_left(figure, [r.title for r in rows])
    ax.set_xlabel("tuned − baseline (dot) and 95% bootstrap interval (bar)")
    ax.set_title("Change from tuning")
    return True


def _loss(figure: Any, summary: RunSummary) -> bool:
    training = summary.training
    if training is None or not (training.train_loss or training.eval_loss):
        return False
    ax = figure.add_subplot()
    if training.train_loss:
        ax.plot(*zip(*training.train_loss, strict=True), color=TUNED, label="training")
    if training.eval_loss:
        ax.plot(*zip(*training.eval_loss, strict=True), "o-", color="#bf8700", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per label token")
    ax.set_title("Training and validation loss")
    ax.legend(frameon=False)
    return True


def _confusion(figure: Any, summary: RunSummary) -> bool:
    labels = summary.labels
    if not labels or not labels.get("names"):
        return False
    names = labels["names"]
    columns = [*names, "(none)"]
    _fit_left(figure, names)
    axes = figure.subplots(1, 2, sharey=True)  # one set of row labels, on the left
    for ax, model in zip(axes, ("baseline", "tuned"), strict=True):
        matrix = (labels.get(model) or {}).get("confusion") or []
        if not matrix:
            ax.set_axis_off()
            continue
        peak = max(max(row) for row in matrix) or 1
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=peak, aspect="auto")
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                shade = "white" if count > peak / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", color=shade, fontsize=9)
        # Label names are data: "$0-$50" is no math ("$$" would fail the whole report).
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", parse_math=False)
        ax.set_yticks(range(len(names)), names, parse_math=False)
        ax.set_xlabel("predicted")
        ax.set_title(model)
    axes[0].set_ylabel("reference")
    return True


def _tokens(figure: Any, summary: RunSummary) -> bool:
    """Tokens per example from the validation report: its histogram when it has one, else
    Vertex AI's token distribution (Gemini), else the quantiles the report records."""
    stats = summary.token_stats or {}
    histogram = stats.get("histogram") or _gemini_buckets(summary.tuning_tokens)
    ax = figure.add_subplot()
    if histogram:
        edges, counts = histogram["edges"], histogram["counts"]
        widths = [b - a for a, b in pairwise(edges)]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=TUNED, edgecolor="white")
        ax.set_ylabel("examples")
    elif stats.get("max"):
        marks = [(k, stats[k]) for k in ("min", "p50", "mean", "p95", "max") if k in stats]
        ax.hlines(0, stats.get("min", 0), stats["max"], color=BASELINE, linewidth=2)
        ax.hlines(0, stats.get("p50", 0), stats.get("p95", 0), color=TUNED, linewidth=10)
        for i, (name, value) in enumerate(marks):  # labels above and below, so none overlap
            ax.plot([value], [0], "|", color="black", markersize=18)
            offset = (0, 14) if i % 2 == 0 else (0, -22)
            ax.annotate(name, (value, 0), xytext=offset, textcoords="offset points", ha="center")
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
    else:
        return False
    if stats.get("limit"):
        ax.axvline(stats["limit"], color=WORSE, linestyle="--", linewidth=1, label="limit")
        ax.legend(frameon=False)
    ax.set_title("Example length")
    # How the tokens were counted names the tokenizer's folder: too long for a centred title,
    # whose ends fell off the figure. Under the axis, wrapped to the figure's width.
    counted = stats.get("description") or "validation report"
    _caption(figure, ax, f"tokens per example, counted by {counted}")
    return True


def _caption(figure: Any, ax: Any, text: str, fontsize: float = 9.0) -> None:
    """`text` as the x-axis label, wrapped to the figure's width, with the bottom margin
    grown by the lines it takes."""
    import textwrap

    chars = int(figure.get_figwidth() * 72 / (0.6 * fontsize))  # a character ~0.6 em wide
    lines = textwrap.wrap(text, chars, break_on_hyphens=False) or [""]
    ax.set_xlabel("\n".join(lines), fontsize=fontsize, parse_math=False)
    inches = 0.35 + len(lines) * fontsize * 1.3 / 72  # tick labels, then the lines
    figure.subplots_adjust(bottom=min(0.5, inches / figure.get_figheight()))


def _gemini_buckets(stats: dict[str, Any] | None) -> dict[str, list[float]] | None:
    distribution = (stats or {}).get("userInputTokenDistribution") or (stats or {}).get(
        "user_input_token_distribution"
    )
    buckets = (distribution or {}).get("buckets") or []
    try:
        edges = [float(b["left"]) for b in buckets] + [float(buckets[-1]["right"])]
        counts = [float(b.get("count", 0)) for b in buckets]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return {"edges": edges, "counts": counts}


def _lengths(figure: Any, summary: RunSummary) -> bool:
    """Answer lengths in tokens, baseline vs tuned: tuning often changes them the most."""
    lengths = summary.answer_tokens
    if not lengths.get("baseline") or not lengths.get("tuned"):
        return False
    ax = figure.add_subplot()
    top = max(max(lengths["baseline"]), max(lengths["tuned"]))
    bins = min(30, max(1, int(top)))
    for model, colour in (("baseline", BASELINE), ("tuned", TUNED)):
        ax.hist(
            lengths[model],
            bins=bins,
            range=(0, top),
            histtype="step",
            linewidth=2,
            color=colour,
            label=model,
        )
    ax.set_xlabel("tokens per answer (test split)")
    ax.set_ylabel("answers")
    ax.set_title("Answer length")
    ax.legend(frameon=False)
    return True
