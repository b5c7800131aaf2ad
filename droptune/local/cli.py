"""`droptune local up|down|status|run`: the whole pipeline on this machine.

`up` starts the local stack (droptune.local.stack) as a background process whose ports, logs
and data live under one folder (`DROPTUNE_LOCAL_HOME`, default ~/.droptune/local); `run FILE`
starts it if needed, drops the file into the local uploads bucket exactly as a user would drop
it into the real one, follows the run through status.json, and ends with a summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from droptune.config import BACKENDS, CONFIG_SUFFIXES, RunConfig, one_sidecar, string_keys
from droptune.errors import ConfigError
from droptune.local.home import (
    STACK_MODULE,
    UNDELIVERED,
    StackConfig,
    StackError,
    StackState,
    locked,
)
from droptune.local.processes import stop_recorded
from droptune.runs import ENDED, RunState, run_id_for

app = typer.Typer(help="Run the whole pipeline on this machine.", no_args_is_help=True)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
STATE_STYLE = {"SUCCEEDED": "green", "GATED": "yellow", "REJECTED": "red", "FAILED": "red"}
START_TIMEOUT = 120.0
PROGRESS_EVERY = 10.0  # seconds between training progress lines when not on a terminal


# --- the stack ----------------------------------------------------------------------------
def ensure_up(home: Path) -> StackState:
    """The running stack's state; starts it in the background first when it is not running."""
    with locked(home):
        state = StackState.running(home)
        if state is not None:
            return state
        stop_recorded(home / "processes")  # the services of a stack that was killed
        (home / "state.json").unlink(missing_ok=True)
        return start_stack(home)


