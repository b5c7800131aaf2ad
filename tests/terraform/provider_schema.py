"""Terraform provider schemas, read offline from the cdktf provider packages' jsii assemblies.

`terraform validate` needs the provider binaries, which cannot be downloaded here. The PyPI
packages `cdktf-cdktf-provider-*` are generated from those providers' schemas, and each ships a
jsii assembly (`_jsii/provider-*.jsii.tgz`, a JSON description of every class) that says, for
every resource and data source, which arguments and nested blocks it takes and which are
required. The versions pinned in pyproject.toml's `dev` extra give these schemas:

    hashicorp/google       6.50.0   cdktf-cdktf-provider-google       16.12.1
    hashicorp/google-beta  6.50.0   cdktf-cdktf-provider-google-beta  16.12.1
    hashicorp/time         0.13.1   cdktf-cdktf-provider-time         11.0.1
    hashicorp/archive      2.7.1    cdktf-cdktf-provider-archive      11.0.1

How the assembly maps to Terraform:
- A class whose docs say `Represents a {@link .../docs/resources/storage_bucket google_storage_bucket}`
  is that resource (`data-sources/` for a data source, plain `/docs` for the provider), and the
  link's version is the provider version. Its initializer's `config` interface lists the
  arguments; computed-only attributes are not in it.
- A property is required when jsii does not mark it optional. Its type is a struct interface
  for a nested block (the struct itself where the block takes at most one, an array where it
  takes more), anything else for an argument.
- The Terraform name is the anchor of the property's `Docs at Terraform Registry` link
  (`...#source_md5hash StorageBucketObject#source_md5hash`), not the jsii name turned back into
  snake_case: cdktf renames some (`buildAttribute` is `build`, `fetchhDetails` is
  `geth_details`) and digits do not round-trip (`sourceMd5Hash`, `hugepageSize1G`).
  Checked once over the four packages pinned here: for all 54,425 properties the name agrees
  with the key the package's own JavaScript writes into Terraform JSON, and every type name with
  its `tfResourceType`. Two properties (pubsub `message_transforms.javascript_udf.code`) have
  docs cut short by an embedded `*/` and no anchor: snake_case of the jsii name, right for both.
- The `cdktf.TerraformMetaArguments` (count, for_each, provider, lifecycle, ...) are not part of
  any interface here; the checker allows them itself.

Why installed packages: their dependencies (cdktf, constructs, jsii, publication, typeguard 2)
add about 9 MB and change none of the project's pins. The provider packages themselves are big
(google and google-beta: 100 MB of wheels; about 780 MB and a minute to install, their Python
bindings compiled), which a dev environment that already holds torch can carry; a wheel fetched
into build/ by the Makefile would be the lighter way if that changes. The packages are never
imported (that starts jsii's Node.js runtime): the assembly is read as a file.

Deriving google's or google-beta's schema takes about 4 s (98 MB of JSON each), so the result is
cached as JSON (about 1 MB) under build/provider-schemas/, keyed by package version and FORMAT.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
CACHE = ROOT / "build" / "provider-schemas"
FORMAT = 1  # bump when the derived schema's shape changes

# Provider source -> the package whose assembly holds its schema.
PACKAGES = {
    "hashicorp/google": "cdktf-cdktf-provider-google",
    "hashicorp/google-beta": "cdktf-cdktf-provider-google-beta",
    "hashicorp/time": "cdktf-cdktf-provider-time",
    "hashicorp/archive": "cdktf-cdktf-provider-archive",
}

_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/"
    r"(?P<source>[\w-]+/[\w-]+)/(?P<version>[\w.-]+)/docs"
    r"(?:/(?P<kind>resources|data-sources)/\w+)? (?P<type>[\w-]+)\}"
)
_ANCHOR = re.compile(
    r"Docs at Terraform Registry: \{@link https://registry\.terraform\.io/\S+#(\w+) "
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Block:
    """A resource, data source, provider or nested block: what may be written inside it.

    `attributes` maps each argument to whether it is required; `blocks` each nested block type
    to its own Block. `required`: at least one such block must be written; `single`: at most one.
    """

    attributes: dict[str, bool]
    blocks: dict[str, Block]
    required: bool = False
    single: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Block:
        return cls(
            attributes=data["attributes"],
            blocks={name: cls.from_json(nested) for name, nested in data["blocks"].items()},
            required=data.get("required", False),
            single=data.get("single", False),
        )

    def names(self) -> list[str]:
        return [*self.attributes, *self.blocks]


@dataclass(frozen=True)
class Schema:
    """One provider's schema: `source` (hashicorp/google) at `version`, from `package`.

    The tables hold the derived JSON; a lookup builds the one Block it needs.
    """

    source: str
    version: str
    package: str
    resources: dict[str, dict[str, Any]]
    data_sources: dict[str, dict[str, Any]]
    provider: dict[str, Any]

    def resource(self, kind: str) -> Block | None:
        return _to_block(self.resources, kind)

    def data_source(self, kind: str) -> Block | None:
        return _to_block(self.data_sources, kind)

    def provider_config(self) -> Block:
        return Block.from_json(self.provider)


def _to_block(table: dict[str, dict[str, Any]], kind: str) -> Block | None:
    return Block.from_json(table[kind]) if kind in table else None


@cache
def schema(source: str) -> Schema | None:
    """The schema of provider `source` (e.g. hashicorp/google), or None for one without a package."""
    package = PACKAGES.get(source)
    if package is None:
        return None
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise ModuleNotFoundError(
            f"tests/terraform need {package} for {source}'s schema: pip install -e '.[dev]'"
        ) from exc
    cached = CACHE / f"{package}-{dist.version}.v{FORMAT}.json"
    if cached.is_file():
        derived = json.loads(cached.read_text())
    else:
        derived = derive(read_assembly(dist))
        _write_atomically(cached, json.dumps(derived, separators=(",", ":")))
    if derived["source"] != source:
        raise ValueError(f"{package} holds {derived['source']}'s schema, not {source}'s")
    return Schema(package=package, **derived)


def read_assembly(dist: metadata.Distribution) -> dict[str, Any]:
    """The `.jsii` JSON inside the installed package's `_jsii/*.jsii.tgz`, without importing it."""
    tarballs = [f for f in dist.files or [] if f.name.endswith(".jsii.tgz")]
    if len(tarballs) != 1:
        raise FileNotFoundError(f"{dist.name}: expected one .jsii.tgz, found {tarballs}")
    with tarfile.open(fileobj=io.BytesIO(tarballs[0].read_binary())) as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None
        return json.loads(member.read())


