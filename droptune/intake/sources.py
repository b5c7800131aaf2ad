"""Resolve a run's configuration from where users put it, first match wins per key:

1. custom metadata on the uploaded object (`droptune-backend: gemini`, `droptune-epochs: 2`),
2. a sidecar `<file stem>.droptune.yaml` (or `.yml`) next to the data file,
3. the nearest `droptune.yaml` in the same folder or a parent folder of the uploads bucket,
4. the deployment defaults (environment).

What counts is the merged configuration: a source that would fail only against the defaults
of keys another source sets (`test_fraction: 0.95` in a sidecar, with `validation_fraction: 0`
in the object's metadata) does not fail the run. When the merged one fails, the error names
the first source whose values in it fail on their own (an unknown key, a bad value), so the
place to fix is named; a value another source overrides is not blamed. A relative
`validation_file` is read next to the data file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from droptune.cloud import gcs
from droptune.config import (
    CONFIG_SUFFIXES,
    RunConfig,
    merge_settings,
    one_sidecar,
    parse_settings,
    relative_holdout,
)
from droptune.errors import ConfigError
from droptune.intake.event import FOLDER_CONFIG, UploadedObject

METADATA_PREFIX = "droptune-"
MAX_OBJECT_NAME_BYTES = 1024  # Cloud Storage's limit: a longer name is a 400, not a 404


@dataclass
class ResolvedConfig:
    config: RunConfig | None  # None when `error` says why not
    sources: dict[str, str] = field(default_factory=dict)  # key -> where its value came from
    error: str | None = None


def metadata_values(metadata: dict[str, str]) -> dict[str, str]:
    """The droptune keys among an object's custom metadata.

    >>> metadata_values({"droptune-base-model": "google/gemma-3-1b-it", "owner": "ana"})
    {'base_model': 'google/gemma-3-1b-it'}
    """
    return {
        key[len(METADATA_PREFIX) :].replace("-", "_"): value
        for key, value in metadata.items()
        if key.lower().startswith(METADATA_PREFIX)
    }


def candidate_files(obj: UploadedObject) -> tuple[list[str], list[str]]:
    """The sidecar's names (either spelling) and the folder configs' names, nearest first;
    none past Cloud Storage's 1,024 bytes, which no object can have.

    >>> candidate_files(UploadedObject("up", "a/b/chat.v2.jsonl", 1))
    (['a/b/chat.v2.droptune.yaml', 'a/b/chat.v2.droptune.yml'], ['a/b/droptune.yaml', 'a/droptune.yaml', 'droptune.yaml'])
    """
    stem = obj.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    sidecars = [f"{obj.folder}{stem}{suffix}" for suffix in CONFIG_SUFFIXES]
    parts = obj.folder.rstrip("/").split("/") if obj.folder else []
    folders = ["/".join(parts[:n]) + "/" for n in range(len(parts), 0, -1)] + [""]
    configs = [f"{folder}{FOLDER_CONFIG}" for folder in folders]
    return _storable(sidecars), _storable(configs)


def _storable(names: list[str]) -> list[str]:
    return [name for name in names if len(name.encode()) <= MAX_OBJECT_NAME_BYTES]


def resolve(obj: UploadedObject, default_backend: str) -> ResolvedConfig:
    """The run config of an upload; a problem in any source is returned as `error`."""
    try:
        layers = _layers(obj, default_backend)
        merged, sources = merge_settings(layers)
        if merged.get("validation_file"):
            holdout = relative_holdout(str(merged["validation_file"]))
            if holdout is not None:  # read from the data file's folder
                merged["validation_file"] = f"gs://{obj.bucket}/{obj.folder}{holdout}"
        try:
            config = RunConfig.from_mapping(merged, source="the resolved configuration")
        except ConfigError as exc:
            raise _blame(layers, sources) or exc from None
    except ConfigError as exc:
        return ResolvedConfig(None, error=str(exc))
    return ResolvedConfig(config, sources)


def _blame(layers: list[tuple[str, dict[str, Any]]], sources: dict[str, str]) -> ConfigError | None:
    """The error of the first source whose values that count (those no earlier source set)
    fail, added to those of the sources before it: it names the place to fix."""
    so_far: dict[str, Any] = {}
    for source, values in layers:
        so_far |= {k: v for k, v in values.items() if sources.get(k.replace("-", "_")) == source}
        try:
            RunConfig.from_mapping(so_far, source=source)
        except ConfigError as exc:
            return exc
    return None


def _layers(obj: UploadedObject, default_backend: str) -> list[tuple[str, dict[str, Any]]]:
    layers = [("object metadata", metadata_values(obj.metadata))]
    sidecars, folder_configs = candidate_files(obj)
    found = [f for f in (_read_yaml(obj.bucket, name) for name in sidecars) if f is not None]
    one_sidecar([uri for uri, _ in found])  # two: an error
    layers += found
    for name in folder_configs:
        found = _read_yaml(obj.bucket, name)
        if found is not None:
            layers.append(found)
            break
    layers.append(("the deployment defaults", {"backend": default_backend}))
    return layers


def _read_yaml(bucket: str, name: str) -> tuple[str, dict[str, Any]] | None:
    uri = f"gs://{bucket}/{name}"
    found = gcs.read_bytes(uri)
    if found is None:
        return None
    return uri, parse_settings(found[0], uri)
