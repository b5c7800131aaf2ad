"""`droptune runs list|show` as a user runs them: on a local run folder, in a bucket (the
Cloud Storage emulator), without any bucket, and the `show` output against a snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.droptune.reporting.conftest import make_run, write_json
from tests.support.stack import stand_in_stack

SNAPSHOT = Path(__file__).parent / "snapshots" / "runs_show.txt"
RUN_ID = "tickets-1700000000123456-2cae3432"
INHERITED_NOT = ("FORCE_COLOR", "DROPTUNE_RUNS_BUCKET", "STORAGE_EMULATOR_HOST")


def droptune(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The console script with a fixed terminal (100 columns, no colour) and no stack."""
    environ = {k: v for k, v in os.environ.items() if k not in INHERITED_NOT}
    environ |= {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"} | env
    return subprocess.run(
        [sys.executable, "-m", "droptune", "runs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )


@pytest.fixture
def no_stack(tmp_path: Path) -> dict[str, str]:
    """An environment whose local stack home holds no running stack."""
    return {"DROPTUNE_LOCAL_HOME": str(tmp_path / "no-stack")}


def test_show_matches_the_snapshot(run_folder: Path, no_stack):
    result = droptune("show", str(run_folder), **no_stack)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    if os.environ.get("DROPTUNE_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()


def test_show_json_and_open(run_folder: Path, tmp_path: Path, no_stack):
    result = droptune("show", str(run_folder), "--json", **no_stack)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["verdict"]["kind"] == "passed" and shown["report"] is None
    assert shown["gate"]["metric"] == "accuracy"
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"  # webbrowser runs $BROWSER with the URL
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    result = droptune("show", str(run_folder), "--open", BROWSER=str(browser), **no_stack)
    assert result.returncode == 0, result.stderr
    report = run_folder / "evaluation" / "report.html"
    assert opened.read_text().strip() == report.as_uri()
    assert f"report: {report}" in result.stdout


def test_list_a_local_folder_of_runs_newest_first(tmp_path: Path, no_stack):
    make_run(tmp_path / "runs")
    newer = tmp_path / "runs" / "chat-1800000000000000-0badc0de"
    write_json(
        newer / "run.json",
        {
            "run_id": newer.name,
            "config": {"backend": "gemini"},
            "created_at": "2026-01-01T00:00:00Z",
        },
    )
    write_json(newer / "status.json", {"state": "TRAINING", "detail": "tuning"})
    (tmp_path / "runs" / "not-a-run").mkdir()
    result = droptune("list", "--bucket", str(tmp_path / "runs"), "--json", **no_stack)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [r["run_id"] for r in runs] == [newer.name, RUN_ID]
    assert runs[0]["state"] == "TRAINING" and runs[0]["headline"] is None
    assert runs[1]["headline"] == "accuracy 0.875 (+0.625)"
    table = droptune("list", "--bucket", str(tmp_path / "runs"), **no_stack).stdout
    assert "SUCCEEDED" in table and "accuracy 0.875 (+0.625)" in table


def test_list_and_show_in_a_bucket(gcs_bucket, gcs_server, run_folder: Path, tmp_path, no_stack):
    for path in run_folder.rglob("*"):
        if path.is_file():
            name = f"runs/{RUN_ID}/{path.relative_to(run_folder)}"
            gcs_bucket.blob(name).upload_from_filename(path)
    env = {"STORAGE_EMULATOR_HOST": gcs_server.url, **no_stack}
    listed = droptune("list", "--bucket", gcs_bucket.name, "--json", **env)
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [RUN_ID]
    by_env = droptune("list", "--json", DROPTUNE_RUNS_BUCKET=gcs_bucket.name, **env)
    assert json.loads(by_env.stdout) == json.loads(listed.stdout)
    shown = droptune("show", RUN_ID, "--bucket", f"gs://{gcs_bucket.name}", **env)
    assert shown.returncode == 0, shown.stderr
    assert "Tuned model is better: deployed" in shown.stdout
    assert "report:" not in shown.stdout  # none in the bucket yet
    opened = droptune(
        "show", RUN_ID, "--open", "--bucket", gcs_bucket.name, BROWSER="true",
        XDG_CACHE_HOME=str(tmp_path / "cache"), **env,
    )  # fmt: skip
    cached = tmp_path / "cache" / "droptune" / "reports" / RUN_ID / "report.html"
    assert opened.returncode == 0, opened.stderr
    assert "Tuned model is better" in cached.read_text()
    assert not list(gcs_bucket.list_blobs(prefix=f"runs/{RUN_ID}/evaluation/report"))
    missing = droptune("show", "no-such-run-1-00000000", "--bucket", gcs_bucket.name, **env)
    assert missing.returncode == 2 and "no run here" in missing.stderr


def test_the_running_local_stacks_bucket_is_the_default(
    gcs_bucket, gcs_server, run_folder, tmp_path
):
    for path in run_folder.rglob("*.json"):
        gcs_bucket.blob(f"runs/{RUN_ID}/{path.relative_to(run_folder)}").upload_from_filename(path)
    home = tmp_path / "stack"
    with stand_in_stack() as pid:
        listed = runs_listed_by_the_stack(home, pid, gcs_server, gcs_bucket)
    assert listed == [RUN_ID]


def runs_listed_by_the_stack(home, pid, gcs_server, gcs_bucket) -> list[str]:
    state = {
        "pid": pid,
        "storage": gcs_server.url,
        "pubsub": "127.0.0.1:9",
        "vertex": "http://127.0.0.1:9",
        "function": "http://127.0.0.1:9",
        "project": "droptune-local",
        "location": "local",
        "uploads_bucket": "unused",
        "runs_bucket": gcs_bucket.name,
        "started_at": 0.0,
    }
    write_json(home / "state.json", state)
    result = droptune(
        "list", "--json", DROPTUNE_LOCAL_HOME=str(home), DROPTUNE_RUNS_BUCKET="elsewhere"
    )
    assert result.returncode == 0, result.stderr
    return [r["run_id"] for r in json.loads(result.stdout)]


def test_no_bucket_anywhere_is_a_usage_error_that_says_what_to_do(no_stack):
    result = droptune("list", **no_stack)
    assert result.returncode == 2
    assert "pass --bucket BUCKET, set DROPTUNE_RUNS_BUCKET" in " ".join(result.stderr.split())


def test_show_prints_the_datas_brackets_as_text(tmp_path: Path, no_stack):
    """Inputs and answers are data: "[/x]" is no closing tag, "[bold]" no style."""
    import csv

    folder = make_run(tmp_path)
    predictions = folder / "evaluation" / "predictions.csv"
    with predictions.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["user_input"] = "[/x] [bold]" + row["user_input"]
    with predictions.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json(folder / "status.json", {"state": "FAILED", "error": {"message": "boom [/y]"}})
    result = droptune("show", str(folder), **no_stack)
    assert result.returncode == 0, result.stderr
    assert "[/x] [bold]" in result.stdout and "boom [/y]" in result.stdout


def test_a_bucket_that_is_not_there_is_said_to_be_missing(gcs_bucket, tmp_path):
    from droptune.errors import SourceNotFound
    from droptune.reporting.listing import run_uris, runs_root

    with pytest.raises(SourceNotFound, match="gs://no-such-bucket-7: no such bucket"):
        run_uris(runs_root("no-such-bucket-7"))
    with pytest.raises(SourceNotFound, match="no such folder"):
        runs_root(str(tmp_path / "runs-typo"))
