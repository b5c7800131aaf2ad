"""Cloud Storage through `google-cloud-storage`: chunked streaming reads and writes.

`STORAGE_EMULATOR_HOST` points the client at a local emulator (fake-gcs-server) in local mode
and in tests; nothing here knows the difference.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import IO

from google.api_core import exceptions as gexc
from google.cloud import storage

from droptune.errors import SourceError

CHUNK = 8 << 20  # reads and resumable uploads in 8 MiB chunks


@cache
def client() -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "droptune-local")
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client()


def split_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b").

    >>> split_uri("gs://bucket/a/b.jsonl")
    ('bucket', 'a/b.jsonl')
    """
    if not uri.startswith("gs://"):
        raise SourceError(f"{uri}: not a gs:// URI")
    bucket, _, name = uri[5:].partition("/")
    if not bucket:
        raise SourceError(f"{uri}: no bucket name")
    return bucket, name


def open_blob_reader(uri: str) -> tuple[IO[bytes], int | None]:
    bucket_name, name = split_uri(uri)
    bucket = client().bucket(bucket_name)
    try:
        blob = bucket.get_blob(name)
    except gexc.GoogleAPIError as exc:
        raise SourceError(f"{uri}: {exc}") from None
    if blob is None:
        raise SourceError(f"{uri}: no such object")
    # Pin the generation so a concurrent overwrite cannot mix two versions into one read.
    pinned = bucket.blob(name, generation=blob.generation)
    return pinned.open("rb", chunk_size=CHUNK), blob.size


def open_blob_writer(uri: str) -> IO[bytes]:
    bucket, name = split_uri(uri)
    blob = client().bucket(bucket).blob(name)
    return blob.open("wb", chunk_size=CHUNK, ignore_flush=True)


def download_prefix(uri: str, target: Path) -> None:
    """Copy every object under a gs:// folder into `target` (skipped when already there)."""
    bucket, prefix = split_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found = False
    for blob in client().list_blobs(bucket, prefix=prefix):
        found = True
        relative = blob.name[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue
        path = target / relative
        if path.exists() and path.stat().st_size == blob.size:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(path))
    if not found:
        raise SourceError(f"{uri}: no objects under this prefix")
