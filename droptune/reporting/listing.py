"""Finding runs: where the runs bucket is, which runs it holds, and one line about each.

A runs root is `gs://<bucket>/runs` or a local directory of run folders (such as the copies
`droptune local run` downloads). With no bucket named, the local stack's runs bucket is used
while the stack is running (through its storage emulator), else `DROPTUNE_RUNS_BUCKET`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from droptune.errors import DroptuneError, SourceError, SourceNotFound
from droptune.reporting.files import load_run
from droptune.reporting.summary import METRIC_NAMES, shown, summarize
from droptune.runs import RUN_ID
from droptune.storage import is_gcs, join

READERS = 16  # concurrent reads when listing a bucket: each run is a few small objects
HOW_TO_NAME = (
    "no runs bucket: pass --bucket BUCKET, set DROPTUNE_RUNS_BUCKET, or start the local "
    "stack (droptune local up)"
)


class NoRunsBucket(DroptuneError):
    """No runs bucket was named and none could be found."""


@dataclass(frozen=True)
class RunListing:
    run_id: str
    uri: str
    state: str | None
    backend: str | None
    created_at: str | None
    updated_at: str | None
    headline: str | None  # e.g. "accuracy 0.875 (+0.625)"

    def age(self, now: datetime | None = None) -> str:
        """How long ago the run started, in the largest unit that fits.

        >>> RunListing("r", "u", None, None, "2025-01-01T00:00:00Z", None, None).age(
        ...     datetime(2025, 1, 1, 3, 30, tzinfo=UTC))
        '3h'
        """
        started = _parse_time(self.created_at or self.updated_at)
        if started is None:
            return "–"
        seconds = ((now or datetime.now(UTC)) - started).total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{int(seconds // size)}{unit}"
        return f"{max(int(seconds), 0)}s"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


# --- where the runs are ---------------------------------------------------------------
def runs_root(bucket: str | None, env: Mapping[str, str] = os.environ) -> str:
    """The runs root for `--bucket` (a name, gs://name, or a local directory); without one,
    the running local stack's bucket, else `DROPTUNE_RUNS_BUCKET`."""
    if bucket:
        if not is_gcs(bucket) and Path(bucket).expanduser().is_dir():
            return str(Path(bucket).expanduser())
        if not is_gcs(bucket) and bucket.startswith(("/", ".", "~")):
            raise SourceNotFound(f"{bucket}: no such folder (a bucket is named without a path)")
        name = bucket.removeprefix("gs://").strip("/")
        if (stack := _local_stack()) and name.split("/", 1)[0] == stack.runs_bucket:
            stack.use()  # the running stack's bucket is on its storage emulator
        return f"gs://{name}" if name.endswith("/runs") else f"gs://{name}/runs"
    if stack := _local_stack():
        stack.use()
        return f"gs://{stack.runs_bucket}/runs"
    if env.get("DROPTUNE_RUNS_BUCKET"):
        return f"gs://{env['DROPTUNE_RUNS_BUCKET']}/runs"
    raise NoRunsBucket(HOW_TO_NAME)


def _local_stack() -> Any:
    """The running local stack's state (`use()` points this process's clients at its
    services); None when no stack is running."""
    from droptune.local.home import StackConfig, StackState

    return StackState.running(StackConfig.default().home)


def run_uri(run: str, bucket: str | None) -> str:
    """The folder of RUN: a local run folder, a gs:// URI, or a run id in the runs root."""
    if is_gcs(run):
        return run.rstrip("/")
    if Path(run).is_dir():
        return str(Path(run))
    if not RUN_ID.match(run):
        raise SourceNotFound(f"{run}: neither a run folder nor a run id")
    return join(runs_root(bucket), run)


# --- which runs -------------------------------------------------------------------------
def run_uris(root: str) -> list[str]:
    """The run folders under `root` (gs://bucket/runs or a local directory)."""
    if not is_gcs(root):
        return [
            str(path)
            for path in sorted(Path(root).iterdir())
            if path.is_dir()
            and any((path / name).is_file() for name in ("run.json", "status.json"))
        ]
    from google.api_core import exceptions

    from droptune.cloud.gcs import RETRY, client, split_uri

    bucket, prefix = split_uri(root)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    pages = client().list_blobs(bucket, prefix=prefix, delimiter="/", retry=RETRY)
    try:
        for _ in pages:  # the folders (`prefixes`) are known once every page has been read
            pass
    except exceptions.NotFound:
        raise SourceNotFound(f"gs://{bucket}: no such bucket") from None
    except exceptions.GoogleAPICallError as exc:
        raise SourceError(f"gs://{bucket}: cannot list runs ({exc.message or exc})") from None
    return [f"gs://{bucket}/{p.rstrip('/')}" for p in sorted(pages.prefixes)]


def list_runs(root: str) -> list[RunListing]:
    """One line per run under `root`, newest first."""
    uris = run_uris(root)
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        listings = list(pool.map(listing, uris))
    return sorted(listings, key=lambda r: r.created_at or r.updated_at or "", reverse=True)


def listing(uri: str) -> RunListing:
    files = load_run(uri, ("run", "status", "metrics"))
    summary = summarize(files)
    head = summary.headline
    headline = None
    if head is not None and head.tuned is not None:
        title = METRIC_NAMES.get(head.name, (head.name, 0))[0]
        headline = f"{title} {shown(head.name, head.tuned)} ({shown(head.name, head.delta, True)})"
    return RunListing(
        summary.run_id,
        uri,
        summary.state,
        summary.backend,
        summary.created_at,
        summary.updated_at,
        headline,
    )
