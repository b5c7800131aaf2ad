"""Reading a workflow file: YAML or JSON, every map and list remembering its line.

Workflows files are YAML (JSON is YAML too). The loader keeps the line of each mapping and
sequence so that errors found before the run (an unknown step keyword, a `next` to nowhere)
and during it (a failing expression) can say where. Map keys that YAML reads as numbers or
booleans become strings, as the service makes them (`1: 10` is the key "1").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from droptune.local.workflows.errors import WorkflowSyntaxError


class LineMap(dict):
    line: int = 0


class LineList(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode) -> LineMap:
    out = LineMap()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, bool):
            key = "true" if key else "false"
        elif key is None:
            key = "null"
        elif not isinstance(key, str):
            key = str(key)
        if key in out:
            raise WorkflowSyntaxError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _list(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _list)


def load_text(text: str, source: str = "<workflow>") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise WorkflowSyntaxError(f"{source}: {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise WorkflowSyntaxError(f"{source}: not YAML or JSON: {exc}") from None


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowSyntaxError(f"{path}: {exc.strerror}") from None


def load_file(path: str | Path) -> Any:
    return load_text(read_text(path), str(path))


def line_of(value: Any) -> int | None:
    return getattr(value, "line", None)


def plain(value: Any) -> Any:
    """A deep copy in plain dicts and lists: loaded data loses its line numbers, and a value
    assigned in a workflow is copied, so a later change to one variable never shows in another."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
