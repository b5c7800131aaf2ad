"""Every block of a Terraform directory against its provider's schema: what `terraform validate`
says about names, without the provider binaries.

A directory is read block by block, with lines (python-hcl2's Lark tree; its dict output has
none). Each `resource`, `data` and `provider` block is checked against the schema of the provider
it uses (its `provider` argument, else the first word of its type, mapped to a source through
`required_providers`), nested blocks against theirs, recursively; a `module` call with a local
source against that module's variables. Meta-arguments (count, for_each, depends_on, provider,
lifecycle, provisioner, connection) are Terraform's own and always allowed; `timeouts` is in
the schema of each resource that takes it. Types, values and expressions are not checked.

Results are data (`Issue`), rendered separately (`render`):

    terraform/storage.tf:12: google_storage_bucket.runs: no argument "locaton"; did you mean "location"? [unknown-argument]
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
from lark import Token, Tree

from tests.terraform.module import ROOT, parse
from tests.terraform.provider_schema import Block, schema

RESOURCE_META = {"count", "for_each", "depends_on", "provider"}
RESOURCE_META_BLOCKS = {"lifecycle", "provisioner", "connection"}
DATA_META_BLOCKS = {"lifecycle"}
MODULE_META = {"source", "version", "providers", "count", "for_each", "depends_on"}
PROVIDER_META = {"alias", "version"}
# terraform_data and terraform_remote_state are built into Terraform itself
# (terraform.io/builtin/terraform): no provider package holds their schemas, so they are written
# out here from Terraform's documentation.
BUILTIN = "terraform.io/builtin/terraform"
BUILTIN_RESOURCES = {
    "terraform_data": Block(attributes={"input": False, "triggers_replace": False}, blocks={})
}
BUILTIN_DATA_SOURCES = {
    "terraform_remote_state": Block(
        attributes={"backend": True, "config": False, "defaults": False, "workspace": False},
        blocks={},
    )
}


@dataclass(frozen=True)
class Issue:
    """One finding: where (file, line, block path), what kind (a stable code), and a message."""

    file: str
    line: int
    path: str
    code: str
    message: str


def render(issue: Issue) -> str:
    return f"{issue.file}:{issue.line}: {issue.path}: {issue.message} [{issue.code}]"


# --- the configuration, with lines ---------------------------------------------------------


@dataclass
class Argument:
    name: str
    line: int
    text: str  # the expression as written, tokens joined: `google-beta`, `../..`


@dataclass
class HclBlock:
    type: str
    labels: list[str]
    line: int
    file: str
    arguments: dict[str, Argument] = field(default_factory=dict)
    blocks: list[HclBlock] = field(default_factory=list)


def read_file(path: Path) -> list[HclBlock]:
    """The top-level blocks of one .tf file."""
    shown = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    tree = hcl2.parses_to_tree(path.read_text())
    root = HclBlock("", [], 1, shown)
    _read_body(tree.children[0], root)
    return root.blocks


def _read_body(body: Tree, into: HclBlock) -> None:
    for node in body.children:
        if not isinstance(node, Tree):
            continue
        if node.data == "attribute":
            name, _, expression = node.children
            into.arguments[_name(name)] = Argument(_name(name), node.meta.line, _name(expression))
        elif node.data == "block":
            *heads, inner = [c for c in node.children if isinstance(c, Tree)]
            heads = [h for h in heads if h.data != "new_line_or_comment"]
            block = HclBlock(
                _name(heads[0]), [_name(h) for h in heads[1:]], node.meta.line, into.file
            )
            _read_body(inner, block)
            into.blocks.append(block)


def _name(node: Tree | Token) -> str:
    """A node's tokens joined: an identifier, a keyword (`for_each`), a label without its quotes
    (`google_storage_bucket`), an expression (`google-beta`, `../..`)."""
    if isinstance(node, Token):
        return str(node)
    return "".join(str(t) for t in node.scan_values(_is_token)).strip('"')


def _is_token(value: object) -> bool:
    return isinstance(value, Token)


def read_directory(directory: Path) -> list[HclBlock]:
    return [block for path in sorted(directory.glob("*.tf")) for block in read_file(path)]


def directories(root: Path) -> list[Path]:
    """Every directory under `root` that holds .tf files (a module root or an example)."""
    found = {path.parent for path in root.rglob("*.tf") if ".terraform" not in path.parts}
    return sorted(found)


# --- which schema a block uses ---------------------------------------------------------------


def required_providers(directory: Path) -> dict[str, dict[str, str]]:
    """Local provider name -> {source, version} from the directory's `terraform` blocks."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(directory.glob("*.tf")):
        for terraform in parse(path).get("terraform", []):
            for entry in terraform.get("required_providers", []):
                found.update(entry)
    return found


