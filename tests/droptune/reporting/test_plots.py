"""The token-length chart: the validation report's histogram as bars, else its quantiles."""

from __future__ import annotations

import pytest

from droptune.reporting import plots
from droptune.reporting.summary import RunSummary, Verdict

pytest.importorskip("matplotlib")


def summary(token_stats: dict) -> RunSummary:
    verdict = Verdict(kind="passed", title="", detail="")
    return RunSummary("r", "runs/r", "SUCCEEDED", "custom", None, verdict, token_stats=token_stats)


def drawn(token_stats: dict):
    from matplotlib.figure import Figure

    figure = Figure()
    assert plots._tokens(figure, summary(token_stats))
    return figure.axes[0]


def test_the_histogram_is_drawn_bin_by_bin_with_the_limit():
    ax = drawn({"histogram": {"edges": [10, 20, 30, 40], "counts": [5, 0, 2]}, "limit": 35})
    bars = [(p.get_x(), p.get_width(), p.get_height()) for p in ax.patches]
    assert bars == [(10, 10, 5), (20, 10, 0), (30, 10, 2)]
    assert [line.get_xdata()[0] for line in ax.lines] == [35]  # the limit


def test_without_a_histogram_the_quantiles_are_marked():
    ax = drawn({"min": 3, "p50": 9, "mean": 10.5, "p95": 20, "max": 31})
    assert not ax.patches
    assert [t.get_text() for t in ax.texts] == ["min", "p50", "mean", "p95", "max"]


def test_label_names_with_dollar_signs_are_text_not_math():
    """'$0-$50' drawn as math loses its dollars; 'costs $$' as math fails the whole report."""
    from dataclasses import replace

    names = ["$0-$50", "costs $$"]
    confusion = {"confusion": [[2, 0, 0], [1, 1, 0]]}
    labelled = replace(
        summary({}), labels={"names": names, "baseline": confusion, "tuned": confusion}
    )
    charts = plots.draw(labelled)
    assert charts["confusion"].startswith(b"\x89PNG")
    from matplotlib.figure import Figure

    figure = Figure()
    assert plots._confusion(figure, labelled)
    ticks = figure.axes[0].get_yticklabels()
    assert [t.get_text() for t in ticks] == names and not any(t.get_parse_math() for t in ticks)


def test_the_length_chart_s_text_stays_inside_the_figure():
    """The counter's description names the tokenizer's folder: as the title it ran off both
    edges; wrapped under the axis it fits."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    described = (
        "exact: tokenizer and chat template of HuggingFaceTB/SmolLM2-135M-Instruct "
        "(/root/.cache/droptune/models/HuggingFaceTB--SmolLM2-135M-Instruct)"
    )
    figure = plots._figure("tokens")
    stats = {"histogram": {"edges": [40, 50, 60], "counts": [3, 4]}, "description": described}
    assert plots._tokens(figure, summary(stats))
    ax = figure.axes[0]
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # places the axis label
    renderer = canvas.get_renderer()
    box = figure.bbox
    for text in (ax.title, ax.xaxis.label):
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0, text
    assert "SmolLM2-135M-Instruct" in ax.get_xlabel().replace("\n", "")
