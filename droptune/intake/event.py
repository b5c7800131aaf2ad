"""The uploaded object, as a Cloud Storage finalize event describes it, and what to skip.

The event's data is the object resource of the Cloud Storage JSON API (`bucket`, `name`,
`generation`, `size`, `crc32c`, `metadata`, ... with 64-bit numbers as strings), the same for
an Eventarc `google.cloud.storage.object.v1.finalized` CloudEvent and a Pub/Sub storage
notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from droptune.cloud.gcs import object_uri
from droptune.config import CONFIG_SUFFIXES
from droptune.errors import DroptuneError

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
FOLDER_CONFIG = "droptune.yaml"


class EventError(DroptuneError):
    """An event that does not describe a Cloud Storage object."""


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    name: str
    generation: int
    size: int | None = None
    crc32c: str | None = None
    md5_hash: str | None = None
    content_type: str | None = None
    time_created: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_resource(cls, data: Any) -> UploadedObject:
        """Read the object resource of a finalize event.

        >>> UploadedObject.from_resource({"bucket": "up", "name": "a.jsonl", "generation": "7"}).uri
        'gs://up/a.jsonl#7'
        """
        if not isinstance(data, dict):
            raise EventError(
                f"event data must be a Cloud Storage object resource; got {data!r:.80}"
            )
        missing = [key for key in ("bucket", "name", "generation") if not data.get(key)]
        if missing:
            raise EventError(f"event data lacks {', '.join(missing)}: not a Cloud Storage object")
        try:
            generation = int(data["generation"])
            size = int(data["size"]) if data.get("size") is not None else None
        except (TypeError, ValueError):
            raise EventError("event data has a non-numeric generation or size") from None
        metadata = data.get("metadata") or {}
        return cls(
            bucket=data["bucket"],
            name=data["name"],
            generation=generation,
            size=size,
            crc32c=data.get("crc32c"),
            md5_hash=data.get("md5Hash"),
            content_type=data.get("contentType"),
            time_created=data.get("timeCreated"),
            metadata={str(k): str(v) for k, v in metadata.items()},
        )

    @property
    def uri(self) -> str:
        """The object at exactly this generation: a later overwrite is another run."""
        return object_uri(self.bucket, self.name, self.generation)

    @property
    def folder(self) -> str:
        """The object's folder in its bucket, '' at the top, else ending in '/'."""
        head, sep, _ = self.name.rpartition("/")
        return head + sep

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "name": self.name,
            "generation": str(self.generation),
            "uri": self.uri,
            "size": self.size,
            "crc32c": self.crc32c,
            "md5_hash": self.md5_hash,
            "content_type": self.content_type,
            "time_created": self.time_created,
        }


def ignore_reason(obj: UploadedObject, runs_bucket: str, uploads_bucket: str | None) -> str | None:
    """Why this object is not a dataset to tune on, or None when it is one.

    >>> obj = UploadedObject("up", "team/chat.droptune.yaml", 1)
    >>> ignore_reason(obj, "runs", "up")
    'a run configuration file'
    >>> ignore_reason(UploadedObject("up", "_holdout/val.jsonl", 1), "runs", "up")
    "under '_holdout/': folders starting with '_' are not datasets"
    """
    if obj.bucket == runs_bucket:
        return "an object in the runs bucket (droptune's own output)"
    if uploads_bucket and obj.bucket != uploads_bucket:
        return f"not in the uploads bucket {uploads_bucket}"
    if obj.name.endswith("/"):
        return "a folder placeholder"
    lowered = obj.name.lower()
    if lowered.endswith(CONFIG_SUFFIXES) or lowered.rsplit("/", 1)[-1] == FOLDER_CONFIG:
        return "a run configuration file"
    for part in obj.name.split("/")[:-1]:
        if part.startswith("_"):
            return f"under '{part}/': folders starting with '_' are not datasets"
    if not lowered.endswith(DATA_SUFFIXES):
        return f"not a data file (droptune reads {', '.join(DATA_SUFFIXES)})"
    return None