def start_stack(home: Path) -> StackState:
    log = (home / "stack.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", STACK_MODULE, str(home)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives this command; `droptune local down` stops it
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = StackState.read(home)
        if state is not None:
            return state
        if process.poll() is not None:
            raise StackError(f"the local stack exited while starting; see {home / 'stack.log'}")
        time.sleep(0.1)
    process.terminate()
    raise StackError(
        f"the local stack did not start in {START_TIMEOUT:.0f} s; see {home / 'stack.log'}"
    )


def services_table(state: StackState, home: Path) -> Table:
    table = Table(box=None, show_header=False)
    rows = [
        ("Cloud Storage", state.storage, f"buckets {state.uploads_bucket}, {state.runs_bucket}"),
        ("Pub/Sub + Eventarc", state.pubsub, "event bus (Publisher gRPC)"),
        ("upload function", state.function, "functions-framework, functions/main.py"),
        ("Vertex AI", state.vertex, "jobs and endpoints as local processes"),
        ("Workflows", "in the stack process", "workflows/pipeline.workflows.yaml"),
        ("data and logs", str(home), f"pid {state.pid}"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def up() -> None:
    """Start the local services (no-op when they run already)."""
    home = StackConfig.default().home
    state = ensure_up(home)
    out.print(services_table(state, home))


@app.command()
def down() -> None:
    """Stop the local services, their training jobs and endpoints."""
    home = StackConfig.default().home
    with locked(home):
        state = StackState.running(home)
        if state is not None:
            stop_stack(state)
        left = stop_recorded(home / "processes")  # a killed stack's services, or a stuck one's
        (home / "state.json").unlink(missing_ok=True)
    said = "the local stack is stopped" if state else "the local stack is not running"
    out.print(said + (f"; stopped {left} process(es) it had left running" if left else ""))


def stop_stack(state: StackState) -> None:
    """SIGTERM, and 30 s later SIGKILL: the stack stops what it started as it ends."""
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while state.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if state.alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGKILL)


@app.command()
def status() -> None:
    """Show the local services and the runs in the local runs bucket."""
    home = StackConfig.default().home
    state = StackState.running(home)
    if state is None:
        out.print("the local stack is not running; start it with: droptune local up")
        raise typer.Exit(1)
    out.print(services_table(state, home))
    state.use()
    from droptune.cloud import gcs

    table = Table(box=None)
    table.add_column("run", no_wrap=True)  # whole: the other commands take it
    table.add_column("state")
    table.add_column("detail")
    for blob in gcs.client().list_blobs(state.runs_bucket, prefix="runs/"):
        if blob.name.count("/") != 2 or not blob.name.endswith("/status.json"):
            continue
        body = json.loads(blob.download_as_bytes())
        table.add_row(blob.name.split("/")[1], _state(body["state"]), body.get("detail", "")[:80])
    out.print(table)


# --- a run --------------------------------------------------------------------------------
@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="A dataset file.", exists=True, dir_okay=False)],
    backend: Annotated[
        str | None, typer.Option("--backend", help=f"One of {', '.join(BACKENDS)}.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Run settings (YAML); default: <stem>.droptune.yaml (or .yml) beside FILE.",
            exists=True,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="End with {run_id, state, run_dir} as JSON on stdout.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Minutes to follow the run.")] = 60,
) -> None:
    """Upload FILE to the local uploads bucket and follow its run to the end.

    Exit 0 when the run SUCCEEDED, 1 when it ended otherwise (REJECTED, GATED, FAILED, ...)
    or could not be followed to its end (the stack stopped, the upload function kept failing).
    """
    if backend is not None and backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")
    stem = file.name.rsplit(".", 1)[0]
    if config is None:
        beside = [file.with_name(stem + suffix) for suffix in CONFIG_SUFFIXES]
        config = one_sidecar([path for path in beside if path.is_file()])
    companions = companions_of(file, config)  # a mistake in them is reported now
    home = StackConfig.default().home
    state = ensure_up(home)
    state.use()
    console = err if as_json else out
    uploaded = upload(state, file, backend, companions)
    run_id, run_dir = uploaded.run_id, home / "runs" / uploaded.run_id
    console.print(f"uploaded {escape(str(file))} -> run [bold]{run_id}[/]", soft_wrap=True)
    try:
        final = follow(state, home, uploaded, timeout * 60, console)
    except Unfollowed as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        if as_json:
            outcome = {"run_id": run_id, "state": exc.last, "run_dir": str(run_dir)}
            sys.stdout.write(json.dumps(outcome | {"error": str(exc)}) + "\n")
        raise typer.Exit(1) from None
    from droptune.cloud import gcs

    gcs.download_prefix(f"gs://{state.runs_bucket}/runs/{run_id}", run_dir)
    summarize(run_dir, final, console)
    if as_json:
        sys.stdout.write(
            json.dumps({"run_id": run_id, "state": final["state"], "run_dir": str(run_dir)}) + "\n"
        )
    raise typer.Exit(0 if final["state"] == RunState.SUCCEEDED else 1)


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
    merged: dict[str, Any] = {}
    for path, _ in settings:
        for key, value in read_settings(path).items():
            merged.setdefault(key.replace("-", "_"), value)
    RunConfig.from_mapping(merged, source=" and ".join(str(path) for path, _ in settings))
    companions = list(settings)
    holdout = str(merged.get("validation_file") or "")
    # A gs:// URI is read where it is; the upload function refuses other URIs, absolute
    # paths and `..`, and says so.
    parts = holdout.split("/")
    if holdout and "://" not in holdout and not holdout.startswith("/") and ".." not in parts:
        if not any(part.startswith("_") for part in parts[:-1]):
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


def read_settings(path: Path) -> dict[str, Any]:
    """The keys and values a settings file sets itself."""
    import yaml

    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return string_keys(values)


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
                        f"{elapsed:6.1f}s  {_state(entry['state'])}  {escape(entry['detail'])}",
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
            return "training: " + json.loads(line)["message"][:100]
        except (ValueError, KeyError, TypeError):
            continue
    return None


def summarize(run_dir: Path, status: dict[str, Any], console: Console) -> None:
    console.print(
        f"\n{_state(status['state'])}  {escape(status.get('detail', ''))}", soft_wrap=True
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


def _state(state: str) -> str:
    style = STATE_STYLE.get(state, "cyan")
    return f"[{style}]{state}[/]"
