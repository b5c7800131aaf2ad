"""Copies of logs into a job's output folder: a `gs://` prefix or a local path.

The copy goes to Cloud Storage through the `STORAGE_EMULATOR_HOST` of the server's `env`
when that differs from this process's own (droptune's client reads the process environment
once), and through `droptune.cloud.gcs` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from droptune.cloud import gcs


def write(uri: str, data: bytes, env: Mapping[str, str]) -> None:
    """Write `data` to `uri` (gs://bucket/name or a local path), creating folders."""
    if not uri.startswith("gs://"):
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    host = env.get("STORAGE_EMULATOR_HOST")
    if host and host != os.environ.get("STORAGE_EMULATOR_HOST"):
        _emulator_write(uri, data, host, env.get("GOOGLE_CLOUD_PROJECT", "droptune-local"))
    else:
        gcs.write_bytes(uri, data, content_type="text/plain")


def _emulator_write(uri: str, data: bytes, host: str, project: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": host},
    )
    bucket, name = gcs.split_uri(uri)
    client.bucket(bucket).blob(name).upload_from_string(
        data, content_type="text/plain", retry=gcs.RETRY, timeout=gcs.TIMEOUT
    )


def join(prefix: str, *parts: str) -> str:
    """`prefix` + parts with single slashes.

    >>> join("gs://b/runs/1/", "training", "job.log")
    'gs://b/runs/1/training/job.log'
    """
    return "/".join([prefix.rstrip("/"), *parts])
