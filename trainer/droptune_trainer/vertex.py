"""Vertex AI's custom-container contract: where inputs are and where outputs must go.

Vertex sets `AIP_MODEL_DIR`, `AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR` to `gs://`
URIs and mounts Cloud Storage at `/gcs/` (Cloud Storage FUSE). A `gs://bucket/path` is used
through `/gcs/bucket/path` when that mount exists; otherwise files are written to a local
staging folder and uploaded by `Place.publish()`. Local runs use plain paths.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from droptune.errors import SourceNotFound
from droptune.storage import is_gcs, join, open_output

FUSE_ROOT = Path("/gcs")
UPLOAD_CHUNK = 64 << 20  # model files are large: fewer, larger upload requests (memory: 64 MiB)


@dataclass
class Place:
    uri: str
    local: Path
    staged: bool = False  # written locally, uploaded to `uri` by publish()

    def publish(self) -> None:
        if not self.staged:
            return
        for path in sorted(self.local.rglob("*")):
            if path.is_file():
                with (
                    path.open("rb") as src,
                    open_output(
                        join(self.uri, str(path.relative_to(self.local))), UPLOAD_CHUNK
                    ) as dst,
                ):
                    shutil.copyfileobj(src, dst, 8 << 20)


def place(uri: str | None, default: Path) -> Place:
    """Where to write something whose destination is `uri` (None: `default`)."""
    if uri is None:
        return Place(str(default), default)
    if not is_gcs(uri):
        return Place(uri, Path(uri))
    fused = FUSE_ROOT / uri[len("gs://") :]
    if FUSE_ROOT.is_dir():
        return Place(uri, fused)
    return Place(uri, Path(tempfile.mkdtemp(prefix="droptune-out-")), staged=True)


def local_run_dir(run_dir: str) -> Path:
    """The run folder on local disk: as it is, through /gcs/, or downloaded (run.json, data/)."""
    if not is_gcs(run_dir):
        return Path(run_dir)
    fused = FUSE_ROOT / run_dir[len("gs://") :]
    if FUSE_ROOT.is_dir() and fused.is_dir():
        return fused
    from droptune.cloud.gcs import download_prefix
    from droptune.storage import open_input

    target = Path(tempfile.mkdtemp(prefix="droptune-run-"))
    download_prefix(join(run_dir, "data"), target / "data")
    # run.json: the settings; the validation report: the label set that accuracy is scored on
    for name in ("run.json", "validation/report.json"):
        try:
            stream, _ = open_input(join(run_dir, name))
        except SourceNotFound:
            continue
        with stream, open_output(str(target / name)) as out:
            shutil.copyfileobj(stream, out)
    return target


def publish_results(run_dir: str, local: Path, *folders: str) -> None:
    """Upload `local/<folder>` into the run folder `run_dir` when `local` is a downloaded copy
    of a `gs://` run (through /gcs/ or for local runs they are written in place)."""
    if not is_gcs(run_dir) or local.is_relative_to(FUSE_ROOT):
        return
    for folder in folders:
        if (local / folder).is_dir():
            Place(join(run_dir, folder), local / folder, staged=True).publish()


def env_uri(name: str) -> str | None:
    return os.environ.get(name) or None
