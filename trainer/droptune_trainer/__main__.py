"""`python -m droptune_trainer train --run-dir RUN [--config recipe.yaml] [--set key=value ...]`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from droptune.config import parse_pairs
from droptune.errors import DroptuneError

app = typer.Typer(
    help="droptune's trainer (Vertex AI custom container).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    """Fine-tune the run's base model on its data/; write model, checkpoints and metrics.
    With several GPUs, or machines in CLUSTER_SPEC, it runs data-parallel under torchrun."""
    from droptune_trainer.cluster import relaunch_if_parallel
    from droptune_trainer.train import run

    relaunch_if_parallel(sys.argv[1:])

    recipe = yaml.safe_load(config.read_text()) if config else None
    run(run_dir, recipe, parse_pairs(set_ or [], "--set"))


@app.command()
def evaluate(
    run_dir: Annotated[str, typer.Option("--run-dir", help="Run folder with data/ and model/.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value overrides; repeat for more.")
    ] = None,
) -> None:
    """Compare the base model and the tuned one (model/adapter, or model/merged for full
    tuning) on data/test.jsonl: after training, or again when training's own evaluation
    failed (the tuned model is saved before it)."""
    from droptune.log import labelled
    from droptune_trainer.data import run_id_of
    from droptune_trainer.evaluate import evaluate as compare
    from droptune_trainer.train import (
        base_model,
        base_with_adapter,
        device_and_dtype,
        load_config,
        load_tokenizer,
        tuned_in_full,
    )
    from droptune_trainer.vertex import local_run_dir, publish_results, run_output

    with local_run_dir(run_dir) as local:
        config = load_config(local, None, parse_pairs(set_ or [], "--set"))
        model = run_output("AIP_MODEL_DIR", run_dir, local, "model")
        full = config.method == "full"
        try:
            if not model.fetch("merged" if full else "adapter"):
                raise typer.BadParameter(
                    f"{model.uri}: no {'merged' if full else 'adapter'}/ to evaluate; train first",
                    param_hint="--run-dir",
                )
            with labelled(run_id=run_id_of(local)):  # model loading logs too
                device, dtype = device_and_dtype(config)
                tokenizer = load_tokenizer(config)
                if full:
                    tuned = tuned_in_full(model.local / "merged", device, dtype)
                    baseline = base_model(config, device, dtype)
                else:
                    tuned = base_with_adapter(config, model.local / "adapter", device, dtype)
                    baseline = None
                compare(
                    tuned,
                    tokenizer,
                    local,
                    device,
                    baseline_model=baseline,
                    max_new_tokens=config.eval_max_new_tokens,
                    merge=not full,
                )
                publish_results(run_dir, local, "evaluation")
        finally:
            model.discard()


@app.command()
def serve() -> None:
    """Serve the model at AIP_STORAGE_URI on AIP_HTTP_PORT (Vertex AI's serving contract)."""
    from droptune_trainer.serve import main as serve_main

    serve_main()


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
