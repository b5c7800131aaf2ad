"""`droptune runs list|show|ask|cancel`: what happened to each run, from its folder in the
runs bucket; the answer of its deployed model; stopping its training.

    droptune runs list                       # the local stack's runs, or DROPTUNE_RUNS_BUCKET's
    droptune runs list --bucket my-runs --json
    droptune runs show tickets-1700000000123456-2cae3432 --open
    droptune runs show ~/.droptune/local/runs/tickets-1700000000123456-2cae3432
    droptune runs ask tickets-1700000000123456-2cae3432 "My invoice is wrong"
    droptune runs cancel tickets-1700000000123456-2cae3432

Exit codes: 0 done, 1 the run cannot take the action (ended, nothing deployed), 2 usage
error (no runs bucket found, no such run).
"""

from __future__ import annotations

import os
import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from droptune import actions
from droptune.errors import DroptuneError, SourceError, SourceNotFound
from droptune.reporting import terminal
from droptune.reporting.files import JSON_FILES, RunFiles, load_run
from droptune.reporting.listing import list_runs, run_uri, runs_root
from droptune.reporting.render import REPORT, build_report, render_run
from droptune.reporting.summary import summarize
from droptune.runs import STATE_STYLE
from droptune.storage import is_gcs, join, open_input

app = typer.Typer(
    help="Runs in the runs bucket: their state, metrics and report.", no_args_is_help=True
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
BucketOpt = Annotated[
    str | None,
    typer.Option(
        "--bucket",
        help="Runs bucket (name or gs://name), or a local directory of run folders. "
        "Default: the running local stack's, else DROPTUNE_RUNS_BUCKET.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _print_json(value: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")


@app.command("list")
def list_command(bucket: BucketOpt = None, as_json: JsonOpt = False) -> None:
    """Every run, newest first: state, backend, age and the metric it is judged on."""
    runs = list_runs(runs_root(bucket))
    if as_json:
        _print_json([run.to_dict() for run in runs])
        return
    if not runs:
        out.print("no runs yet")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("run", no_wrap=True, min_width=12)  # whole: `show`, `ask`, `cancel` take it
    for name in ("state", "backend", "age", "headline metric"):
        table.add_column(name)
    for run in runs:
        state = run.state or "–"
        table.add_row(
            run.run_id,
            Text(state, style=STATE_STYLE.get(state, "cyan")),
            run.backend or "–",
            run.age(),
            run.headline or "–",
        )
    out.print(table)


@app.command("show")
def show_command(
    run: Annotated[str, typer.Argument(help="Run id, gs:// run folder, or a local run folder.")],
    bucket: BucketOpt = None,
    open_report: Annotated[
        bool, typer.Option("--open", help="Render the HTML report locally and open it.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """One run: verdict, metrics baseline vs tuned, training, cost, and where the model is."""
    uri = run_uri(run, bucket)
    _use_local_stack(uri)
    files = existing_run(uri)
    summary = summarize(files)
    report = _open(files) if open_report else _existing_report(uri)
    if as_json:
        _print_json(summary.to_dict() | {"report": report})
        return
    terminal.show(out, summary, report)


def existing_run(uri: str, names: tuple[str, ...] = (*JSON_FILES, "predictions")) -> RunFiles:
    """The run folder's files `names`; SourceNotFound (exit 2) when none of them is there
    (a mistyped run id)."""
    files = load_run(uri, names)
    if not files.problems and not any(getattr(files, name) for name in names):
        raise SourceNotFound(f"{uri}: no run here (no run.json, status.json or evaluation)")
    return files


def _refused(exc: Exception) -> typer.Exit:
    """Say why on stderr (a script that keeps the answer gets none of it); exit 1."""
    err.print(Text(str(exc), style="red"), soft_wrap=True)
    return typer.Exit(1)


def _existing_report(uri: str) -> str | None:
    """Where the run's report is, if it has one yet."""
    report = join(uri, REPORT)
    try:
        stream, _ = open_input(report)
    except SourceError:
        return None
    stream.close()
    return report


def _open(files: RunFiles) -> str:
    """Render the report from the run's files as they are now and open it in a browser.

    A local run folder gets its report written in place; a bucket's run is rendered into
    the local cache instead (showing a run does not write to the bucket). Always rendered
    afresh: the copy in the bucket was written when evaluation ended, before deployment.
    """
    if not is_gcs(files.uri):
        path = Path(render_run(files.uri))
    else:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = cache / "droptune" / "reports" / files.run_id / "report.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(build_report(files).html, encoding="utf-8")
    webbrowser.open(path.resolve().as_uri())
    return str(path)


@app.command("ask")
def ask_command(
    run: Annotated[str, typer.Argument(help="Run id, gs:// run folder, or a local run folder.")],
    prompt: Annotated[str, typer.Argument(help="What to ask the run's tuned model.")],
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            help="A system instruction to send first (default: the one the model was tuned "
            "with: the system turn every training example had, else the run's "
            'system_instruction; "" sends none).',
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Longest answer, in tokens.")
    ] = actions.MAX_NEW_TOKENS,
    bucket: BucketOpt = None,
) -> None:
    """Ask the run's deployed model (the endpoint in its endpoint.json); print its answer."""
    uri = run_uri(run, bucket)
    _use_local_stack(uri)
    existing_run(uri, ("run", "status", "endpoint"))
    try:
        print(actions.ask(uri, prompt, system=system, max_new_tokens=max_new_tokens))
    except DroptuneError as exc:  # the run (nothing deployed) or the call to its endpoint
        raise _refused(exc) from None


@app.command("cancel")
def cancel_command(
    run: Annotated[str, typer.Argument(help="Run id, gs:// run folder, or a local run folder.")],
    bucket: BucketOpt = None,
) -> None:
    """Stop the run's training or tuning job; the run then ends CANCELLED, nothing deployed."""
    uri = run_uri(run, bucket)
    _use_local_stack(uri)
    existing_run(uri, ("run", "status"))
    try:
        cancelled = actions.cancel(uri)
    except DroptuneError as exc:  # the run (ended, no job yet) or the call to Vertex AI
        raise _refused(exc) from None
    out.print(
        f"asked Vertex AI to cancel {cancelled.job} (run {cancelled.run_id} was "
        f"{cancelled.state}); the run ends CANCELLED once the job stops"
    )


def _use_local_stack(uri: str) -> None:
    """A run of the running local stack (in its bucket, or copied under its folder) is
    served by the stack's Vertex AI server."""
    from droptune.local.home import StackConfig, StackState

    home = StackConfig.default().home
    state = StackState.running(home)
    if state is None:
        return
    local = not is_gcs(uri) and Path(uri).resolve().is_relative_to(home.resolve())
    if local or uri.startswith(f"gs://{state.runs_bucket}/"):
        state.use()