def source_of(local_name: str, providers: dict[str, dict[str, str]]) -> str:
    """A local provider name's source; Terraform's default is hashicorp/<name>."""
    if local_name == "terraform" and local_name not in providers:
        return BUILTIN
    source = providers.get(local_name, {}).get("source", f"hashicorp/{local_name}")
    return source.lower().removeprefix("registry.terraform.io/")


def local_provider(block: HclBlock) -> str:
    """The provider a resource or data block uses: `provider = google-beta`, else its type's first word."""
    if "provider" in block.arguments:
        return block.arguments["provider"].text.split(".")[0].strip()
    return block.labels[0].split("_")[0]


# --- the check -------------------------------------------------------------------------------


def check_directory(directory: Path) -> list[Issue]:
    """Every issue in one Terraform directory (module root or example)."""
    providers = required_providers(directory)
    issues: list[Issue] = []
    for block in read_directory(directory):
        if block.type in ("resource", "data") and len(block.labels) == 2:
            issues.extend(_check_typed(block, providers))
        elif block.type == "provider" and block.labels:
            issues.extend(_check_provider(block, providers))
        elif block.type == "module" and block.labels:
            issues.extend(_check_module(block, directory))
    return issues


def _check_typed(block: HclBlock, providers: dict[str, dict[str, str]]) -> list[Issue]:
    kind, name = block.labels
    is_data = block.type == "data"
    path = f"data.{kind}.{name}" if is_data else f"{kind}.{name}"
    source = source_of(local_provider(block), providers)
    if source == BUILTIN:
        builtin = BUILTIN_DATA_SOURCES if is_data else BUILTIN_RESOURCES
        target, where = builtin.get(kind), list(builtin)
        label = "Terraform's built-in provider"
    else:
        found = schema(source)
        if found is None:
            return [_unknown_provider(block, path, source)]
        target = found.data_source(kind) if is_data else found.resource(kind)
        where = list(found.data_sources if is_data else found.resources)
        label = f"{source} {found.version}"
    if target is None:
        what = "data source" if is_data else "resource type"
        message = f'{label} has no {what} "{kind}"{_hint(kind, where)}'
        return [Issue(block.file, block.line, path, "unknown-type", message)]
    meta_blocks = DATA_META_BLOCKS if is_data else RESOURCE_META_BLOCKS
    return list(check_block(block, target, path, RESOURCE_META, meta_blocks))


def _check_provider(block: HclBlock, providers: dict[str, dict[str, str]]) -> list[Issue]:
    path = f"provider.{block.labels[0]}"
    source = source_of(block.labels[0], providers)
    found = schema(source)
    if found is None:
        return [_unknown_provider(block, path, source)]
    return list(check_block(block, found.provider_config(), path, PROVIDER_META, set()))


def _unknown_provider(block: HclBlock, path: str, source: str) -> Issue:
    message = (
        f"no schema for provider {source}: add its cdktf-cdktf-provider-* package to the dev "
        "extra and to PACKAGES in tests/terraform/provider_schema.py"
    )
    return Issue(block.file, block.line, path, "unknown-provider", message)


def _check_module(block: HclBlock, directory: Path) -> list[Issue]:
    path = f"module.{block.labels[0]}"
    source = block.arguments.get("source")
    if source is None or not source.text.startswith(("./", "../")):
        return []  # a registry or remote module: its variables are not here
    called = (directory / source.text).resolve()
    variables = {
        b.labels[0]: "default" not in b.arguments
        for b in read_directory(called)
        if b.type == "variable" and b.labels
    }
    inputs = Block(attributes=variables, blocks={})
    return list(check_block(block, inputs, path, MODULE_META, set(), noun="input"))


