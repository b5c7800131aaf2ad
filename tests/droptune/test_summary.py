"""Dataset-level checks after a scan: duplicates, labels, token limits, dataset-size limits.

Gemini's real limits (1M examples, 1 GiB, 131k tokens per example) are patched down to tiny
numbers so that tiny files can cross them.
"""

from __future__ import annotations

import json

import pytest

from droptune import limits


def chat_lines(n: int, answer: str = "fine") -> str:
    return "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
        + "\n"
        for i in range(n)
    )


def by_code(report, code: str) -> list:
    return [issue for issue in report.issues if issue.code == code]


def test_too_many_examples_for_gemini(validate_data, monkeypatch) -> None:
    monkeypatch.setitem(limits.GEMINI_LIMITS, "train_examples", 3)
    report = validate_data(chat_lines(4), backend="gemini")
    assert not report.valid
    (issue,) = by_code(report, "too_many_examples")
    assert issue.line is None
    check = next(c for c in report.limits if c.name == "train_examples")
    assert (check.limit, check.value, check.ok) == (3, 4, False)


def test_as_many_examples_as_the_limit_is_fine(validate_data, monkeypatch) -> None:
    monkeypatch.setitem(limits.GEMINI_LIMITS, "train_examples", 4)
    assert validate_data(chat_lines(4), backend="gemini").valid


def test_file_too_large_for_gemini(validate_data, monkeypatch) -> None:
    monkeypatch.setitem(limits.GEMINI_LIMITS, "file_bytes", 100)
    data = chat_lines(3)
    report = validate_data(data, backend="gemini")
    assert not report.valid
    assert report.issue_counts == {"file_too_large": 1}
    check = next(c for c in report.limits if c.name == "file_bytes")
    assert (check.limit, check.value) == (100, len(data.encode()))


def test_over_token_limit_for_gemini(validate_data, monkeypatch) -> None:
    monkeypatch.setitem(limits.GEMINI_LIMITS, "tokens_per_example", 20)
    lines = chat_lines(1) + chat_lines(1, answer="x" * 100).replace("q0", "q1")
    report = validate_data(lines, backend="gemini")
    assert not report.valid
    assert [(i.line, i.path) for i in by_code(report, "over_token_limit")] == [(2, "$")]
    assert report.tokens.limit == 20
    assert report.tokens.over_limit == 1


def test_token_limits_need_token_counts(tmp_path, monkeypatch) -> None:
    from droptune import pipeline
    from droptune.config import RunConfig

    monkeypatch.setitem(limits.GEMINI_LIMITS, "tokens_per_example", 1)
    path = tmp_path / "data.jsonl"
    path.write_text(chat_lines(2))
    report = pipeline.validate(
        str(path), RunConfig(min_examples=1, backend="gemini"), count_tokens=False
    )
    assert report.valid
    assert report.tokens is None


def test_over_max_length_is_a_warning_for_the_custom_backend(validate_data) -> None:
    # EstimateCounter: ceil(len("q0" + 40 x "x") / 4) + 2 x 4 = 19 tokens.
    report = validate_data(chat_lines(1, answer="x" * 40), max_length=18)
    assert report.valid
    assert report.issue_counts == {"over_max_length": 1}
    assert report.tokens.max == 19
    assert report.tokens.histogram == {"edges": [19, 20], "counts": [1]}


def test_the_token_histogram_counts_every_example_once(validate_data) -> None:
    lines = chat_lines(40, answer="x" * 40) + chat_lines(3, answer="y" * 400)
    tokens = validate_data(lines, max_length=2048).tokens
    edges, counts = tokens.histogram["edges"], tokens.histogram["counts"]
    assert sum(counts) == tokens.examples == 43
    assert edges[0] == tokens.min and edges[-2] <= tokens.max < edges[-1]
    assert len(counts) == len(edges) - 1 <= 30 and counts[0] >= 40 and counts[-1] == 3
    assert validate_data(chat_lines(1, answer="x" * 40), max_length=19).issue_counts == {}


def test_duplicates_point_at_the_first_copy(validate_data) -> None:
    report = validate_data(chat_lines(2) + chat_lines(2) + chat_lines(1))
    dups = by_code(report, "duplicate_example")
    assert [(i.line, i.message) for i in dups] == [
        (3, "same example as line 1"),
        (4, "same example as line 2"),
        (5, "same example as line 1"),
    ]
    assert report.valid


def test_duplicates_compare_the_converted_example(validate_data) -> None:
    # The same question in two formats of key pair is the same canonical example.
    report = validate_data('{"question": "q", "answer": "a"}\n{"prompt": "q", "response": "a"}\n')
    assert report.issue_counts == {"duplicate_example": 1}


@pytest.mark.parametrize(
    ("majority", "minority", "warned"),
    [(10, 1, True), (9, 1, False), (20, 2, True), (19, 2, False)],
)
def test_label_imbalance_from_ten_to_one(validate_data, majority, minority, warned) -> None:
    rows = [{"text": f"a{i}", "label": "a"} for i in range(majority)]
    rows += [{"text": f"b{i}", "label": "b"} for i in range(minority)]
    report = validate_data("".join(json.dumps(r) + "\n" for r in rows))
    assert ("label_imbalance" in report.issue_counts) is warned
    assert report.counts["labels"] == {"a": majority, "b": minority}


def test_labels_are_listed_most_frequent_first(validate_data) -> None:
    rows = [("x", "neg"), ("y", "pos"), ("z", "pos"), ("w", 1)]
    data = "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows)
    assert list(validate_data(data).counts["labels"].items()) == [("pos", 2), ("neg", 1), ("1", 1)]


def test_min_examples(validate_data) -> None:
    report = validate_data(chat_lines(2), min_examples=3)
    assert report.issue_counts == {"too_few_examples": 1}
    assert validate_data(chat_lines(3), min_examples=3).valid


def test_invalid_records_do_not_count_towards_min_examples(validate_data) -> None:
    data = chat_lines(2) + '{"messages": [{"role": "user", "content": "only"}]}\n'
    report = validate_data(data, min_examples=3)
    assert {"last_turn_not_assistant", "too_few_examples"} <= set(report.issue_counts)
