"""An uploads bucket, a runs bucket and a run topic on the local emulators, as the upload
function sees them in the cloud, with helpers to drop files and read what came out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from google.cloud import storage

from droptune.intake import IntakeSettings, UploadedObject
from droptune.runs import run_id_for
from tests.support.emulators import Topic


@dataclass
class DropZone:
    uploads: storage.Bucket
    runs: storage.Bucket
    topic: Topic
    settings: IntakeSettings
    uploaded: dict[str, tuple[int, str]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "DROPTUNE_UPLOADS_BUCKET": self.uploads.name,
            "DROPTUNE_RUNS_BUCKET": self.runs.name,
            "DROPTUNE_TOPIC": self.topic.path,
            "DROPTUNE_LEASE_SECONDS": str(self.settings.lease_seconds),
        }

    def upload(
        self, name: str, data: bytes | str, metadata: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Write an object; returns its resource, which is what a finalize event carries."""
        blob = self.uploads.blob(name)
        blob.metadata = metadata
        blob.upload_from_string(data.encode() if isinstance(data, str) else data)
        blob.reload()
        self.uploaded[name] = (blob.generation, blob.crc32c)
        return dict(blob._properties)

    def obj(
        self, name: str, data: bytes | str, metadata: dict[str, str] | None = None
    ) -> UploadedObject:
        return UploadedObject.from_resource(self.upload(name, data, metadata))

    def run_id(self, resource: dict[str, Any] | UploadedObject) -> str:
        if isinstance(resource, UploadedObject):
            return run_id_for(resource.bucket, resource.name, resource.generation)
        return run_id_for(resource["bucket"], resource["name"], int(resource["generation"]))

    def read(self, run_id: str, path: str) -> bytes | None:
        blob = self.runs.blob(f"runs/{run_id}/{path}")
        return blob.download_as_bytes() if blob.exists() else None

    def json(self, run_id: str, path: str) -> Any:
        data = self.read(run_id, path)
        return None if data is None else orjson.loads(data)

    def status(self, run_id: str) -> dict[str, Any] | None:
        return self.json(run_id, "status.json")

    def files(self, run_id: str) -> set[str]:
        prefix = f"runs/{run_id}/"
        return {b.name[len(prefix) :] for b in self.runs.list_blobs(prefix=prefix)}

    def all_run_ids(self) -> set[str]:
        return {b.name.split("/")[1] for b in self.runs.list_blobs(prefix="runs/")}

    def assert_uploads_untouched(self) -> None:
        """The uploads bucket holds exactly what the test wrote: same generations, same bytes."""
        now = {b.name: (b.generation, b.crc32c) for b in self.uploads.list_blobs()}
        assert now == self.uploaded, "the uploads bucket was changed"
