"""What a user looks at after a run: the evaluation report (`evaluation/report.html`), the
terminal summary of `droptune runs show`, and the run list of `droptune runs list`.

Everything starts from a run folder, read as it is (`files`), summarised as data
(`summary`), then rendered as a page (`page`, `plots`) or for a terminal (`terminal`).
"""

from droptune.reporting.files import RunFiles, load_run
from droptune.reporting.render import Report, build_report, render_run, try_render_run
from droptune.reporting.summary import RunSummary, summarize

__all__ = [
    "Report",
    "RunFiles",
    "RunSummary",
    "build_report",
    "load_run",
    "render_run",
    "summarize",
    "try_render_run",
]
