"""The part of the list methods' `filter` syntax (AIP-160) the local server understands.

Supported: terms joined by `AND`, each `FIELD=VALUE` or `FIELD!=VALUE`, where FIELD is
`labels.KEY`, `display_name` (or `displayName`), `state` or `name`, and VALUE is bare or in
double quotes. Anything else is refused with a 400 naming the term, rather than ignored:
a filter that matched everything would hide a bug in the caller.

>>> job = {"displayName": "run 1", "labels": {"run_id": "abc"}, "state": "JOB_STATE_RUNNING"}
>>> matches('labels.run_id=abc AND display_name="run 1"', job)
True
>>> matches("state!=JOB_STATE_RUNNING", job)
False
"""

from __future__ import annotations

import re
from typing import Any

from droptune.local.vertex.errors import invalid

_TERM = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))\s*$')
_FIELDS = {
    "display_name": "displayName",
    "displayName": "displayName",
    "state": "state",
    "name": "name",
}


def matches(text: str | None, resource: dict[str, Any]) -> bool:
    """Whether the resource JSON passes the filter (an empty filter passes everything)."""
    if not text or not text.strip():
        return True
    return all(_term(term, resource) for term in re.split(r"\s+AND\s+", text.strip()))


def _term(term: str, resource: dict[str, Any]) -> bool:
    match = _TERM.match(term)
    if match is None:
        raise invalid(f"Unsupported filter term {term!r}: use FIELD=VALUE joined by AND.")
    key, op, quoted, bare = match.groups()
    wanted = quoted.replace('\\"', '"') if quoted is not None else bare
    if key.startswith("labels."):
        actual = resource.get("labels", {}).get(key.removeprefix("labels."))
    elif key in _FIELDS:
        actual = resource.get(_FIELDS[key])
    else:
        raise invalid(
            f"Unsupported filter field {key!r}: the local server filters on labels.KEY, "
            "display_name, state and name."
        )
    return (actual == wanted) == (op == "=")
