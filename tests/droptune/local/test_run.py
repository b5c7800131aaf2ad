"""What `droptune local run` says when a run ends: the report brought up to the final state,
and training progress lines as the trainer wrote them."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from droptune.local.run import last_message, summarize
from droptune.reporting import render_run
from tests.droptune.reporting.conftest import make_run


def test_the_report_the_trainer_wrote_is_rendered_again_with_the_final_state(tmp_path: Path):
    """The trainer renders the report when evaluation ends, from a copy of the run folder
    without status.json: its header said "state unknown" for a run that had SUCCEEDED."""
    run = make_run(tmp_path)
    status = (run / "status.json").read_text()
    (run / "status.json").unlink()  # as the trainer's copy of the run folder is
    render_run(str(run))
    report = run / "evaluation" / "report.html"
    assert "state as of evaluation" in report.read_text()
    (run / "status.json").write_text(status)  # the run ended; `local run` downloaded it all
    console = Console(record=True, width=200)
    summarize(run, json.loads(status), console)
    assert "state <b>SUCCEEDED</b>" in report.read_text()
    assert "evaluation/report.html" in console.export_text()


def test_a_run_without_a_report_gets_none_made_up(tmp_path: Path):
    run = make_run(tmp_path)
    status = json.loads((run / "status.json").read_text())
    summarize(run, status, Console(record=True))
    assert not (run / "evaluation" / "report.html").exists()


def test_progress_lines_are_shown_once_labelled(tmp_path: Path):
    log = tmp_path / "job.log"
    lines = [
        {"message": "step 4: validation loss 0.1864"},
        {"message": "training: step 5/21, loss 0.200, 19 tokens/s"},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert last_message(log) == "training: step 5/21, loss 0.200, 19 tokens/s"
    log.write_text(json.dumps(lines[0]) + "\n" + "not json\n")
    assert last_message(log) == "training: step 4: validation loss 0.1864"
