"""Files of a job's run folder, a `gs://` prefix or a local path: logs written, results read.

Cloud Storage is reached through the `STORAGE_EMULATOR_HOST` of the server's `env` when that
differs from this process's own (droptune's client reads the process environment once), and
through `droptune.cloud.gcs` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound

from droptune.cloud import gcs
from droptune.storage import is_gcs, write_all


def write(uri: str, data: bytes, env: Mapping[str, str]) -> None:
    """Write `data` to `uri` (gs://bucket/name or a local path), creating folders."""
    if not is_gcs(uri):
        write_all(uri.removeprefix("file://"), data)
        return
    host = env.get("STORAGE_EMULATOR_HOST")
    if host and host != os.environ.get("STORAGE_EMULATOR_HOST"):
        _emulator_write(uri, data, host, env.get("GOOGLE_CLOUD_PROJECT", "droptune-local"))
    else:
        gcs.write_bytes(uri, data, content_type="text/plain")


def read(uri: str, env: Mapping[str, str]) -> bytes | None:
    """The content of `uri`, or None when there is no such file or object."""
    if not is_gcs(uri):
        path = Path(uri.removeprefix("file://"))
        return path.read_bytes() if path.is_file() else None
    blob = _emulator_blob(uri, env)
    if blob is None:
        found = gcs.read_bytes(uri)
        return found[0] if found else None
    try:
        return blob.download_as_bytes(retry=gcs.RETRY, timeout=gcs.TIMEOUT)
    except NotFound:
        return None


def _emulator_write(uri: str, data: bytes, host: str, project: str) -> None:
    blob = _emulator_blob(uri, {"STORAGE_EMULATOR_HOST": host, "GOOGLE_CLOUD_PROJECT": project})
    assert blob is not None
    blob.upload_from_string(data, content_type="text/plain", retry=gcs.RETRY, timeout=gcs.TIMEOUT)


def _emulator_blob(uri: str, env: Mapping[str, str]) -> Any:
    """A blob on the emulator `env` names, when it is not this process's own; else None."""
    host = env.get("STORAGE_EMULATOR_HOST")
    if not host or host == os.environ.get("STORAGE_EMULATOR_HOST"):
        return None
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=env.get("GOOGLE_CLOUD_PROJECT", "droptune-local"),
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": host},
    )
    bucket, name = gcs.split_uri(uri)
    return client.bucket(bucket).blob(name)
