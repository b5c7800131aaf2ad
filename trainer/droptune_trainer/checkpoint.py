"""Checkpoints that a killed job can always resume from.

A checkpoint is a folder `step-00000042/` holding `state.pt`: the trainable weights (the
adapter for LoRA), the optimizer and scheduler, the RNG states and the loop's own state. The
file is written under a temporary name and renamed into place (files, not folders: Cloud
Storage FUSE, Vertex AI's `/gcs/` mount, renames files but not folders on a flat bucket), and
`latest` (a one-line file, replaced the same way) names the newest only once it is whole, so a
crash mid-write leaves the previous one in use.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

LATEST = "latest"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    folder: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    optimizer: Any,
    scheduler: Any,
    loop: dict[str, Any],
) -> Path:
    final = folder / f"step-{step:08d}"
    shutil.rmtree(final, ignore_errors=True)  # a crash's half-written one
    final.mkdir(parents=True)
    state = {
        "step": step,
        "model": weights,  # the trainable weights by name (fp32 masters' where there are)
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "loop": loop,
    }
    partial = final / "state.pt.partial"
    torch.save(state, partial)
    partial.replace(final / "state.pt")
    pointer = folder / f".{LATEST}.partial"
    pointer.write_text(final.name + "\n")
    pointer.replace(folder / LATEST)
    return final


def stale(names: list[str], keep: int) -> list[str]:
    """The checkpoint folders among `names` older than the newest `keep`.

    >>> stale(["latest", "step-00000003", "step-00000001", "step-00000002"], 2)
    ['step-00000001']
    """
    return sorted(n for n in names if n.startswith("step-"))[:-keep]


def prune(folder: Path, keep: int) -> None:
    """Remove all but the newest `keep` checkpoints in `folder`."""
    for name in stale([p.name for p in folder.iterdir()], keep):
        shutil.rmtree(folder / name, ignore_errors=True)


def latest_name(folder: Path) -> str | None:
    """The newest checkpoint's folder name, as `latest` names it."""
    pointer = folder / LATEST
    return pointer.read_text().strip() if pointer.is_file() else None


def load_latest(folder: Path) -> dict[str, Any] | None:
    name = latest_name(folder)
    if name is None:
        return None
    path = folder / name / "state.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def restore(state: dict[str, Any], weights: Any, optimizer: Any, scheduler: Any) -> None:
    """A checkpoint's trainable weights into `weights` (`precision.Direct` or `Masters`), and
    the optimizer's, scheduler's and random generators' states."""
    weights.load(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
