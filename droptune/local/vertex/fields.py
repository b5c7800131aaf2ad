"""The `fields` system parameter: a partial response, as every Google REST API gives one.

`?fields=name,state,tunedModel/endpoint,error(code,message)` keeps only those fields of the
answer (https://cloud.google.com/apis/docs/system-parameters): a comma-separated list of
paths, `/` stepping into a message, `(...)` naming several fields under one; a list answers
with the selection applied to each of its items. The workflow asks for the few fields it
reads, so that a resource whose size grows with the data (a tuning job's statistics quote
examples of the dataset) stays small in a Workflows variable.

>>> select({"name": "j", "state": "S", "stats": {"big": "x" * 9}}, "name,state")
{'name': 'j', 'state': 'S'}
>>> select({"a": {"b": 1, "c": 2}, "d": [{"e": 1, "f": 2}]}, "a/b,d(e)")
{'a': {'b': 1}, 'd': [{'e': 1}]}
"""

from __future__ import annotations

from typing import Any

from droptune.local.vertex.errors import invalid

Selection = dict[str, "Selection | None"]  # None: the whole field


def parse(fields: str) -> Selection:
    """`a/b,c(d,e)` as {"a": {"b": None}, "c": {"d": None, "e": None}}."""
    selection, rest = _items(fields.replace(" ", ""), 0)
    if rest != len(fields.replace(" ", "")):
        raise invalid(f"Invalid field selection {fields!r}: unbalanced parentheses.")
    return selection


def _items(text: str, at: int) -> tuple[Selection, int]:
    selection: Selection = {}
    while at < len(text) and text[at] != ")":
        path_end = at
        while path_end < len(text) and text[path_end] not in ",()":
            path_end += 1
        path = [p for p in text[at:path_end].split("/")]
        if not all(path):
            raise invalid(f"Invalid field selection {text!r}: an empty field name.")
        inner: Selection | None = None
        at = path_end
        if at < len(text) and text[at] == "(":
            inner, at = _items(text, at + 1)
            if at >= len(text) or text[at] != ")":
                raise invalid(f"Invalid field selection {text!r}: unbalanced parentheses.")
            at += 1
        _merge(selection, path, inner)
        if at < len(text) and text[at] == ",":
            at += 1
    return selection, at


def _merge(selection: Selection, path: list[str], inner: Selection | None) -> None:
    head, *tail = path
    if not tail:
        if inner is None or selection.get(head, {}) is None:
            selection[head] = None
        else:
            selection[head] = {**(selection.get(head) or {}), **inner}
        return
    child = selection.setdefault(head, {})
    if child is not None:  # a whole field stays whole
        _merge(child, tail, inner)


def select(answer: Any, fields: str) -> Any:
    """`answer` reduced to the `fields` selection."""
    return _apply(answer, parse(fields))


def _apply(value: Any, selection: Selection | None) -> Any:
    if selection is None:
        return value
    if isinstance(value, list):
        return [_apply(item, selection) for item in value]
    if not isinstance(value, dict):
        return value
    return {k: _apply(value[k], sub) for k, sub in selection.items() if k in value}
