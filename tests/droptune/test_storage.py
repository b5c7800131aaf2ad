"""Opening sources by URI: local paths, stdin/stdout, and the errors for what cannot be read."""

from __future__ import annotations

import pytest

from droptune import pipeline
from droptune.config import RunConfig
from droptune.errors import SourceError
from droptune.storage import is_gcs, join, open_input, open_output


def test_open_input_gives_size(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"12345")
    stream, size = open_input(str(path))
    with stream:
        assert (stream.read(), size) == (b"12345", 5)


@pytest.mark.parametrize(
    ("name", "words"), [("missing.jsonl", "no such file"), (".", "is a directory")]
)
def test_unreadable_sources(tmp_path, name: str, words: str) -> None:
    with pytest.raises(SourceError, match=words):
        open_input(str(tmp_path / name))
    with pytest.raises(SourceError, match=words):
        pipeline.validate(str(tmp_path / name), RunConfig())


def test_open_output_creates_folders(tmp_path) -> None:
    target = tmp_path / "a" / "b" / "out.jsonl"
    with open_output(str(target)) as out:
        out.write(b"x")
    assert target.read_bytes() == b"x"


def test_join_and_is_gcs() -> None:
    assert join("gs://bucket/runs/", "r1", "data") == "gs://bucket/runs/r1/data"
    assert join("/tmp/run", "validation", "report.json") == "/tmp/run/validation/report.json"
    assert is_gcs("gs://b/o") and not is_gcs("/gs://")


def test_read_all_of_an_object_is_its_content_or_said_missing(gcs_bucket) -> None:
    import pytest

    from droptune.errors import SourceNotFound
    from droptune.storage import read_all

    gcs_bucket.blob("runs/r/status.json").upload_from_string(b'{"state": "QUEUED"}')
    assert read_all(f"gs://{gcs_bucket.name}/runs/r/status.json") == b'{"state": "QUEUED"}'
    with pytest.raises(SourceNotFound, match="no such object"):
        read_all(f"gs://{gcs_bucket.name}/runs/r/metrics.json")
