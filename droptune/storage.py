"""Opening data by URI: a local path, `-` for stdin/stdout, or `gs://bucket/object`.

Cloud Storage access lives in `droptune.cloud.gcs`, imported only when a gs:// URI is used.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from droptune.errors import SourceError, SourceNotFound


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def open_input(uri: str) -> tuple[IO[bytes], int | None]:
    """A binary stream to read and the size in bytes when known."""
    if uri == "-":
        return sys.stdin.buffer, None
    if is_gcs(uri):
        from droptune.cloud.gcs import open_blob_reader

        return open_blob_reader(uri)
    path = Path(uri)
    try:
        return path.open("rb", buffering=1 << 20), path.stat().st_size
    except FileNotFoundError:
        raise SourceNotFound(f"{uri}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{uri}: is a directory, expected a data file") from None
    except OSError as exc:
        raise SourceError(f"{uri}: {exc.strerror}") from None


def read_all(uri: str) -> bytes:
    """The whole content of a file or object (SourceNotFound when there is none)."""
    if is_gcs(uri):
        from droptune.cloud.gcs import read_whole

        return read_whole(uri)  # one request, where a stream reads the metadata first
    stream, _ = open_input(uri)
    with stream:
        return stream.read()


def write_all(uri: str, data: bytes) -> None:
    """Write `data` as the whole content of a file or object."""
    with open_output(uri) as out:
        out.write(data)


def open_output(uri: str, chunk_size: int | None = None) -> IO[bytes]:
    """A binary stream to write; parent folders of local paths are created. `chunk_size`:
    bytes per request of a Cloud Storage upload (memory held), default 8 MiB."""
    if uri == "-":
        return sys.stdout.buffer
    if is_gcs(uri):
        from droptune.cloud.gcs import CHUNK, open_blob_writer

        return open_blob_writer(uri, chunk_size or CHUNK)
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb", buffering=1 << 20)


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for local paths and gs:// alike."""
    return "/".join([base.rstrip("/"), *parts])
