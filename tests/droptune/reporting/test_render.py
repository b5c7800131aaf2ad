"""report.html and its PNGs: written into a local run folder or a bucket, self-contained,
with what a reader needs on the page, and fast on a 1,000-example test split."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest

from droptune.reporting import render_run
from tests.droptune.reporting.conftest import make_run, write_json

PNG = b"\x89PNG\r\n\x1a\n"


def embedded_images(html: str) -> dict[str, bytes]:
    return {
        name: base64.b64decode(data)
        for name, data in re.findall(
            r"<img id='plot-(\w+)'[^>]* src='data:image/png;base64,([^']+)'", html
        )
    }


def test_report_and_plots_in_a_local_run_folder(run_folder: Path):
    uri = render_run(str(run_folder))
    assert uri == f"{run_folder}/evaluation/report.html"
    html = Path(uri).read_text()
    plots = run_folder / "evaluation" / "plots"
    names = {"deltas", "loss", "confusion", "tokens", "lengths"}
    assert {p.stem for p in plots.glob("*.png")} == names
    images = embedded_images(html)
    assert images.keys() == names
    assert all(png.startswith(PNG) for png in images.values())
    assert images["loss"] == (plots / "loss.png").read_bytes()
    assert "Tuned model is better: deployed" in html
    assert (
        "<tr class=gated><td>accuracy (gate)</td><td class=n>0.250</td><td class=n>0.875</td>"
        in html
    )
    assert "Worst regressions" in html and "I was charged twice this month (#4)" in html
    assert "curl -X POST" in html and "projects/p/locations/us-central1/endpoints/droptune" in html


def test_the_page_fetches_nothing(run_folder: Path):
    html = Path(render_run(str(run_folder))).read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html)
    assert "url(" not in html


def test_text_from_the_data_is_escaped(tmp_path: Path):
    folder = make_run(tmp_path)
    write_json(folder / "status.json", {"state": "FAILED", "error": {"message": "<b>boom</b>"}})
    html = Path(render_run(str(folder))).read_text()
    assert "&lt;b&gt;boom&lt;/b&gt;" in html and "<b>boom</b>" not in html


def test_a_run_with_only_a_status_still_gets_a_page(tmp_path: Path):
    write_json(tmp_path / "r" / "status.json", {"state": "VALIDATING", "detail": "reading"})
    html = Path(render_run(str(tmp_path / "r"))).read_text()
    assert "Not evaluated yet (state VALIDATING)" in html
    assert embedded_images(html) == {}


def test_emulated_gemini_runs_say_so(tmp_path: Path):
    folder = make_run(tmp_path)
    write_json(folder / "training" / "tuning_job.json", {"name": "tuningJobs/1", "emulated": True})
    assert "Emulated locally" in Path(render_run(str(folder))).read_text()


def test_report_in_a_bucket(gcs_bucket, run_folder: Path):
    prefix = "runs/" + run_folder.name
    for path in run_folder.rglob("*"):
        if path.is_file():
            gcs_bucket.blob(f"{prefix}/{path.relative_to(run_folder)}").upload_from_filename(path)
    uri = render_run(f"gs://{gcs_bucket.name}/{prefix}")
    assert uri == f"gs://{gcs_bucket.name}/{prefix}/evaluation/report.html"
    html = gcs_bucket.blob(f"{prefix}/evaluation/report.html").download_as_text()
    assert "Tuned model is better" in html
    assert (
        gcs_bucket.blob(f"{prefix}/evaluation/plots/loss.png").download_as_bytes().startswith(PNG)
    )


def test_a_thousand_examples_render_in_under_two_seconds(tmp_path: Path):
    render_run(str(make_run(tmp_path / "warm", n=8)))  # imports matplotlib once
    folder = make_run(tmp_path / "big", n=1000)
    # CPU time of this process: rendering is single-threaded, so this is the wall time on an
    # idle machine, and other work on a busy CI machine does not make the test flaky.
    started = time.process_time()
    render_run(str(folder))
    elapsed = time.process_time() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s of CPU"


@pytest.mark.parametrize("name", ["run.json", "training/metrics.json", "validation/report.json"])
def test_any_one_file_can_be_missing(run_folder: Path, name: str):
    (run_folder / name).unlink()
    assert "Tuned model is better" in Path(render_run(str(run_folder))).read_text()


def test_a_page_written_before_the_run_ended_does_not_say_unknown(tmp_path):
    """The trainer renders the page at evaluation end, without status.json."""
    from droptune.reporting import load_run, summarize
    from droptune.reporting.page import to_html
    from tests.droptune.reporting.conftest import make_run

    folder = make_run(tmp_path)
    (folder / "status.json").unlink()
    page = to_html(summarize(load_run(str(folder))), {})
    assert "unknown" not in page.split("<h2>")[0]
    assert "state as of evaluation" in page
