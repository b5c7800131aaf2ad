"""`python -m droptune_trainer train --run-dir RUN [--config recipe.yaml] [--set key=value ...]`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from droptune.errors import DroptuneError

app = typer.Typer(
    help="droptune's trainer (Vertex AI custom container).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r}: write key=value", param_hint="--set")
        values[key] = value
    return values


@app.command()
def train(
    run_dir: Annotated[
        str, typer.Option("--run-dir", help="Run folder: local path, /gcs/... or gs://...")
    ],
    config: Annotated[
        Path | None, typer.Option("--config", help="A recipe YAML (TrainConfig keys).", exists=True)
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value overrides; repeat for more.")
    ] = None,
) -> None:
    """Fine-tune the run's base model on its data/; write model, checkpoints and metrics."""
    from droptune_trainer.train import run

    recipe = yaml.safe_load(config.read_text()) if config else None
    run(run_dir, recipe, _overrides(set_ or []))


@app.command("config")
def show_config() -> None:
    """List every training setting with its default and what it does."""
    from droptune_trainer.config import TrainConfig

    for key, default, help_text in TrainConfig.help_table():
        print(f"{key:24} {default:38} {help_text}")


def main() -> None:
    try:
        app()
    except DroptuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
