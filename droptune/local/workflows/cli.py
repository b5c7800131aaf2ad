"""`droptune workflows run FILE`: execute a Cloud Workflows file on this machine.

Exit codes: 0 with the workflow's result as JSON on stdout; 1 when the workflow ends with an
unhandled error, its error map as JSON on stderr (with `context`: the step, its line, the
routine and the expression); 2 when the file (or `--data`) is invalid, with the line to fix, or
larger than the service takes (limits.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from droptune.config import parse_pairs
from droptune.local.workflows.engine import Engine, Execution, load_workflow
from droptune.local.workflows.errors import WorkflowSyntaxError
from droptune.local.workflows.limits import MAX_ARGUMENT_BYTES
from droptune.local.workflows.stdlib import Runtime, VirtualClock, json_encode_to_string

app = typer.Typer(help="Run Cloud Workflows files locally.", no_args_is_help=True)
err = Console(stderr=True, highlight=False)


def default_env(path: Path) -> dict[str, str]:
    """The variables the service sets for every execution, with local values."""
    return {
        "GOOGLE_CLOUD_PROJECT_ID": "droptune-local",
        "GOOGLE_CLOUD_PROJECT_NUMBER": "0",
        "GOOGLE_CLOUD_LOCATION": "local",
        "GOOGLE_CLOUD_WORKFLOW_ID": path.name.split(".")[0],
        "GOOGLE_CLOUD_WORKFLOW_REVISION_ID": "000001-local",
        "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": "local-execution",
    }


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="A workflow file, YAML or JSON.")],
    data: Annotated[
        str | None, typer.Option("--data", help="The execution argument, as JSON.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="KEY=VALUE for sys.get_env; repeat for more."),
    ] = None,
    virtual_clock: Annotated[
        bool, typer.Option("--virtual-clock", help="sys.sleep and retry waits take no time.")
    ] = False,
    trace: Annotated[bool, typer.Option("--trace", help="Print each step run to stderr.")] = False,
) -> None:
    """Run a workflow's `main` with --data as its argument; print the result as JSON."""
    try:
        workflow = load_workflow(str(file))
    except WorkflowSyntaxError as exc:
        err.print(f"[red]invalid workflow:[/] {exc}", markup=True, soft_wrap=True)
        raise typer.Exit(2) from None
    try:
        argument = json.loads(data) if data is not None else None
    except ValueError as exc:
        err.print(f"[red]--data is not JSON:[/] {exc}")
        raise typer.Exit(2) from None
    if data is not None and len(data.encode("utf-8")) > MAX_ARGUMENT_BYTES:
        # As the Executions API refuses to start it (an event is not bound by this limit).
        err.print(
            f"[red]--data is too large:[/] {len(data.encode('utf-8')):,} bytes; an execution's "
            f"argument has at most {MAX_ARGUMENT_BYTES:,} (32 KB): pass a reference to the data"
        )
        raise typer.Exit(2)
    runtime = Runtime(env={**default_env(file), **parse_pairs(env or [], "--env")}, echo_logs=True)
    if virtual_clock:
        runtime.clock = VirtualClock()
    execution = Engine(workflow, runtime).run(argument)
    if trace:
        _print_trace(execution)
    if execution.state == "SUCCEEDED":
        sys.stdout.write(json_encode_to_string(execution.result, indent=2) + "\n")
        raise typer.Exit(0)
    error = execution.error
    if isinstance(error, dict) and execution.context:
        error = {**error, "context": execution.context}
    elif trace and execution.context:
        err.print(f"[red]unhandled error[/] {execution.context}", soft_wrap=True)
    sys.stderr.write(json_encode_to_string(error, indent=2) + "\n")
    raise typer.Exit(1)


def _print_trace(execution: Execution) -> None:
    table = Table(title=f"{execution.step_count} steps", box=None)
    for column in ("step", "line", "µs", "error"):
        table.add_column(column)
    for record in execution.steps:
        micros = f"{(record.ended - record.started) * 1e6:.0f}"
        failure = json.dumps(record.error, default=str)[:80] if record.error is not None else ""
        table.add_row(record.step, str(record.line or ""), micros, failure)
    err.print(table)
