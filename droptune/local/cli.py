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
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from droptune.config import BACKENDS, CONFIG_SUFFIXES, one_sidecar
from droptune.local.home import STACK_MODULE, StackConfig, StackError, StackState, locked
from droptune.local.processes import stop_recorded
from droptune.local.run import (
    Unfollowed,
    companions_of,
    follow,
    state_text,
    summarize,
    upload,
)
from droptune.runs import RunState

app = typer.Typer(help="Run the whole pipeline on this machine.", no_args_is_help=True)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
START_TIMEOUT = 120.0


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
def status(
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object on stdout: the services and the runs."),
    ] = False,
) -> None:
    """Show the local services and the runs in the local runs bucket."""
    home = StackConfig.default().home
    state = StackState.running(home)
    if state is None:
        if as_json:
            sys.stdout.write(json.dumps({"running": False}) + "\n")
            raise typer.Exit(1)
        out.print("the local stack is not running; start it with: droptune local up")
        raise typer.Exit(1)
    state.use()
    runs = list(_runs(state))
    if as_json:
        described = {
            "running": True,
            "uploads_bucket": state.uploads_bucket,
            "runs_bucket": state.runs_bucket,
            "storage": state.storage,
            "pubsub": state.pubsub,
            "vertex": state.vertex,
            "function": state.function,
            "project": state.project,
            "location": state.location,
            "home": str(home),
            "runs": [{"run_id": run_id, "state": body.get("state")} for run_id, body in runs],
        }
        sys.stdout.write(json.dumps(described, indent=2) + "\n")
        return
    out.print(services_table(state, home))
    table = Table(box=None)
    table.add_column("run", no_wrap=True)  # whole: the other commands take it
    table.add_column("state")
    table.add_column("detail")
    for run_id, body in runs:
        table.add_row(run_id, state_text(body["state"]), body.get("detail", "")[:80])
    out.print(table)


def _runs(state: StackState) -> Iterator[tuple[str, dict[str, Any]]]:
    """(run id, status.json) of every run in the local runs bucket."""
    from droptune.cloud import gcs

    for blob in gcs.client().list_blobs(state.runs_bucket, prefix="runs/"):
        if blob.name.count("/") != 2 or not blob.name.endswith("/status.json"):
            continue
        yield blob.name.split("/")[1], json.loads(blob.download_as_bytes())


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
