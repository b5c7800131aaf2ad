"""Streaming reads and writes through google-cloud-storage against fake-gcs-server."""

from __future__ import annotations

import orjson
import pytest

from droptune import pipeline
from droptune.cloud.gcs import download_prefix, list_folders, split_uri
from droptune.config import RunConfig
from droptune.errors import SourceError
from droptune.tokens import EstimateCounter


def chat_lines(n: int) -> bytes:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i} " + "x" * 300},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(n)
    ]
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_validate_reads_gs_uri_in_chunks(gcs_bucket, monkeypatch):
    monkeypatch.setattr("droptune.cloud.gcs.CHUNK", 256 << 10)  # several chunks for this object
    data = chat_lines(5000)
    gcs_bucket.blob("in/data.jsonl").upload_from_string(data)
    report = pipeline.validate(
        f"gs://{gcs_bucket.name}/in/data.jsonl", RunConfig(), counter=EstimateCounter()
    )
    assert report.valid, report.issues
    assert report.counts["valid"] == 5000
    assert report.bytes == len(data)


def test_prepare_writes_run_folder_to_gcs(gcs_bucket):
    gcs_bucket.blob("up/d.jsonl").upload_from_string(chat_lines(50))
    run = f"gs://{gcs_bucket.name}/runs/r1"
    report = pipeline.prepare(
        f"gs://{gcs_bucket.name}/up/d.jsonl",
        RunConfig(backend="gemini"),
        run,
        counter=EstimateCounter(),
    )
    assert report.valid
    names = {b.name for b in gcs_bucket.list_blobs(prefix="runs/r1/")}
    assert {
        "runs/r1/data/train.jsonl",
        "runs/r1/data/validation.jsonl",
        "runs/r1/data/test.jsonl",
        "runs/r1/data/gemini/train.jsonl",
        "runs/r1/data/gemini/validation.jsonl",
        "runs/r1/validation/report.json",
        "runs/r1/validation/report.md",
    } <= names
    rows = gcs_bucket.blob("runs/r1/data/train.jsonl").download_as_bytes().splitlines()
    assert len(rows) == report.counts["splits"]["train"]
    # The source object is only read.
    assert gcs_bucket.get_blob("up/d.jsonl").generation is not None


def test_missing_object_is_a_source_error(gcs_bucket):
    with pytest.raises(SourceError, match="no such object"):
        pipeline.validate(f"gs://{gcs_bucket.name}/nope.jsonl", RunConfig())


def test_download_prefix(gcs_bucket, tmp_path):
    gcs_bucket.blob("m/tokenizer.json").upload_from_string(b"{}")
    gcs_bucket.blob("m/sub/a.txt").upload_from_string(b"a")
    download_prefix(f"gs://{gcs_bucket.name}/m", tmp_path)
    assert (tmp_path / "tokenizer.json").read_bytes() == b"{}"
    assert (tmp_path / "sub" / "a.txt").read_bytes() == b"a"
    with pytest.raises(SourceError):
        download_prefix(f"gs://{gcs_bucket.name}/empty", tmp_path)


def test_list_folders_names_the_folders_directly_under_a_prefix(gcs_bucket):
    for name in ("c/step-2/state.pt", "c/step-1/state.pt", "c/step-1/x/y", "c/latest", "cd/z"):
        gcs_bucket.blob(name).upload_from_string(b"x")
    assert list_folders(f"gs://{gcs_bucket.name}/c") == ["step-1", "step-2"]
    assert list_folders(f"gs://{gcs_bucket.name}/c/") == ["step-1", "step-2"]
    assert list_folders(f"gs://{gcs_bucket.name}/none") == []


def test_split_uri_rejects_non_gcs():
    with pytest.raises(SourceError):
        split_uri("s3://bucket/x")