def check_block(
    block: HclBlock,
    schema_block: Block,
    path: str,
    meta: Iterable[str] = (),
    meta_blocks: Iterable[str] = (),
    noun: str = "argument",
) -> Iterable[Issue]:
    """Issues of one block's body against its schema, nested blocks included."""
    meta, meta_blocks = set(meta), set(meta_blocks)
    valid = schema_block.names()
    for name, argument in block.arguments.items():
        if name in meta or name in schema_block.attributes:
            continue
        if name in schema_block.blocks:
            message = f'"{name}" is a block, not an argument: write `{name} {{ ... }}`'
            yield Issue(block.file, argument.line, path, "block-as-argument", message)
        else:
            message = f'no {noun} "{name}"{_hint(name, valid)}'
            yield Issue(block.file, argument.line, path, f"unknown-{noun}", message)

    written: set[str] = set()
    literal: Counter[str] = Counter()  # a dynamic block may write any number: not counted
    for child in block.blocks:
        name, body, dynamic = _block_body(child)
        if name in meta_blocks:
            continue
        if name in schema_block.blocks:
            written.add(name)
            literal[name] += not dynamic
            if literal[name] > 1 and schema_block.blocks[name].single:
                message = f'at most one "{name}" block is allowed here'
                yield Issue(block.file, child.line, path, "too-many-blocks", message)
            if body is not None:
                yield from check_block(body, schema_block.blocks[name], f"{path}.{name}")
        elif name in schema_block.attributes:
            message = f'"{name}" is an argument, not a block: write `{name} = ...`'
            yield Issue(block.file, child.line, path, "argument-as-block", message)
        else:
            message = f'no block type "{name}"{_hint(name, valid)}'
            yield Issue(block.file, child.line, path, "unknown-block", message)

    for name, required in schema_block.attributes.items():
        if required and name not in block.arguments:
            message = f'the {noun} "{name}" is required'
            yield Issue(block.file, block.line, path, f"missing-{noun}", message)
    for name, nested in schema_block.blocks.items():
        if nested.required and name not in written:
            message = f'the block "{name}" is required'
            yield Issue(block.file, block.line, path, "missing-block", message)


def _block_body(child: HclBlock) -> tuple[str, HclBlock | None, bool]:
    """(block type, the body to check, whether it is a `dynamic` block)."""
    if child.type != "dynamic" or not child.labels:
        return child.type, child, False
    content = [b for b in child.blocks if b.type == "content"]
    return child.labels[0], (content[0] if content else None), True


def _hint(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


# --- version constraints ---------------------------------------------------------------------

_CONSTRAINT = re.compile(r"^\s*(~>|>=|<=|!=|=|>|<)?\s*v?(\d+(?:\.\d+)*)\s*$")


def admits(constraint: str, version: str) -> bool:
    """Whether a Terraform version constraint admits a release (pre-release tags ignored).

    >>> admits("~> 6.11", "6.50.0"), admits("~> 6.11", "7.0.0"), admits("~> 6.11.0", "6.12.0")
    (True, False, False)
    >>> admits(">= 2.4, < 3", "2.7.1")
    True
    """
    have = _numbers(version)
    for part in constraint.split(","):
        match = _CONSTRAINT.match(part)
        if match is None:
            raise ValueError(f"not a version constraint: {part!r}")
        op, want = match.group(1) or "=", _numbers(match.group(2))
        width = max(len(want), len(have))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if op == "~>":
            keep = max(len(want) - 1, 1)  # ~> 6.11: 6.x from 6.11; ~> 6.11.0: 6.11.x
            ok = a >= b and have[:keep] == want[:keep]
        else:
            ok = {
                "=": a == b,
                "!=": a != b,
                ">": a > b,
                ">=": a >= b,
                "<": a < b,
                "<=": a <= b,
            }[op]
        if not ok:
            return False
    return True


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.split(r"[-+]", version)[0].split("."))
