"""Vertex AI's custom-container contract: where inputs are and where outputs must go.

Vertex sets `AIP_MODEL_DIR`, `AIP_CHECKPOINT_DIR` and `AIP_TENSORBOARD_LOG_DIR` to `gs://`
URIs and mounts Cloud Storage at `/gcs/` (Cloud Storage FUSE). A `gs://bucket/path` is used
through `/gcs/bucket/path` when that mount exists; otherwise files are written to a temporary
staging folder, uploaded by `Place.publish()`, and the folder is removed by `Place.discard()`
when the job is done with it (a merged model is as large as the base model: a staging copy
left behind per run would fill the disk). Local runs use plain paths.

The image runs as uid 1000, not root, so the mount may be there and still refuse it: Python
3.12's `Path.is_dir()` raises `PermissionError` rather than answering False. A mount that
cannot be read (inputs) or written (outputs) counts as absent, and the job stages instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from droptune.errors import SourceError, SourceNotFound
from droptune.storage import is_gcs, join, open_input, open_output

FUSE_ROOT = Path("/gcs")
UPLOAD_CHUNK = 64 << 20  # model files are large: fewer, larger upload requests (memory: 64 MiB)


@dataclass
class Place:
    uri: str
    local: Path
    staged: bool = False  # written locally, uploaded to `uri` by publish()

    def fetch(self, name: str) -> bool:
        """Bring `uri/name` (a file or a folder) into the staging folder; whether it exists.
        Unstaged places are already where `uri` is."""
        if not self.staged:
            return (self.local / name).exists()
        from droptune.cloud.gcs import download_prefix

        target = self.local / name
        try:
            stream, _ = open_input(join(self.uri, name))
        except SourceNotFound:
            try:
                download_prefix(join(self.uri, name), target)
            except SourceError:
                return False
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        with stream, target.open("wb") as out:
            shutil.copyfileobj(stream, out, 8 << 20)
        return True

    def publish(self, *names: str) -> None:
        """Upload the staging folder, or only the files and folders `names` inside it."""
        if not self.staged:
            return
        roots = [self.local / n for n in names] if names else [self.local]
        for root in roots:
            for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
                if path.is_file():
                    with (
                        path.open("rb") as src,
                        open_output(
                            join(self.uri, str(path.relative_to(self.local))), UPLOAD_CHUNK
                        ) as dst,
                    ):
                        shutil.copyfileobj(src, dst, 8 << 20)

    def remove(self, *names: str) -> None:
        """Delete `uri/name` (files or folders) that were published; unstaged places have
        nothing more to delete than their own files."""
        if not self.staged:
            return
        from droptune.cloud.gcs import delete_prefix

        for name in names:
            delete_prefix(join(self.uri, name))

    def published_folders(self) -> list[str]:
        """Names of the folders published at `uri`: for a staged place, those in the bucket
        (earlier attempts of the job may have left some that the staging folder never saw);
        none for unstaged places, whose folders are their own files, as for `remove`."""
        if not self.staged:
            return []
        from droptune.cloud.gcs import list_folders

        return list_folders(self.uri)

    def discard(self) -> None:
        """Remove the staging folder (published or not); plain and /gcs/ places are kept."""
        if self.staged:
            shutil.rmtree(self.local, ignore_errors=True)


def readable_folder(path: Path) -> bool:
    """Whether `path` is a folder this process may list: False, not an error, for a mount
    that refuses this user (PermissionError) or answers with another I/O error."""
    try:
        return path.is_dir() and os.access(path, os.R_OK | os.X_OK)
    except OSError:
        return False


def writable_mount(uri: str) -> bool:
    """Whether `gs://bucket/...` can be written through /gcs/: the bucket's folder there is
    readable and writable by this process."""
    bucket = FUSE_ROOT / uri[len("gs://") :].split("/", 1)[0]
    return readable_folder(bucket) and os.access(bucket, os.W_OK)


def place(uri: str | None, default: Path) -> Place:
    """Where to write something whose destination is `uri` (None: `default`)."""
    if uri is None:
        return Place(str(default), default)
    if not is_gcs(uri):
        return Place(uri, Path(uri))
    if writable_mount(uri):
        return Place(uri, FUSE_ROOT / uri[len("gs://") :])
    return Place(uri, Path(tempfile.mkdtemp(prefix="droptune-out-")), staged=True)


def run_output(env: str, run_dir: str, local: Path, name: str) -> Place:
    """Where an output goes: the `gs://` URI in `$env` when Vertex sets it, else `name` in the
    run folder (`local` is the run folder on disk)."""
    uri = env_uri(env)
    if uri is None and is_gcs(run_dir) and not local.is_relative_to(FUSE_ROOT):
        uri = join(run_dir, name)
    return place(uri, local / name)


@contextmanager
def local_run_dir(run_dir: str) -> Iterator[Path]:
    """The run folder on local disk for the length of the block: as it is, through /gcs/, or
    downloaded (run.json, data/, the validation report) into a folder removed afterwards."""
    if not is_gcs(run_dir):
        yield Path(run_dir)
        return
    fused = FUSE_ROOT / run_dir[len("gs://") :]
    if readable_folder(fused):
        yield fused
        return
    from droptune.cloud.gcs import download_prefix

    with tempfile.TemporaryDirectory(prefix="droptune-run-") as folder:
        target = Path(folder)
        download_prefix(join(run_dir, "data"), target / "data")
        # run.json: the settings; the validation report: the label set accuracy is scored on
        for name in ("run.json", "validation/report.json"):
            try:
                stream, _ = open_input(join(run_dir, name))
            except SourceNotFound:
                continue
            with stream, open_output(str(target / name)) as out:
                shutil.copyfileobj(stream, out)
        yield target


def publish_results(run_dir: str, local: Path, *folders: str) -> None:
    """Upload `local/<folder>` into the run folder `run_dir` when `local` is a downloaded copy
    of a `gs://` run (through /gcs/ or for local runs they are written in place)."""
    if not is_gcs(run_dir) or local.is_relative_to(FUSE_ROOT):
        return
    present = [folder for folder in folders if (local / folder).is_dir()]
    if present:
        Place(run_dir, local, staged=True).publish(*present)


def env_uri(name: str) -> str | None:
    return os.environ.get(name) or None
