"""The issue catalogue: stable codes, every one documented, docs generated from the table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from droptune.issues import CATALOGUE, Issue, IssueLog, Severity, catalogue_markdown

DOCS = Path(__file__).parents[2] / "docs" / "error-codes.md"


def test_codes_are_snake_case_and_fully_described() -> None:
    for code, kind in CATALOGUE.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code
        assert kind.code == code
        assert kind.severity in (Severity.ERROR, Severity.WARNING)
        assert kind.summary.endswith("."), code
        assert kind.hint, code


def test_gemini_validator_names_are_kept() -> None:
    google = {
        "missing_contents_list",
        "invalid_content_item",
        "content_item_missing_key",
        "missing_or_invalid_parts",
        "invalid_part",
        "missing_text",
        "consecutive_turns",
    }
    assert google <= set(CATALOGUE)


def test_warnings_are_the_usable_kinds() -> None:
    warnings = {c for c, k in CATALOGUE.items() if k.severity == Severity.WARNING}
    assert warnings == {
        "bom",
        "crlf_line_endings",
        "blank_line",
        "unknown_field",
        "template_placeholder",
        "undeclared_tool",
        "duplicate_example",
        "over_max_length",
        "label_imbalance",
        "tokenizer_unavailable",
        "weight_unsupported",
        "reasoning_unsupported",
        "template_drops_reasoning",
    }


def test_issue_takes_severity_and_hint_from_the_catalogue() -> None:
    issue = Issue("empty_text", "the answer is empty", line=3, path="$.answer", file="f.jsonl")
    assert issue.severity == Severity.ERROR
    assert issue.hint == CATALOGUE["empty_text"].hint
    assert issue.to_dict() == {
        "code": "empty_text",
        "message": "the answer is empty",
        "line": 3,
        "path": "$.answer",
        "file": "f.jsonl",
        "severity": "error",
        "hint": CATALOGUE["empty_text"].hint,
    }


def test_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        Issue("no_such_code", "x")


def test_issue_log_counts_everything_and_keeps_the_first_few() -> None:
    log = IssueLog(cap=2)
    for line in range(5):
        log.add(Issue("empty_text", "x", line=line))
    log.add(Issue("blank_line", "x", line=9))
    assert log.counts == {"empty_text": 5, "blank_line": 1}
    assert [(i.code, i.line) for i in log.examples] == [
        ("empty_text", 0),
        ("empty_text", 1),
        ("blank_line", 9),
    ]
    assert (log.errors, log.warnings) == (5, 1)


def test_catalogue_markdown_has_one_row_per_code() -> None:
    text = catalogue_markdown()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(CATALOGUE)
    assert all(row.count(" | ") == 3 for row in rows)  # pipes in hints are escaped


def test_docs_error_codes_are_generated_from_the_catalogue() -> None:
    if not DOCS.exists():
        pytest.skip("docs/error-codes.md not written yet")
    assert DOCS.read_text() == catalogue_markdown(), (
        "regenerate: python -m droptune.issues > docs/error-codes.md"
    )
