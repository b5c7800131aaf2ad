"""terraform/ as data: every file parsed with python-hcl2 and merged into one `Module`.

`terraform` itself cannot download providers here, so the tests read the configuration the way
a reviewer does: which resource refers to which. Values keep HCL's expression syntax, so a
reference reads as it is written: `"${google_pubsub_topic.runs.id}"`.

>>> ref("${google_pubsub_topic.runs.id}")
'google_pubsub_topic.runs.id'
>>> ref("us-central1") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

try:
    import hcl2
except ModuleNotFoundError as exc:  # the dev extra installs it; a missing one is an error
    raise ModuleNotFoundError("tests/terraform need python-hcl2: pip install -e '.[dev]'") from exc

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "terraform"
OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)
_REFERENCE = re.compile(r"^\$\{(.+)\}$", re.S)


def ref(value: Any) -> str | None:
    """The expression of a `${...}` value, or None for a literal."""
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def block(value: Any) -> dict[str, Any]:
    """A nested block (hcl2 gives a one-element list) as a dict."""
    if isinstance(value, list):
        assert len(value) == 1, f"expected one block, found {len(value)}"
        value = value[0]
    assert isinstance(value, dict), f"expected a block, found {value!r}"
    return value


def parse(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


@dataclass
class Module:
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)

    def resource(self, address: str) -> dict[str, Any]:
        """`google_pubsub_topic.runs` -> its body."""
        kind, name = address.split(".")
        return self.resources[kind][name]

    def each(self, prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
        """(`type.name`, body) of every resource whose type starts with `prefix`."""
        for kind, named in self.resources.items():
            if kind.startswith(prefix):
                for name, body in named.items():
                    yield f"{kind}.{name}", body


@cache
def load(directory: Path = TERRAFORM) -> Module:
    module = Module()
    for path in sorted(directory.glob("*.tf")):
        doc = parse(path)
        for entry in doc.get("resource", []):
            for kind, named in entry.items():
                module.resources.setdefault(kind, {}).update(named)
        for entry in doc.get("data", []):
            for kind, named in entry.items():
                module.data.setdefault(kind, {}).update(named)
        for entry in doc.get("variable", []):
            module.variables.update(entry)
        for entry in doc.get("output", []):
            module.outputs.update(entry)
        for entry in doc.get("locals", []):
            module.locals.update(entry)
    return module
