"""Reading a run folder as it is: every file optional, none trusted to be well formed.

A report is asked for at any point of a run (validating, gated, failed half way), by either
backend, so each file may be absent; a file that is there but unreadable is noted in
`problems` and the report is drawn from the rest.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from droptune.errors import SourceError, SourceNotFound
from droptune.runs import run_id_from
from droptune.storage import join, read_all

JSON_FILES = {
    "run": "run.json",
    "status": "status.json",
    "validation": "validation/report.json",
    "training": "training/metrics.json",
    "tuning_job": "training/tuning_job.json",
    "metrics": "evaluation/metrics.json",
    "endpoint": "endpoint.json",
}
PREDICTIONS = "evaluation/predictions.csv"
MAX_FIELD_CHARS = 2**31 - 1  # csv refuses longer fields; a C long holds it everywhere


@dataclass
class RunFiles:
    """The files of one run folder (`uri`: a local directory or gs://<runs>/runs/<run_id>)."""

    uri: str
    run: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    tuning_job: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    endpoint: dict[str, Any] | None = None
    predictions: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        """The id recorded in run.json, else the folder's name."""
        return run_id_from(self.run, self.uri)


def read_bytes(uri: str) -> bytes | None:
    """The content of a file or object; None when there is none."""
    try:
        return read_all(uri)
    except SourceNotFound:
        return None


def load_run(uri: str, names: tuple[str, ...] = (*JSON_FILES, "predictions")) -> RunFiles:
    """Read `names` (keys of `JSON_FILES`, and `predictions`) from the run folder at `uri`."""
    files = RunFiles(uri.rstrip("/"))
    for name in names:
        path = PREDICTIONS if name == "predictions" else JSON_FILES[name]
        try:
            data = read_bytes(join(files.uri, path))
        except SourceError as exc:
            files.problems.append(f"{path}: {exc}")
            continue
        if data is None:
            continue
        try:
            value: Any = _predictions(data) if name == "predictions" else _json(data)
        except (ValueError, csv.Error) as exc:
            files.problems.append(f"{path}: unreadable ({exc})")
            continue
        if name != "predictions" and not isinstance(value, dict):
            files.problems.append(f"{path}: expected a JSON object")
            continue
        if name == "tuning_job":
            value = _tuning_job(value)
        setattr(files, name, value)
    return files


def _tuning_job(record: dict[str, Any]) -> dict[str, Any]:
    """The tuning job as Vertex AI returns it. droptune's training/tuning_job.json holds it
    under `resource`, beside the fields it read (`tuned_model` there is the model's name, not
    the resource's tunedModel map) and `emulated`; a file with the bare resource is read too."""
    resource = record.get("resource")
    if not isinstance(resource, dict):
        return record
    return {**resource, "emulated": bool(record.get("emulated"))}


def _json(data: bytes) -> Any:
    """A run file's JSON; NaN and infinities (Python's json writes them; JSON has none, and
    orjson refuses them) read as null."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data, parse_constant=lambda constant: None)


def _predictions(data: bytes) -> list[dict[str, str]]:
    # A field may be a whole long-context document: past csv's default limit of 131,072.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
