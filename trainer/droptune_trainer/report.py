"""What a training run reports: TensorBoard scalars while it runs, then
`training/metrics.json` and the loss curve `training/loss.png`, and the run's evaluation
report (`evaluation/report.html`, drawn by the core from whatever the run folder holds)."""

from __future__ import annotations

import math
import resource
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import torch

from droptune.log import get_logger

if TYPE_CHECKING:
    from droptune_trainer.train import History, Setup


log = get_logger("droptune.trainer")


def tensorboard_writer(s: Setup) -> Any:
    if s.tensorboard is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(s.tensorboard.local))


def log_step(writer: Any, history: History, step: int) -> None:
    if writer is None:
        return
    writer.add_scalar("train/loss", history.train_loss[-1][1], step)
    writer.add_scalar("train/learning_rate", history.learning_rate[-1][1], step)
    writer.add_scalar("train/tokens_per_second", history.tokens / max(history.seconds, 1e-9), step)
    if torch.cuda.is_available():
        writer.add_scalar("train/gpu_memory_gb", torch.cuda.max_memory_allocated() / 1e9, step)


def metrics_of(s: Setup, history: History) -> dict[str, Any]:
    return {
        "base_model": s.config.base_model,
        "method": s.config.method,
        "steps": history.train_loss[-1][0] if history.train_loss else 0,
        "train_loss": history.train_loss,
        "eval_loss": history.eval_loss,
        "learning_rate": history.learning_rate,
        "final_train_loss": history.train_loss[-1][1] if history.train_loss else None,
        "best_eval_loss": None if math.isinf(history.best_eval) else history.best_eval,
        "label_tokens": history.label_tokens,
        "tokens": history.tokens,
        "tokens_per_second": history.tokens / max(history.seconds, 1e-9),
        "wall_seconds": history.seconds,
        "peak_memory_mb": history.peak_memory_mb,  # of training, before the evaluation
        "device": s.device.type,
        "dtype": str(s.dtype).removeprefix("torch."),  # what the model computed in
        "master_weights": history.master_weights,
        "processes": s.group.world,  # data-parallel training processes (GPUs, or machines)
        "resumed_from": history.resumed_from,
        "stopped_early": history.stopped_early,
        "config": s.config.to_dict(),
    }


def peak_memory_mb() -> float:
    """Peak GPU memory allocated, or on CPU the process's peak RSS, so far."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plot_losses(history: History, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history.train_loss:
        ax.plot(*zip(*history.train_loss, strict=True), label="training")
    if history.eval_loss:
        ax.plot(*zip(*history.eval_loss, strict=True), marker="o", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per label token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _item(value: Any) -> Any:
    """A NumPy or torch scalar as the Python number it holds."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def write_training_metrics(s: Setup, history: History) -> dict[str, Any]:
    """training/metrics.json and the loss curve, written before the evaluation so that its
    report shows them."""
    metrics = metrics_of(s, history)
    training = s.run_dir / "training"
    training.mkdir(parents=True, exist_ok=True)
    # orjson writes a NaN loss (a diverged run) as null: JSON has no NaN, readers refuse it.
    options = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    (training / "metrics.json").write_bytes(orjson.dumps(metrics, default=_item, option=options))
    plot_losses(history, training / "loss.png")
    return metrics
