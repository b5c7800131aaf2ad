"""Cloud Storage through `google-cloud-storage`: streaming reads and writes, and the small
conditional writes that claim runs and update their status.

`STORAGE_EMULATOR_HOST` points the client at a local emulator (fake-gcs-server) in local mode
and in tests; nothing here knows the difference. A URI may pin an object generation the way
`gcloud storage` writes it: `gs://bucket/name#1700000000000000`.

Every call retries 429, 5xx and connection errors with exponential backoff (`RETRY`). Plain
uploads are retried too: droptune only ever rewrites an object with the same content, so a
repeated write is harmless. Conditional writes report a lost race as `PreconditionFailed`.
"""

from __future__ import annotations

import mimetypes
import os
import re
from functools import cache
from pathlib import Path
from typing import IO

from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from droptune.errors import PreconditionFailed, SourceError, SourceNotFound

CHUNK = 8 << 20  # reads and resumable uploads in 8 MiB chunks
RETRY = DEFAULT_RETRY  # 429/5xx/connection errors, backoff 1 s doubling to 60 s, 120 s in all
TIMEOUT = 60.0  # seconds for one HTTP request
_GENERATION = re.compile(r"#(\d+)$")


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


def object_uri(bucket: str, name: str, generation: int | None = None) -> str:
    """The gs:// URI of an object, pinned to `generation` when given.

    >>> object_uri("b", "in/d.jsonl", 17)
    'gs://b/in/d.jsonl#17'
    """
    return f"gs://{bucket}/{name}" + (f"#{generation}" if generation is not None else "")


def _blob(uri: str) -> storage.Blob:
    bucket, name = split_uri(uri)
    generation = None
    if match := _GENERATION.search(name):
        name, generation = name[: match.start()], int(match.group(1))
    return client().bucket(bucket).blob(name, generation=generation)


def _current(uri: str) -> storage.Blob:
    """The object's metadata as it is now (a generation in the URI: that generation's)."""
    blob = _blob(uri)
    try:
        blob.reload(retry=RETRY, timeout=TIMEOUT)
    except gexc.NotFound:
        what = "generation of the object" if blob.generation else "object"
        raise SourceNotFound(f"{uri}: no such {what}") from None
    except gexc.GoogleAPIError as exc:
        raise SourceError(f"{uri}: {exc}") from None
    return blob


def pin(uri: str) -> tuple[str, int | None]:
    """The URI pinned to the object's current generation, and its size, without reading it:
    whoever later opens the pinned URI reads exactly what was looked at here, or nothing."""
    blob = _current(uri)
    return object_uri(blob.bucket.name, blob.name, blob.generation), blob.size


def open_blob_reader(uri: str) -> tuple[IO[bytes], int | None]:
    blob = _current(uri)
    # Pin the generation so a concurrent overwrite cannot mix two versions into one read.
    pinned = blob.bucket.blob(blob.name, generation=blob.generation)
    return pinned.open("rb", chunk_size=CHUNK, retry=RETRY), blob.size


def open_blob_writer(uri: str, chunk_size: int = CHUNK) -> IO[bytes]:
    """A stream into a new object; its content type follows the name (`.json`: JSON), so
    readers such as Workflows' storage connector decode it. Each chunk is held in memory:
    large files go faster with larger chunks where memory allows."""
    content_type = mimetypes.guess_type(uri)[0] or "application/octet-stream"
    return _blob(uri).open(
        "wb", chunk_size=chunk_size, ignore_flush=True, retry=RETRY, content_type=content_type
    )


def read_whole(uri: str) -> bytes:
    """An object's content in one request (one version: a GET serves one generation)."""
    try:
        found = read_bytes(uri)
    except gexc.GoogleAPIError as exc:
        raise SourceError(f"{uri}: {exc}") from None
    if found is None:
        raise SourceNotFound(f"{uri}: no such object")
    return found[0]


def read_bytes(uri: str) -> tuple[bytes, int] | None:
    """(content, generation) of an object, or None when there is none."""
    blob = _blob(uri)
    try:
        data = blob.download_as_bytes(retry=RETRY, timeout=TIMEOUT)
    except gexc.NotFound:
        return None
    return data, int(blob.generation)


def write_bytes(
    uri: str,
    data: bytes,
    content_type: str = "application/json",
    if_generation_match: int | None = None,
) -> int:
    """Write an object; with `if_generation_match` only if its generation is still that one
    (0: only if it does not exist yet). Returns the new generation."""
    blob = _blob(uri)
    try:
        blob.upload_from_string(
            data,
            content_type=content_type,
            if_generation_match=if_generation_match,
            retry=RETRY,
            timeout=TIMEOUT,
        )
    except gexc.PreconditionFailed:
        raise PreconditionFailed(f"{uri}: changed by someone else") from None
    return int(blob.generation)


def delete_prefix(uri: str) -> int:
    """Delete every object under a gs:// folder; how many there were."""
    bucket, prefix = split_uri(uri)
    prefix = prefix.rstrip("/") + "/"
    blobs = list(client().list_blobs(bucket, prefix=prefix, retry=RETRY))
    for blob in blobs:
        blob.delete(retry=RETRY)
    return len(blobs)


def list_folders(uri: str) -> list[str]:
    """Names of the folders directly under a gs:// folder (object name prefixes up to `/`)."""
    bucket, prefix = split_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    pages = client().list_blobs(bucket, prefix=prefix, delimiter="/", retry=RETRY)
    for _ in pages:  # the sub-folders are collected as the pages are read
        pass
    return sorted(p[len(prefix) :].rstrip("/") for p in pages.prefixes)


def download_prefix(uri: str, target: Path) -> None:
    """Copy every object under a gs:// folder into `target` (skipped when already there)."""
    bucket, prefix = split_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found = False
    for blob in client().list_blobs(bucket, prefix=prefix, retry=RETRY):
        found = True
        relative = blob.name[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue
        path = target / relative
        if path.exists() and path.stat().st_size == blob.size:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(path), retry=RETRY)
    if not found:
        raise SourceError(f"{uri}: no objects under this prefix")
