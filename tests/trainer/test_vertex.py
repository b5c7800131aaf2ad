"""Where the trainer reads and writes on Vertex AI: through the /gcs/ mount when this process
may use it, staged uploads otherwise.

Tests run as root, which no permission bit stops, so a mount that refuses the image's uid 1000
is played by a `Path.is_dir` that raises as Python 3.12's does there, and by `os.access`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from droptune_trainer import vertex


@pytest.fixture
def mount(tmp_path, monkeypatch) -> Path:
    """A /gcs/ stand-in holding the bucket `runs` with one run folder."""
    root = tmp_path / "gcs"
    (root / "runs" / "runs" / "r1" / "data").mkdir(parents=True)
    monkeypatch.setattr(vertex, "FUSE_ROOT", root)
    return root


def refuse(monkeypatch, root: Path) -> None:
    """Every folder under `root` raises PermissionError on is_dir, as for a non-root user."""
    is_dir = Path.is_dir

    def strict(self: Path, *args, **kwargs) -> bool:
        if self.is_relative_to(root):
            raise PermissionError(13, "Permission denied", str(self))
        return is_dir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "is_dir", strict)


def assert_staged(uri: str, mount: Path) -> None:
    """Outputs for `uri` go to a staging folder off the mount (removed afterwards)."""
    where = vertex.place(uri, Path("/unused"))
    try:
        assert where.staged and not where.local.is_relative_to(mount)
    finally:
        where.discard()


def test_a_usable_mount_is_written_in_place(mount):
    where = vertex.place("gs://runs/runs/r1/model", Path("/unused"))
    assert where == vertex.Place(
        "gs://runs/runs/r1/model", mount / "runs" / "runs" / "r1" / "model"
    )
    assert not where.staged


def test_a_mount_that_raises_permission_error_stages_the_outputs(mount, monkeypatch):
    refuse(monkeypatch, mount)
    assert_staged("gs://runs/runs/r1/model", mount)


def test_a_read_only_mount_stages_the_outputs(mount, monkeypatch):
    access = os.access
    monkeypatch.setattr(
        vertex.os,
        "access",
        lambda path, mode: access(path, mode) and not mode & os.W_OK,
    )
    assert_staged("gs://runs/runs/r1/model", mount)


def test_a_bucket_the_mount_does_not_show_stages_the_outputs(mount):
    assert_staged("gs://elsewhere/model", mount)


def test_the_run_folder_is_read_through_a_usable_mount(mount):
    with vertex.local_run_dir("gs://runs/runs/r1") as folder:
        assert folder == mount / "runs" / "runs" / "r1"


def test_a_refusing_mount_downloads_the_run_folder_instead(mount, monkeypatch):
    refuse(monkeypatch, mount)
    fetched: list[str] = []

    def download_prefix(uri: str, target: Path) -> None:
        fetched.append(uri)
        target.mkdir(parents=True)

    monkeypatch.setattr("droptune.cloud.gcs.download_prefix", download_prefix)
    monkeypatch.setattr(vertex, "open_input", _missing)
    with vertex.local_run_dir("gs://runs/runs/r1") as folder:
        assert not folder.is_relative_to(mount)
        assert (folder / "data").is_dir()
    assert fetched == ["gs://runs/runs/r1/data"]


def _missing(uri: str):
    raise vertex.SourceNotFound(uri)
