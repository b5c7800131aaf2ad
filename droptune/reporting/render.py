"""From a run folder to its report: read what is there, summarise, draw, write the page.

>>> from droptune.reporting import render_run
>>> render_run("gs://my-runs/runs/tickets-1700000000123456-2cae3432")  # doctest: +SKIP
'gs://my-runs/runs/tickets-1700000000123456-2cae3432/evaluation/report.html'
"""

from __future__ import annotations

from dataclasses import dataclass

from droptune.log import get_logger
from droptune.reporting import plots
from droptune.reporting.files import RunFiles, load_run
from droptune.reporting.page import to_html
from droptune.reporting.summary import RunSummary, summarize
from droptune.storage import join, write_all

log = get_logger("droptune.reporting")

REPORT = "evaluation/report.html"
PLOTS = "evaluation/plots"
NO_MATPLOTLIB = "Charts need matplotlib: pip install 'droptune[report]'."


@dataclass
class Report:
    summary: RunSummary
    plots: dict[str, bytes]  # name -> PNG
    html: str


def build_report(files: RunFiles) -> Report:
    summary = summarize(files)
    drawn = plots.draw(summary)
    missing = "" if drawn or plots.available() else NO_MATPLOTLIB
    return Report(summary, drawn, to_html(summary, drawn, missing))


def render_run(run_uri: str) -> str:
    """Write `evaluation/report.html` and `evaluation/plots/<chart>.png` into the run folder
    at `run_uri` (a local directory or gs://<runs>/runs/<run_id>) from whatever files it
    holds; return the report's URI."""
    report = build_report(load_run(run_uri))
    for name, png in report.plots.items():
        write_all(join(run_uri, PLOTS, f"{name}.png"), png)
    target = join(run_uri, REPORT)
    write_all(target, report.html.encode("utf-8"))
    return target


def try_render_run(run_uri: str) -> str | None:
    """`render_run`, best effort: the metrics are already written and decide the run, so a
    report that fails is logged, never a reason to fail the job. The URI, or None."""
    try:
        uri = render_run(run_uri)
    except Exception as exc:
        log.error(f"the evaluation report could not be written: {exc}", exc_info=True)
        return None
    log.info(f"wrote the evaluation report {uri}")
    return uri
