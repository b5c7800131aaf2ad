"""A run: its id, its folder in the runs bucket, its status and the message that starts it.

Every unit that reads or writes a run folder goes through these names (see the run layout in
the architecture notes): the upload function creates the run, the workflow and the trainer
advance it, `droptune runs` shows it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson


class RunState(StrEnum):
    VALIDATING = "VALIDATING"
    REJECTED = "REJECTED"
    QUEUED = "QUEUED"
    TRAINING = "TRAINING"
    EVALUATING = "EVALUATING"
    DEPLOYING = "DEPLOYING"
    SUCCEEDED = "SUCCEEDED"
    GATED = "GATED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ENDED = frozenset(
    {RunState.REJECTED, RunState.SUCCEEDED, RunState.GATED, RunState.FAILED, RunState.CANCELLED}
)
# How terminals colour a state (anything else, a state in progress: cyan).
STATE_STYLE = {
    RunState.SUCCEEDED: "green",
    RunState.GATED: "yellow",
    RunState.REJECTED: "red",
    RunState.FAILED: "red",
    RunState.CANCELLED: "red",
}

_SLUG_MAX = 32
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def run_id_for(bucket: str, name: str, generation: int) -> str:
    """A run id for one version of one uploaded object: readable, stable and safe anywhere.

    The file's stem (ASCII-folded, lowercased, at most 32 characters), the object generation
    and 8 hex digits of a hash of `bucket/name`. It is at most 63 characters of `[a-z0-9-]`, so
    it is a valid GCS path segment, Vertex AI label value and resource display name whatever
    the object was called; a redelivered event maps to the same id.

    >>> run_id_for("uploads", "team/Données Été.jsonl", 1700000000123456)
    'donnees-ete-1700000000123456-2cae3432'
    >>> run_id_for("uploads", "../../etc/passwd.jsonl", 7)
    'passwd-7-5a73aa78'
    """
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_stem.lower()).strip("-")[:_SLUG_MAX].strip("-") or "data"
    digest = hashlib.sha256(f"{bucket}/{name}".encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug}-{generation}-{digest}"


def run_id_from(record: Mapping[str, Any] | None, folder: str) -> str:
    """A run's id: the one its run.json `record` holds, else its folder's name.

    >>> run_id_from({"run_id": "chat-17-ab12"}, "/tmp/x"), run_id_from(None, "gs://b/runs/r-1/")
    ('chat-17-ab12', 'r-1')
    """
    return (record or {}).get("run_id") or folder.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RunFolder:
    """The URIs of one run's files (`gs://runs/runs/<run_id>/...` or a local directory)."""

    root: str  # ends without '/'

    @classmethod
    def in_bucket(cls, bucket: str, run_id: str) -> RunFolder:
        if not RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return cls(f"gs://{bucket}/runs/{run_id}")

    @classmethod
    def at(cls, uri: str) -> RunFolder:
        """The run folder at `uri`, with or without its trailing '/'."""
        return cls(uri.rstrip("/"))

    @property
    def run_id(self) -> str:
        """The run's id: the folder's name (`runs/<run_id>`).

        >>> RunFolder.at("gs://runs/runs/chat-17-ab12/").run_id
        'chat-17-ab12'
        """
        return run_id_from(None, self.root)

    @property
    def uri(self) -> str:
        return self.root + "/"

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def run_json(self) -> str:
        return self.path("run.json")

    @property
    def status_json(self) -> str:
        return self.path("status.json")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RunStatus:
    """`status.json`: the current state and every transition so far.

    >>> s = RunStatus.start("reading the upload")
    >>> s.advance(RunState.QUEUED, "valid: 120 examples")
    >>> [h["state"] for h in s.history]
    ['VALIDATING', 'QUEUED']
    """

    state: RunState
    updated_at: str
    detail: str
    history: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys other units add

    @classmethod
    def start(cls, detail: str) -> RunStatus:
        status = cls(RunState.VALIDATING, now_iso(), detail)
        status.history.append(
            {"state": status.state.value, "at": status.updated_at, "detail": detail}
        )
        return status

    def advance(self, state: RunState, detail: str, error: dict[str, Any] | None = None) -> None:
        self.state, self.updated_at, self.detail = state, now_iso(), detail
        self.error = error
        self.history.append({"state": state.value, "at": self.updated_at, "detail": detail})

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "state": self.state.value,
            "updated_at": self.updated_at,
            "detail": self.detail,
        }
        if self.error is not None:
            body["error"] = self.error
        body.update(self.extra)
        body["history"] = self.history
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> RunStatus:
        body = orjson.loads(data)
        core = {"state", "updated_at", "detail", "error", "history"}
        return cls(
            state=RunState(body["state"]),
            updated_at=body["updated_at"],
            detail=body.get("detail", ""),
            history=body.get("history", []),
            error=body.get("error"),
            extra={k: v for k, v in body.items() if k not in core},
        )


@dataclass(frozen=True)
class RunMessage:
    """The Pub/Sub message that starts a run's workflow: small; the rest is in `run.json`."""

    run_id: str
    run_uri: str
    backend: str

    @property
    def data(self) -> bytes:
        return orjson.dumps(asdict(self))

    @property
    def attributes(self) -> dict[str, str]:
        return {"run_id": self.run_id, "backend": self.backend}
