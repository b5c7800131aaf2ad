"""Copies of logs into a job's output folder: a `gs://` prefix or a local path.

The copy goes to Cloud Storage through the `STORAGE_EMULATOR_HOST` of the server's `env`
when that differs from this process's own (droptune's client reads the process environment
once), and through `droptune.cloud.gcs` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from droptune.cloud import gcs
from droptune.storage import is_gcs, open_output


def write(uri: str, data: bytes, env: Mapping[str, str]) -> None:
    """Write `data` to `uri` (gs://bucket/name or a local path), creating folders."""
    if not is_gcs(uri):
        with open_output(uri.removeprefix("file://")) as out:
            out.write(data)
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
