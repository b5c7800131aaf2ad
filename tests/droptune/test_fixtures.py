"""Fixture folders, discovered automatically.

- `tests/fixtures/valid/<format>/<file>`: must validate with no issues at all and be detected
  as `<format>`. An optional `<file>.config.yaml` holds run configuration (e.g. `column_map`).
- `tests/fixtures/invalid/<code>/<file>` with `<file>.expect.yaml`:
  `{config?: {...}, issues: [{code, line, path?}, ...]}`; every listed issue must be reported,
  and a file with an expected error must be judged invalid.

Every code of the catalogue needs a fixture folder or an entry in `COVERED_BY_UNIT_TESTS`
(inputs that are huge, need exact bytes such as a BOM, or need a special setup).
Runs use `min_examples: 1` unless the fixture's config says otherwise, and EstimateCounter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from droptune import pipeline
from droptune.config import RunConfig
from droptune.formats import BY_NAME, FORMATS
from droptune.issues import CATALOGUE, Severity
from droptune.tokens import EstimateCounter

FIXTURES = Path(__file__).parents[1] / "fixtures"
VALID, INVALID = FIXTURES / "valid", FIXTURES / "invalid"
SIDECARS = (".expect.yaml", ".config.yaml")
REPO = Path(__file__).parents[2]

# Codes without a fixture folder, and the test that covers each instead.
COVERED_BY_UNIT_TESTS = {
    "invalid_utf8": "tests/droptune/test_reader.py::test_invalid_utf8_in_jsonl_is_located_exactly",
    "bom": "tests/droptune/test_reader.py::test_bom_is_reported_and_skipped",
    "crlf_line_endings": "tests/droptune/test_reader.py::test_crlf_line_endings_warn_once",
    # A fixture would be a 32 MiB file: the unit test lowers the limit instead.
    "record_too_large": "tests/droptune/test_reader.py::test_a_line_too_long_for_any_example_is_skipped_unread",
    "too_many_examples": "tests/droptune/test_summary.py::test_too_many_examples_for_gemini",
    "file_too_large": "tests/droptune/test_summary.py::test_file_too_large_for_gemini",
    "over_token_limit": "tests/droptune/test_summary.py::test_over_token_limit_for_gemini",
    "tokenizer_unavailable": "tests/droptune/test_scan.py::test_missing_base_model_falls_back_to_estimate",
    "invalid_config": "tests/droptune/intake/test_flow.py::test_unknown_config_key_rejects_with_report",
    "source_unavailable": "tests/droptune/intake/test_flow.py::test_object_replaced_before_reading_is_rejected",
    # Found by the real tokenizer's chat template; fixtures count with the estimate.
    "template_drops_tools": "tests/droptune/test_scan.py::test_tool_data_the_templates_would_drop_is_refused",
    "template_drops_reasoning": "tests/droptune/test_scan.py::test_tool_data_the_templates_would_drop_is_refused",
}

# Catalogue codes nothing in droptune emits yet; their fixtures are expected to fail.
NOT_EMITTED_YET: dict[str, str] = {}


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(SIDECARS))


def sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def run(path: Path, config: dict):
    values = {"min_examples": 1, **(config or {})}
    run_config = RunConfig.from_mapping(values, source=str(sidecar(path, ".config.yaml")))
    return pipeline.validate(str(path), run_config, counter=EstimateCounter())


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def invalid_params() -> list:
    params = []
    for path in data_files(INVALID):
        marks = []
        if path.parent.name in NOT_EMITTED_YET:
            marks = [pytest.mark.xfail(strict=True, reason=NOT_EMITTED_YET[path.parent.name])]
        params.append(pytest.param(path, id=fixture_id(path), marks=marks))
    return params


@pytest.mark.parametrize("path", data_files(VALID), ids=fixture_id)
def test_valid_fixture(path: Path) -> None:
    config_file = sidecar(path, ".config.yaml")
    config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    report = run(path, config)
    found = [f"{i.code} line {i.line} {i.path}: {i.message}" for i in report.issues]
    assert found == [], f"{fixture_id(path)} should have no issues"
    assert report.format.name == path.parent.name
    assert report.counts["invalid"] == 0
    assert report.counts["valid"] >= 1


@pytest.mark.parametrize("path", invalid_params())
def test_invalid_fixture(path: Path) -> None:
    expect = yaml.safe_load(sidecar(path, ".expect.yaml").read_text())
    report = run(path, expect.get("config"))
    reported = {(i.code, i.line, i.path) for i in report.issues}
    reported_anywhere = {(code, line) for code, line, _ in reported}
    for issue in expect["issues"]:
        if "path" in issue:
            wanted = (issue["code"], issue["line"], issue["path"])
            assert wanted in reported, f"{wanted} not among {sorted(reported, key=str)}"
        else:
            wanted = (issue["code"], issue["line"])
            assert wanted in reported_anywhere, f"{wanted} not among {sorted(reported, key=str)}"
    if any(CATALOGUE[i["code"]].severity == Severity.ERROR for i in expect["issues"]):
        assert not report.valid


def test_fixture_folders_are_named_after_real_codes_and_formats() -> None:
    assert {p.name for p in INVALID.iterdir()} <= set(CATALOGUE)
    assert {p.name for p in VALID.iterdir()} <= set(BY_NAME)


def test_every_format_has_a_valid_fixture() -> None:
    missing = [f.name for f in FORMATS if not data_files(VALID / f.name)]
    assert missing == []


def test_every_invalid_fixture_lists_its_folder_code() -> None:
    for path in data_files(INVALID):
        expect_file = sidecar(path, ".expect.yaml")
        assert expect_file.exists(), f"{fixture_id(path)} has no .expect.yaml"
        expect = yaml.safe_load(expect_file.read_text())
        assert set(expect) <= {"issues", "config"}, expect_file
        codes = {issue["code"] for issue in expect["issues"]}
        assert path.parent.name in codes, fixture_id(path)
        assert codes <= set(CATALOGUE), fixture_id(path)


def test_every_sidecar_has_its_data_file() -> None:
    for suffix in SIDECARS:
        for side in FIXTURES.rglob(f"*{suffix}"):
            assert side.with_name(side.name.removesuffix(suffix)).is_file(), side


def test_every_catalogue_code_is_covered() -> None:
    with_fixture = {p.name for p in INVALID.iterdir() if data_files(p)}
    uncovered = set(CATALOGUE) - with_fixture - set(COVERED_BY_UNIT_TESTS)
    assert uncovered == set(), f"add tests/fixtures/invalid/<code>/ for {sorted(uncovered)}"


def test_unit_test_references_exist() -> None:
    assert set(COVERED_BY_UNIT_TESTS) <= set(CATALOGUE)
    for code, ref in COVERED_BY_UNIT_TESTS.items():
        file, name = ref.split("::")
        source = (REPO / file).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{code}: {ref} not found"
