"""What `droptune local run` does around the stack: put a file into the local uploads
bucket with what goes beside it (`companions_of`, `upload`), follow its run through
status.json (`follow`), and summarize how it ended (`summarize`).

The trainer writes the run's report when its evaluation ends, from the files it has then:
before deployment, and from a copy of the run folder without status.json, so its header
could only say "state unknown". `summarize` renders it again from the ended run's files
(`refresh_report`): the report it points to shows the final state and how to call the model.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from droptune.config import RunConfig, merge_settings, read_settings, relative_holdout
from droptune.errors import ConfigError
from droptune.local.home import UNDELIVERED, StackError, StackState
from droptune.runs import ENDED, STATE_STYLE, run_id_for

PROGRESS_EVERY = 10.0  # seconds between training progress lines when not on a terminal


def companions_of(file: Path, config: Path | None) -> list[tuple[Path, str]]:
    """What goes into the uploads bucket beside FILE, as a user would put it there: the
    settings (`config` as the sidecar), the folder's `droptune.yaml`, and a relative
    `validation_file`; each (local path, name beside the data file). Their settings are
    checked together now, as the upload function merges them (the sidecar's values first)."""
    from droptune.intake.event import FOLDER_CONFIG

    stem = file.name.rsplit(".", 1)[0]
    settings = [(config, f"{stem}.droptune.yaml")] if config is not None else []
    if (folder_config := file.with_name(FOLDER_CONFIG)).is_file():
        settings.append((folder_config, FOLDER_CONFIG))
    merged, _ = merge_settings((str(path), read_settings(path)) for path, _ in settings)
    RunConfig.from_mapping(merged, source=" and ".join(str(path) for path, _ in settings))
    companions = list(settings)
    given = merged.get("validation_file")
    holdout = relative_holdout(str(given)) if given else None  # None: a gs:// URI
    if holdout is not None:
        if not any(part.startswith("_") for part in holdout.split("/")[:-1]):
            raise ConfigError(
                f"validation_file {holdout!r}: put it in a folder whose name starts with _ "
                "(e.g. _holdout/val.jsonl); beside the data file it would start a run of its own"
            )
        if not (file.parent / holdout).is_file():
            raise ConfigError(
                f"validation_file {holdout!r}: no such file beside {file} ({file.parent / holdout})"
            )
        companions.append((file.parent / holdout, holdout))
    return companions


@dataclass(frozen=True)
class Uploaded:
    run_id: str
    uri: str  # gs://uploads/local/<time>/<file name>
    generation: int


def upload(
    state: StackState, file: Path, backend: str | None, companions: list[tuple[Path, str]]
) -> Uploaded:
    """Drop the file, after what goes beside it (`companions_of`), into the uploads bucket."""
    from droptune.cloud import gcs

    bucket = gcs.client().bucket(state.uploads_bucket)
    folder = datetime.now(UTC).strftime("local/%Y%m%dT%H%M%S%fZ")  # each upload its own settings
    for path, name in companions:
        bucket.blob(f"{folder}/{name}").upload_from_filename(str(path))
    blob = bucket.blob(f"{folder}/{file.name}")
    if backend is not None:
        blob.metadata = {"droptune-backend": backend}
    blob.upload_from_filename(str(file))
    run_id = run_id_for(state.uploads_bucket, blob.name, blob.generation)
    return Uploaded(run_id, f"gs://{state.uploads_bucket}/{blob.name}", blob.generation)


class Unfollowed(StackError):
    """The run could not be followed to its end; `last` is the state it was last seen in."""

    def __init__(self, message: str, last: str | None) -> None:
        super().__init__(message)
        self.last = last


def follow(
    state: StackState, home: Path, uploaded: Uploaded, timeout: float, console: Console
) -> dict[str, Any]:
    """Print each state as status.json reaches it, with training progress; the last status.
    Unfollowed when the stack stops, the upload function gives up on the file, or time is up."""
    from droptune.cloud import gcs

    run_id = uploaded.run_id
    uri = f"gs://{state.runs_bucket}/runs/{run_id}/status.json"
    started, seen, body = time.monotonic(), 0, None
    said, said_at = None, -PROGRESS_EVERY  # the last progress line printed off a terminal
    with console.status("waiting for the upload function") as spinner:
        while time.monotonic() - started < timeout:
            last = body and body["state"]
            if not state.alive():
                raise Unfollowed(
                    f"the local stack stopped while run {run_id} was {last or 'starting'}; "
                    f"see {home / 'stack.log'}",
                    last,
                )
            if body is None and (given_up := undelivered(home, uploaded)):
                raise Unfollowed(
                    f"the upload function failed on {uploaded.uri} {given_up['attempts']} "
                    f"times and was not called again (last: {given_up['error']}); see "
                    f"{home / 'function.log'}",
                    None,
                )
            found = gcs.read_bytes(uri)
            elapsed = time.monotonic() - started
            if found is not None:
                body = json.loads(found[0])
                for entry in body["history"][seen:]:
                    console.print(
                        f"{elapsed:6.1f}s  {state_text(entry['state'])}  {escape(entry['detail'])}",
                        soft_wrap=True,
                    )
                seen = len(body["history"])
                if body["state"] in ENDED:
                    return body
                progress = (
                    training_progress(state, home, run_id) if body["state"] == "TRAINING" else None
                )
                spinner.update(Text(progress or body["state"].lower()))  # log text: no markup
                # Off a terminal (a pipe, a CI log) the spinner shows nothing: print it instead.
                quiet = console.is_terminal or elapsed - said_at < PROGRESS_EVERY
                if not quiet and progress not in (None, said):
                    console.print(f"{elapsed:6.1f}s  {progress}", soft_wrap=True, markup=False)
                    said, said_at = progress, elapsed
            time.sleep(0.5)
    last = body and body["state"]
    raise Unfollowed(
        f"run {run_id} did not end in {timeout / 60:.0f} min; it is still {last or 'waiting'} "
        f"(`{program()} local status` follows it; the stack keeps running)",
        last,
    )


def undelivered(home: Path, uploaded: Uploaded) -> dict[str, Any] | None:
    """The stack's record of giving up on this upload's notification, if it did."""
    try:
        lines = (home / UNDELIVERED).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # being written
            continue
        if entry["object"] == uploaded.uri and entry["generation"] == str(uploaded.generation):
            return entry
    return None


def training_progress(state: StackState, home: Path, run_id: str) -> str | None:
    """The training or tuning job's latest log message, found as in the cloud: by its run_id
    label."""
    from droptune.local.vertex.jobs import job_log
    from droptune.local.vertex.tuning import tuning_log

    parent = f"{state.vertex}/v1/projects/{state.project}/locations/{state.location}"
    for collection, log_of in (("customJobs", job_log), ("tuningJobs", tuning_log)):
        try:
            response = requests.get(
                f"{parent}/{collection}", params={"filter": f"labels.run_id={run_id}"}, timeout=5
            )
            jobs = response.json().get(collection, [])
        except (requests.RequestException, ValueError):
            return None
        if jobs:
            return last_message(log_of(home / "vertex", jobs[0]["name"].rsplit("/", 1)[1]))
    return None


def last_message(log_file: Path) -> str | None:
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            message = json.loads(line)["message"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(message, str):  # the trainer's progress lines say "training: ..." already
            message = message[:100]
            return message if message.startswith("training") else f"training: {message}"
    return None


def refresh_report(run_dir: Path, console: Console) -> None:
    """Render the report of the ended run in `run_dir` again, when it has one: the copy the
    trainer wrote predates the run's end (see the module's docstring)."""
    from droptune.reporting import render_run

    if not (run_dir / "evaluation" / "report.html").is_file():
        return
    try:
        render_run(str(run_dir))
    except Exception as exc:  # the trainer's copy stays; the run's outcome does not change
        console.print(
            f"[yellow]the report could not be brought up to date:[/] {escape(str(exc))}",
            soft_wrap=True,
        )


def summarize(run_dir: Path, status: dict[str, Any], console: Console) -> None:
    refresh_report(run_dir, console)
    console.print(
        f"\n{state_text(status['state'])}  {escape(status.get('detail', ''))}", soft_wrap=True
    )
    if error := status.get("error"):
        said = escape(f"{where(error)}{error.get('message', error)}")
        console.print(f"[red]error:[/] {said}", soft_wrap=True)
    metrics_file = run_dir / "evaluation" / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        table = Table("metric", "baseline", "tuned", "delta", "95% interval", box=None)
        for name, tuned in metrics["tuned"].items():
            low_high = metrics.get("ci95", {}).get(name)
            interval = f"[{low_high[0]:+.3f}, {low_high[1]:+.3f}]" if low_high else ""
            table.add_row(
                name,
                f"{metrics['baseline'][name]:.3f}",
                f"{tuned:.3f}",
                f"{metrics['delta'][name]:+.3f}",
                interval,
            )
        console.print(f"\nevaluation on {metrics['n']} test examples")
        console.print(table)
        if metrics.get("emulated"):
            console.print(
                "[yellow]emulated:[/] no Gemini model was tuned; a small open model tuned on "
                "this machine stood in for it (the cloud runs the real service)"
            )
    console.print(f"\nrun folder: {run_dir}", markup=False)
    for name in (
        "evaluation/report.html",
        "validation/report.md",
        "evaluation/predictions.csv",
        "training/loss.png",
    ):
        if (run_dir / name).is_file():
            console.print(f"  {name}")
    card_file = run_dir / "endpoint.json"
    if card_file.is_file():
        card = json.loads(card_file.read_text())
        body = json.dumps(card["request_example"])
        console.print("\ncall the tuned model:")
        command = f'{program()} runs ask {run_dir.name} "Hello"'
        console.print(f"  {command}", soft_wrap=True, markup=False)
        console.print(
            f"  curl -X POST {card['predict_url']} -H 'Content-Type: application/json' -d '{body}'",
            soft_wrap=True,
            markup=False,
        )


def where(error: dict[str, Any]) -> str:
    """`line 2, $.messages[0].role: ` for an error that says where it is, else nothing."""
    parts = [f"line {error['line']}" if error.get("line") else "", error.get("path") or ""]
    located = ", ".join(p for p in parts if p)
    return f"{located}: " if located else ""


def program() -> str:
    """The droptune command for commands to copy: `droptune` where that is on PATH, else the
    path it was run by (`.venv/bin/droptune`)."""
    typed = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "droptune" else ""
    on_path = shutil.which("droptune")
    if not typed or (on_path and Path(on_path).resolve() == Path(typed).resolve()):
        return "droptune"
    return os.path.relpath(typed)


def state_text(state: str) -> str:
    style = STATE_STYLE.get(state, "cyan")
    return f"[{style}]{state}[/]"
