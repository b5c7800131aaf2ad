"""JSON Schema checks for records, one schema file per format (`schemas/*.json`).

Validation uses `jsonschema-rs`, a Rust implementation of JSON Schema (Draft 2020-12) with
Python bindings. The pure-Python `jsonschema` package costs ~130 us per chat record on this
hardware (10 MB/s), which alone would cap droptune's validation far below its 100 MB/s goal;
`jsonschema-rs` validates the same schemas in ~1 us. Both read the same standard schema files.

Each schema names the droptune issue code of a failing keyword with `x-code`: either a code for
every keyword of that subschema, or a map from keyword to code. The nearest `x-code` on the
path to the failing keyword wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

_FALLBACK_CODES = {"required": "missing_field", "type": "invalid_type"}


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """`["messages", 2, "role"]` -> `$.messages[2].role`.

    >>> json_path(["messages", 2, "role"])
    '$.messages[2].role'
    >>> json_path(["a b"])
    "$['a b']"
    """
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


@dataclass(frozen=True)
class SchemaProblem:
    code: str
    path: str
    message: str


class RecordSchema:
    """A compiled schema: a fast yes/no, and located, coded problems for the records that fail."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.title: str = schema.get("title", "")
        self.fields = frozenset(schema.get("properties", ()))  # top-level keys the format reads
        self._validator = jsonschema_rs.validator_for(schema)
        self.is_valid = self._validator.is_valid

    def problems(self, record: Any) -> list[SchemaProblem]:
        found = []
        for error in self._validator.iter_errors(record):
            location = list(error.instance_path)
            keyword = error.schema_path[-1] if error.schema_path else ""
            if keyword == "required":
                location.append(error.kind.property)
            found.append(
                SchemaProblem(
                    self._code_for(list(error.schema_path)), json_path(location), error.message
                )
            )
        return found

    def _code_for(self, schema_path: list[str | int]) -> str:
        keyword = str(schema_path[-1]) if schema_path else ""
        node: Any = self.schema
        candidates = [node]
        for part in schema_path[:-1]:
            try:
                if part == "$ref" and isinstance(node, dict) and "$ref" in node:
                    node = self._resolve(node["$ref"])
                else:
                    node = node[part]
            except (KeyError, IndexError, TypeError):
                break
            candidates.append(node)
        for node in reversed(candidates):
            code = node.get("x-code") if isinstance(node, dict) else None
            if isinstance(code, str):
                return code
            if isinstance(code, dict) and keyword in code:
                return code[keyword]
        return _FALLBACK_CODES.get(keyword, "invalid_type")

    def _resolve(self, ref: str) -> Any:
        node: Any = self.schema
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node


@cache
def load_schema(name: str) -> RecordSchema:
    """The compiled schema `schemas/<name>.json` shipped with the package."""
    text = resources.files("droptune.formats").joinpath("schemas", f"{name}.json").read_text()
    return RecordSchema(json.loads(text))