def derive(assembly: dict[str, Any]) -> dict[str, Any]:
    """The schema as plain JSON: every resource's, data source's and the provider's Block."""
    types = assembly["types"]
    derived: dict[str, Any] = {"resources": {}, "data_sources": {}, "provider": None}
    versions = set()
    for entry in types.values():
        match = _REPRESENTS.search(entry.get("docs", {}).get("summary", ""))
        if entry["kind"] != "class" or match is None:
            continue
        versions.add((match["source"], match["version"]))
        config = _config_interface(entry)
        block = _block(types, config, required=True, single=True)
        if match["kind"] is None:
            derived["provider"] = block
        else:
            table = "resources" if match["kind"] == "resources" else "data_sources"
            derived[table][match["type"]] = block
    if len(versions) != 1 or derived["provider"] is None:
        raise ValueError(f"{assembly['name']}: expected one provider, found {sorted(versions)}")
    ((derived["source"], derived["version"]),) = versions
    return derived


def _config_interface(entry: dict[str, Any]) -> str:
    (config,) = [p for p in entry["initializer"]["parameters"] if p["name"] == "config"]
    return config["type"]["fqn"]


def _block(types: dict[str, Any], fqn: str, *, required: bool, single: bool) -> dict[str, Any]:
    attributes: dict[str, bool] = {}
    blocks: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        name = terraform_name(prop)
        is_required = not prop.get("optional", False)
        struct = _struct(types, prop["type"])
        if struct is None:
            attributes[name] = is_required
        else:
            single_item = "fqn" in prop["type"]  # the struct itself, not an array of them
            blocks[name] = _block(types, struct, required=is_required, single=single_item)
    return {"attributes": attributes, "blocks": blocks, "required": required, "single": single}


def _struct(types: dict[str, Any], type_ref: dict[str, Any]) -> str | None:
    """The struct interface a property's type refers to (itself, in an array, in a union)."""
    if "fqn" in type_ref:
        entry = types.get(type_ref["fqn"])
        return type_ref["fqn"] if entry and entry.get("datatype") else None
    if "collection" in type_ref:
        if type_ref["collection"]["kind"] != "array":
            return None  # a map: an argument
        return _struct(types, type_ref["collection"]["elementtype"])
    for member in type_ref.get("union", {}).get("types", []):
        if found := _struct(types, member):
            return found
    return None


def terraform_name(prop: dict[str, Any]) -> str:
    """The Terraform name of a jsii property: its registry link's anchor, else snake_case.

    >>> terraform_name({"name": "sourceMd5Hash", "docs": {"summary": "Docs at Terraform "
    ...     "Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/"
    ...     "docs/resources/storage_bucket_object#source_md5hash StorageBucketObject#source_md5hash}"}})
    'source_md5hash'
    >>> terraform_name({"name": "terminalStorageClass", "docs": {}})
    'terminal_storage_class'
    """
    anchors = _ANCHOR.findall(" ".join(_doc_strings(prop.get("docs", {}))))
    return anchors[-1] if anchors else _CAMEL.sub("_", prop["name"]).lower()


def _doc_strings(docs: dict[str, Any]) -> list[str]:
    # The link sits in summary, remarks or, where jsii took a line for a tag, in `custom`.
    found = []
    for value in docs.values():
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            found.extend(_doc_strings(value))
    return found


def _write_atomically(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(path)
    except OSError:
        pass  # a read-only checkout: derive again next time
