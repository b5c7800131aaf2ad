"""What a training run reports: a progress line at least every 15 seconds and TensorBoard
scalars while it runs, then `training/metrics.json` and the loss curve `training/loss.png`,
and the run's evaluation report (`evaluation/report.html`, drawn by the core from whatever
the run folder holds)."""

from __future__ import annotations

import contextvars
import math
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import torch

from droptune.log import get_logger

if TYPE_CHECKING:
    from droptune_trainer.train import History, Setup


log = get_logger("droptune.trainer")
PROGRESS_EVERY = 15.0  # seconds between progress lines, at most


@dataclass
class Progress:
    """Where training is, told as a structured log line (`event: progress`) at most `every`
    seconds apart, however long a step takes: `heartbeat` writes it from a thread while the
    loop records each micro-batch with `advance`. The line's fields are `phase` (training,
    validating, evaluating), `step` and `steps`, `tokens_per_second`, `loss` (the last
    step's), `elapsed_s` and `eta_s`; Cloud Logging and `droptune local run` show them.

    >>> now = [0.0]
    >>> p = Progress(steps=10, tokens=1000, clock=lambda: now[0])
    >>> p.advance(step=1, tokens=100, loss=2.5)
    >>> now[0] = 20.0
    >>> facts = p.fields()
    >>> facts["tokens_per_second"], facts["eta_s"], p.due()
    (5.0, 180.0, True)
    """

    steps: int
    tokens: int  # the run's training tokens, for the ETA
    every: float = PROGRESS_EVERY
    clock: Callable[[], float] = time.monotonic
    phase: str = "training"
    step: int = 0
    done_tokens: int = 0
    loss: float | None = None
    started: float = field(default=math.nan)
    last_line: float = field(default=math.nan)
    first_tokens: int = 0  # tokens done before this process began (a resumed run)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if math.isnan(self.started):
            self.started = self.clock()
        self.last_line = self.started

    def resume(self, step: int, tokens: int) -> None:
        with self.lock:
            self.step, self.done_tokens, self.first_tokens = step, tokens, tokens

    def advance(self, step: int, tokens: int, loss: float | None = None) -> None:
        """`tokens` more trained; `step` optimizer steps done; the step's loss once it ends."""
        with self.lock:
            self.step, self.done_tokens = step, self.done_tokens + tokens
            self.loss = self.loss if loss is None else loss

    def enter(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    def fields(self) -> dict[str, Any]:
        with self.lock:
            elapsed = self.clock() - self.started
            trained = self.done_tokens - self.first_tokens
            rate = trained / elapsed if elapsed > 0 else 0.0
            left = max(0, self.tokens - self.done_tokens)
            eta = left / rate if rate > 0 else None
            return {
                "event": "progress",
                "phase": self.phase,
                "step": self.step,
                "steps": self.steps,
                "tokens_per_second": round(rate, 1),
                "loss": None if self.loss is None else round(self.loss, 4),
                "elapsed_s": round(elapsed, 1),
                "eta_s": None if eta is None or self.phase == "evaluating" else round(eta, 1),
            }

    def due(self) -> bool:
        return self.clock() - self.last_line >= self.every

    def emit(self) -> None:
        facts = self.fields()
        self.last_line = self.clock()
        log.info(progress_message(facts), **facts)

    def tick(self) -> None:
        """A line if `every` seconds have passed since the last one."""
        if self.due():
            self.emit()


def progress_message(facts: dict[str, Any]) -> str:
    """
    >>> progress_message({"phase": "training", "step": 12, "steps": 100, "loss": 0.41,
    ...     "tokens_per_second": 310.2, "elapsed_s": 130, "eta_s": 570})
    'training: step 12/100, loss 0.410, 310 tokens/s, 2m10s elapsed, about 9m30s left'
    """
    if facts["phase"] == "evaluating":
        return f"evaluating base and tuned models on the test split, {duration(facts['elapsed_s'])} elapsed"
    parts = [f"{facts['phase']}: step {facts['step']}/{facts['steps']}"]
    if facts.get("loss") is not None:
        parts.append(f"loss {facts['loss']:.3f}")
    if facts["phase"] == "training" and facts.get("tokens_per_second"):
        parts.append(f"{facts['tokens_per_second']:.0f} tokens/s")
    parts.append(f"{duration(facts['elapsed_s'])} elapsed")
    if facts.get("eta_s") is not None:
        parts.append(f"about {duration(facts['eta_s'])} left")
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """
    >>> duration(5), duration(130), duration(3725)
    ('5s', '2m10s', '1h02m')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def beats(progress: Progress, wait: Callable[[float], bool]) -> None:
    """Progress lines `every` seconds apart until `wait(seconds)`, which sleeps, says stop."""
    while not wait(max(0.05, progress.every - (progress.clock() - progress.last_line))):
        progress.tick()


@contextmanager
def heartbeat(progress: Progress | None) -> Iterator[None]:
    """`progress` logs from a thread while the block runs: a line once its `every` seconds
    have passed since the last, even in the middle of a long step. None: nothing."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    context = contextvars.copy_context()  # the lines carry the run's labels (log.labelled)
    thread = threading.Thread(
        target=context.run,
        args=(beats, progress, stop.wait),
        name="droptune-progress",
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
        # each setting sized to the data: {"epochs": {"value", "why", "auto"}, ...}
        "chosen": s.plan.to_dict() if s.plan else {},
        "planned_steps": s.plan.steps if s.plan else None,
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
