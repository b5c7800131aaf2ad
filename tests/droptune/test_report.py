"""Reports: facts as data, rendered as `file:line: $.path: ...` lines and as Markdown."""

from __future__ import annotations

import orjson

from droptune.issues import Issue
from droptune.report import (
    FormatDecision,
    LimitCheck,
    Report,
    issue_line,
    render_issue_lines,
    render_markdown,
)


def report(*issues: Issue, **counts) -> Report:
    issue_counts: dict[str, int] = {}
    for issue in issues:
        issue_counts[issue.code] = issue_counts.get(issue.code, 0) + 1
    return Report(
        file="data.jsonl",
        backend="custom",
        base_model="m",
        format=FormatDecision("jsonl", "chat", "Chat messages (OpenAI style)", "3 of 3 records"),
        counts={"records": 3, "valid": 2, "invalid": 1, **counts},
        issues=list(issues),
        issue_counts=issue_counts,
        limits=[LimitCheck("min_examples", 10, 2, False)],
    )


def test_issue_line_formats() -> None:
    full = Issue("empty_text", "the answer is empty", line=4, path="$.answer", file="a.jsonl")
    assert issue_line(full, "x") == "a.jsonl:4: $.answer: error: the answer is empty [empty_text]"
    column = Issue("invalid_utf8", "bad byte", line=2, column=7)
    assert issue_line(column, "b.jsonl") == "b.jsonl:2:7: error: bad byte [invalid_utf8]"
    dataset = Issue("label_imbalance", "a has 10, b 1")
    assert issue_line(dataset, "c.csv") == "c.csv: warning: a has 10, b 1 [label_imbalance]"


def test_render_issue_lines_in_report_order() -> None:
    r = report(Issue("empty_text", "e", line=2, path="$.text"), Issue("too_few_examples", "t"))
    assert render_issue_lines(r) == [
        "data.jsonl:2: $.text: error: e [empty_text]",
        "data.jsonl: error: t [too_few_examples]",
    ]


def test_valid_errors_and_warnings() -> None:
    assert report().valid
    warned = report(Issue("blank_line", "b", line=1), Issue("blank_line", "b", line=2))
    assert (warned.valid, warned.errors, warned.warnings) == (True, 0, 2)
    failed = report(Issue("blank_line", "b", line=1), Issue("json_syntax", "j", line=2))
    assert (failed.valid, failed.errors, failed.warnings) == (False, 1, 1)


def test_markdown_has_verdict_codes_and_locations() -> None:
    r = report(
        Issue("duplicate_example", "same as line 1", line=3, path="$"),
        Issue("empty_text", "empty | answer", line=2, path="$.answer"),
        labels={"pos": 2, "neg": 1},
    )
    text = render_markdown(r)
    assert text.startswith("# Validation report: `data.jsonl`\n")
    assert "**Verdict: invalid** — 1 error(s), 1 warning(s)." in text
    assert "- Format: **Chat messages (OpenAI style)** (jsonl). 3 of 3 records" in text
    assert "- Labels: `pos` 2, `neg` 1" in text
    assert "| min_examples | 2 | 10 | **no** |" in text
    assert "| code | severity | count | how to fix |" in text
    # Errors are listed before warnings.
    assert text.index("| `empty_text` | error | 1 |") < text.index(
        "| `duplicate_example` | warning | 1 |"
    )
    assert "data.jsonl:2: $.answer: error: empty | answer [empty_text]" in text


def test_markdown_of_a_clean_report_has_no_issue_table() -> None:
    text = render_markdown(report())
    assert "**Verdict: valid** — 0 error(s), 0 warning(s)." in text
    assert "## Issues" not in text


def test_to_dict_is_json() -> None:
    r = report(Issue("empty_text", "e", line=2, path="$.text"))
    data = orjson.loads(orjson.dumps(r.to_dict()))
    assert data["valid"] is False
    assert data["format"]["name"] == "chat"
    assert data["issues"] == [
        {
            "code": "empty_text",
            "message": "e",
            "line": 2,
            "path": "$.text",
            "severity": "error",
            "hint": r.issues[0].hint,
        }
    ]
    assert data["limits"][0] == {
        "name": "min_examples",
        "limit": 10,
        "value": 2,
        "ok": False,
        "detail": "",
    }


def test_markdown_of_a_real_validation(validate_data) -> None:
    r = validate_data('{"question": "q", "answer": ""}\n{"question": "q2", "answer": "a"}\n')
    text = render_markdown(r)
    assert "**Verdict: invalid**" in text
    assert "## Tokens" in text and "estimate" in text
    assert f"{r.file}:1: $.answer: error: the assistant message is empty [empty_text]" in text
