"""terraform/ against its providers' own schemas, offline: every resource and data type, argument,
nested block and required argument, in the module and in each example.

The schemas come from the cdktf provider packages in the dev extra (tests/terraform/
provider_schema.py says how): hashicorp/google and hashicorp/google-beta 6.50.0, hashicorp/time
0.13.1, hashicorp/archive 2.7.1. A failure reads like `terraform validate`:

    terraform/storage.tf:12: google_storage_bucket.runs: no argument "locaton"; did you mean "location"? [unknown-argument]

The first run derives the schemas from the packages (about 10 s) and caches them in
build/provider-schemas/; later runs take well under a second.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.terraform.module import ROOT, TERRAFORM
from tests.terraform.provider_schema import schema
from tests.terraform.schema_check import (
    admits,
    check_directory,
    directories,
    render,
    required_providers,
    source_of,
)

# The provider versions whose schemas the check uses; the module docstrings state them.
SCHEMA_VERSIONS = {
    "hashicorp/google": "6.50.0",
    "hashicorp/google-beta": "6.50.0",
    "hashicorp/time": "0.13.1",
    "hashicorp/archive": "2.7.1",
}


def shown(directory: Path) -> str:
    return str(directory.relative_to(ROOT))


@pytest.mark.parametrize("directory", directories(TERRAFORM), ids=shown)
def test_every_block_matches_its_provider_schema(directory: Path):
    issues = check_directory(directory)
    assert not issues, "\n" + "\n".join(render(issue) for issue in issues)


@pytest.mark.parametrize("directory", directories(TERRAFORM), ids=shown)
def test_required_providers_admit_the_checked_schema_versions(directory: Path):
    providers = required_providers(directory)
    for name, requirement in providers.items():
        source = source_of(name, providers)
        if source in SCHEMA_VERSIONS and "version" in requirement:
            checked = SCHEMA_VERSIONS[source]
            assert admits(requirement["version"], checked), (
                f"{shown(directory)}: {name} = {requirement['version']!r} excludes {checked}, "
                "the version whose schema tests/terraform/test_schema.py checks against"
            )


def test_the_schemas_are_the_stated_provider_versions():
    found = {source: schema(source).version for source in SCHEMA_VERSIONS}
    assert found == SCHEMA_VERSIONS, (
        "a new package pin: update the versions stated here, in provider_schema.py, in "
        "pyproject.toml's dev extra and in terraform/versions.tf"
    )


def test_names_that_do_not_round_trip_through_camel_case_are_the_terraform_ones():
    google = schema("hashicorp/google")
    assert {"source_md5hash", "detect_md5hash"} <= set(
        google.resource("google_storage_bucket_object").attributes
    )
    assert "build" in google.resource("google_cloudbuild_trigger").blocks  # jsii: buildAttribute
    assert "hugepage_size_1g" in (
        google.resource("google_container_node_pool")
        .blocks["node_config"]
        .blocks["linux_node_config"]
        .blocks["hugepages_config"]
        .attributes
    )


# --- the checker itself, on deliberately wrong snippets ------------------------------------


def check(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / "main.tf").write_text(textwrap.dedent(source))
    return [render(issue) for issue in check_directory(tmp_path)]


def test_a_misspelt_argument_is_reported_with_file_line_and_nearest_name(tmp_path):
    issues = check(
        tmp_path,
        """\
        resource "google_storage_bucket" "typo" {
          locaton = "US"
        }
        """,
    )
    file = tmp_path / "main.tf"
    assert issues == [
        f'{file}:2: google_storage_bucket.typo: no argument "locaton"; did you mean "location"? [unknown-argument]',
        f'{file}:1: google_storage_bucket.typo: the argument "location" is required [missing-argument]',
        f'{file}:1: google_storage_bucket.typo: the argument "name" is required [missing-argument]',
    ]


def test_nested_blocks_are_checked_against_their_own_schema(tmp_path):
    issues = check(
        tmp_path,
        """\
        resource "google_storage_bucket" "nested" {
          name       = "b"
          location   = "US"
          versioning = { enabled = true }
          labels {
            team = "ml"
          }
          lifecycle_rule {
            condition {
              agee = 3
            }
          }
          dynamic "cors" {
            for_each = [1]
            content {
              origin  = ["*"]
              max_age = 60
            }
          }
          website {}
          website {}
        }
        """,
    )
    assert [issue.split(": ", 1)[1] for issue in issues] == [
        'google_storage_bucket.nested: "versioning" is a block, not an argument: '
        "write `versioning { ... }` [block-as-argument]",
        'google_storage_bucket.nested: "labels" is an argument, not a block: '
        "write `labels = ...` [argument-as-block]",
        'google_storage_bucket.nested.lifecycle_rule.condition: no argument "agee"; '
        'did you mean "age"? [unknown-argument]',
        'google_storage_bucket.nested.lifecycle_rule: the block "action" is required [missing-block]',
        'google_storage_bucket.nested.cors: no argument "max_age"; '
        'did you mean "max_age_seconds"? [unknown-argument]',
        'google_storage_bucket.nested: at most one "website" block is allowed here [too-many-blocks]',
    ]
    lines = [int(issue.split(":")[1]) for issue in issues]
    assert lines == [4, 5, 10, 8, 17, 21]


def test_the_provider_argument_picks_the_schema(tmp_path):
    beta_only = """\
        resource "google_project_service_identity" "agent" {
          %s
          service = "pubsub.googleapis.com"
        }
        """
    assert check(tmp_path, beta_only % "provider = google-beta") == []
    (issue,) = check(tmp_path, beta_only % "")
    assert 'hashicorp/google 6.50.0 has no resource type "google_project_service_identity"' in issue
    assert issue.endswith("[unknown-type]")


def test_a_provider_without_a_schema_package_fails(tmp_path):
    (issue,) = check(tmp_path, 'resource "random_id" "suffix" {\n  byte_length = 4\n}\n')
    assert "no schema for provider hashicorp/random" in issue


def test_terraform_data_and_provider_blocks_are_checked(tmp_path):
    issues = check(
        tmp_path,
        """\
        provider "google" {
          projet = "p"
        }
        resource "terraform_data" "build" {
          trigers_replace = ["x"]
        }
        """,
    )
    assert [issue.split(": ", 2)[2] for issue in issues] == [
        'no argument "projet"; did you mean "project"? [unknown-argument]',
        'no argument "trigers_replace"; did you mean "triggers_replace"? [unknown-argument]',
    ]


def test_a_local_module_call_is_checked_against_its_variables(tmp_path):
    module = tmp_path / "module"
    module.mkdir()
    (module / "variables.tf").write_text(
        'variable "project_id" {\n  type = string\n}\n'
        'variable "region" {\n  type    = string\n  default = "us-central1"\n}\n'
    )
    issues = check(tmp_path, 'module "m" {\n  source = "./module"\n  regoin = "eu"\n}\n')
    assert [issue.split(": ", 2)[2] for issue in issues] == [
        'no input "regoin"; did you mean "region"? [unknown-input]',
        'the input "project_id" is required [missing-input]',
    ]


@pytest.mark.parametrize(
    ("constraint", "version", "expected"),
    [
        ("~> 6.11", "6.50.0", True),
        ("~> 6.11", "6.10.0", False),
        ("~> 6.11", "7.0.0", False),
        ("~> 6.11.0", "6.11.4", True),
        ("~> 6.11.0", "6.12.0", False),
        ("~> 0.12", "0.13.1", True),
        (">= 2.4, < 3", "2.7.1", True),
        ("!= 2.7.1", "2.7.1", False),
    ],
)
def test_version_constraints(constraint, version, expected):
    assert admits(constraint, version) is expected
