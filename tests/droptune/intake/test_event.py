"""Reading the finalize event's object resource, and deciding what is not a dataset."""

from __future__ import annotations

import pytest

from droptune.intake import EventError, UploadedObject, ignore_reason


def test_object_resource_numbers_arrive_as_strings() -> None:
    obj = UploadedObject.from_resource(
        {
            "bucket": "up",
            "name": "team/chat.jsonl",
            "generation": "1700000000123456",
            "size": "2048",
            "crc32c": "vLdFiQ==",
            "metadata": {"droptune-backend": "gemini"},
        }
    )
    assert obj.generation == 1700000000123456
    assert obj.size == 2048
    assert obj.folder == "team/"
    assert obj.uri == "gs://up/team/chat.jsonl#1700000000123456"
    assert obj.metadata == {"droptune-backend": "gemini"}


@pytest.mark.parametrize(
    "data",
    [None, "text", {"bucket": "up", "name": "a.jsonl"}, {"bucket": "up", "generation": "1"}],
)
def test_what_is_not_an_object_resource_is_an_event_error(data) -> None:
    with pytest.raises(EventError):
        UploadedObject.from_resource(data)


def test_non_numeric_generation_is_an_event_error() -> None:
    with pytest.raises(EventError, match="non-numeric"):
        UploadedObject.from_resource({"bucket": "up", "name": "a.jsonl", "generation": "x"})


@pytest.mark.parametrize(
    ("bucket", "name", "ignored"),
    [
        ("up", "chat.jsonl", False),
        ("up", "a/b/data.JSON", False),
        ("up", "rows.csv", False),
        ("up", "rows.tsv", False),
        ("up", "folder/", True),
        ("up", "chat.droptune.yaml", True),
        ("up", "team/droptune.yaml", True),
        ("up", "_holdout/val.jsonl", True),
        ("up", "team/_drafts/x.jsonl", True),
        ("up", "notes.txt", True),
        ("up", "data.jsonl.gz", True),
        ("runs", "runs/x/data/train.jsonl", True),
        ("elsewhere", "chat.jsonl", True),
    ],
)
def test_ignore_rules(bucket: str, name: str, ignored: bool) -> None:
    reason = ignore_reason(UploadedObject(bucket, name, 1), "runs", "up")
    assert (reason is not None) == ignored, reason
