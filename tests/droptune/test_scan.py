"""One pass over a source: format detection, per-record problems, token counting fallbacks."""

from __future__ import annotations

import json

import pytest

from droptune import pipeline, scan
from droptune.config import RunConfig


def jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def chat(user: str = "q", answer: str = "a") -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }


# --- format detection ----------------------------------------------------------------------
def test_format_decision_says_why(validate_data) -> None:
    report = validate_data(jsonl(chat("1"), chat("2")))
    assert report.format.name == "chat"
    assert report.format.container == "jsonl"
    assert report.format.reason.startswith("2 of the first 2 records match, e.g. {")
    assert report.format.title not in report.format.reason  # the title is said once


def test_a_file_that_does_not_parse_says_so_and_where(validate_data) -> None:
    report = validate_data(b'{"messages": [1]\n{"a": 2,\n')
    assert report.format.reason.startswith("not parsed: invalid JSON: ")
    assert report.format.reason.endswith(" at 1:17")
    assert report.counts == {"records": 0, "valid": 0, "invalid": 0}


def test_too_few_examples_says_how_many_of_how_many_records(validate_data) -> None:
    report = validate_data(jsonl(chat("1"), chat("2"), {"messages": 3}), min_examples=10)
    (issue,) = [i for i in report.issues if i.code == "too_few_examples"]
    assert issue.message == "2 valid examples of 3 records; at least 10 needed (min_examples)"


@pytest.mark.parametrize(("chat_records", "decided"), [(9, "chat"), (8, None)])
def test_one_odd_record_in_ten_is_a_mismatch_more_is_mixed(validate_data, chat_records, decided):
    records = [chat(f"q{i}") for i in range(chat_records)] + [{"text": "plain"}]
    report = validate_data(jsonl(*records))
    assert report.format.name == decided
    expected = "format_mismatch" if decided else "mixed_formats"
    assert expected in report.issue_counts


def test_detection_looks_at_the_first_records_only(validate_data, monkeypatch) -> None:
    monkeypatch.setattr(scan, "DETECTION_SAMPLE", 3)
    records = [chat(f"q{i}") for i in range(3)] + [{"text": f"t{i}"} for i in range(5)]
    report = validate_data(jsonl(*records))
    assert report.format.name == "chat"
    assert report.issue_counts["format_mismatch"] == 5
    assert report.counts == {"records": 8, "valid": 3, "invalid": 5}


def test_forced_format_skips_detection(validate_data) -> None:
    report = validate_data(jsonl({"question": "q", "answer": "a"}), format="chat")
    assert report.format.name == "chat"
    assert report.format.reason == "set by the run configuration (`format`)"
    assert [(i.code, i.line) for i in report.issues if i.line] == [("format_mismatch", 1)]


def test_column_map_renames_jsonl_keys(validate_data) -> None:
    report = validate_data(
        jsonl({"q": "2+2?", "a": "4"}, {"q": "3+3?", "a": "6"}),
        column_map={"q": "question", "a": "answer"},
    )
    assert report.valid
    assert report.format.name == "prompt_response"


# --- fields the format does not read ------------------------------------------------------
def test_each_unknown_field_is_warned_once_at_its_first_line(validate_data) -> None:
    records = [chat("1"), {**chat("2"), "id": 2}, {**chat("3"), "id": 3, "mesages": []}]
    report = validate_data(jsonl(*records))
    assert report.valid and report.counts["valid"] == 3  # ignored, not dropped
    found = [(i.code, i.line, i.path, i.severity) for i in report.issues]
    assert found == [
        ("unknown_field", 2, "$.id", "warning"),
        ("unknown_field", 3, "$.mesages", "warning"),
    ]
    assert report.issues[0].message == (
        "'id' is not a field of Chat messages (OpenAI style) (it reads functions, messages, "
        "tools), so it is ignored; 2 of 3 records have it"
    )


def test_a_messages_unread_key_is_warned_once_with_its_path(validate_data) -> None:
    """A misspelt `weight` would silently train on the turn it meant to skip."""
    user = {"role": "user", "content": "q", "name": "ann"}
    skipped = {"role": "assistant", "content": "a", "wieght": 0}
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    calling = {"role": "assistant", "content": None, "tool_calls": [call]}
    tool = {"role": "tool", "content": "{}", "tool_call_id": "c1", "name": "f"}
    records = [
        chat("1"),
        {"messages": [user, skipped, {"role": "user", "content": "q2"}, skipped]},
        {"messages": [{"role": "user", "content": "q"}, calling, tool, skipped]},
    ]
    report = validate_data(jsonl(*records))
    assert report.valid and report.counts["valid"] == 3
    found = [(i.code, i.line, i.path) for i in report.issues]
    assert found == [
        ("unknown_field", 2, "$.messages[0].name"),
        ("unknown_field", 2, "$.messages[1].wieght"),
    ]  # a tool's message reads its name
    assert "1 of 3 records have it" in report.issues[0].message
    assert report.issues[1].message.endswith(
        "so it is ignored; 2 of 3 records have it; did you mean 'weight'?"
    )


def test_fields_a_converter_reads_are_known(validate_data) -> None:
    records = [{"text": f"t{i}", "label": "a", "system": "s", "instruction": "i"} for i in range(2)]
    export = [
        {"session_id": 1, "id": 1, "role": "user", "content": "q"},
        {"session_id": 1, "id": 2, "related_message": 1, "role": "assistant", "content": "a"},
    ]
    assert validate_data(jsonl(*records)).issues == []
    assert validate_data(jsonl(*export)).issues == []


def test_renamed_columns_are_not_unknown(validate_data) -> None:
    report = validate_data(
        "q,a,note\n2+2?,4,easy\n", name="data.csv", column_map={"q": "question", "a": "answer"}
    )
    assert [(i.code, i.path) for i in report.issues] == [("unknown_field", "$.note")]


def test_preference_file_is_refused(validate_data) -> None:
    report = validate_data(jsonl({"prompt": "p", "chosen": "a", "rejected": "b"}))
    assert report.format.name == "preference"  # named in the JSON report too
    assert report.format.title == "Preference data"
    assert report.issue_counts == {"preference_data": 1}


def test_preference_record_inside_a_chat_file(validate_data) -> None:
    report = validate_data(
        jsonl(*(chat(f"q{i}") for i in range(9)), {"messages": [], "chosen": "a"})
    )
    assert [(i.code, i.line) for i in report.issues] == [("preference_data", 10)]


def test_only_non_objects(validate_data) -> None:
    report = validate_data("[1, 2, 3]", name="data.json")
    assert report.issue_counts == {"not_an_object": 1}
    assert report.counts["records"] == 3


def test_empty_file_is_not_reported_twice(validate_data) -> None:
    assert validate_data("").issue_counts == {"empty_file": 1}
    assert validate_data('{"text": \n').issue_counts == {"json_syntax": 1}


def test_gemini_backend_refuses_plain_text(validate_data) -> None:
    report = validate_data(jsonl({"text": "once upon a time"}), backend="gemini")
    assert report.issue_counts == {"text_only_unsupported": 1, "too_few_examples": 1}


def test_gemini_backend_refuses_tool_turns(validate_data) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    report = validate_data(jsonl(record), backend="gemini")
    assert [(i.code, i.line, i.path) for i in report.issues if i.line] == [
        ("tool_calls_unsupported", 1, "$")
    ]
    assert validate_data(jsonl(record)).valid


def test_placeholder_is_reported_once_per_example(validate_data) -> None:
    record = chat("Hi {{user}}", "I am {{name}}")
    report = validate_data(jsonl(record))
    assert report.valid
    assert [(i.code, i.path) for i in report.issues] == [
        ("template_placeholder", "$.messages[0].content")
    ]


def test_invalid_examples_are_not_warned_about_placeholders(validate_data) -> None:
    record = {"messages": [{"role": "user", "content": "{{x}}"}]}
    assert "template_placeholder" not in validate_data(jsonl(record)).issue_counts


def test_issue_examples_are_capped_but_all_counted(validate_data) -> None:
    data = jsonl(*[{"messages": []} for _ in range(30)])
    report = validate_data(data, max_issues_per_code=5)
    assert report.issue_counts["missing_messages"] == 30
    assert sum(i.code == "missing_messages" for i in report.issues) == 5


def test_issues_are_sorted_by_line_dataset_issues_last(validate_data) -> None:
    data = jsonl(chat("1"), {"messages": []}, chat("1"))
    report = validate_data(data, min_examples=5)
    assert [(i.code, i.line) for i in report.issues] == [
        ("missing_messages", 2),
        ("duplicate_example", 3),
        ("too_few_examples", None),
    ]


def test_progress_is_called_with_bytes_read(tmp_path, estimate) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl(chat("1"), chat("2")))
    calls = []
    pipeline.validate(
        str(path), RunConfig(min_examples=1), counter=estimate, progress=lambda *a: calls.append(a)
    )
    assert calls and all(total == path.stat().st_size for _, total in calls)


def test_counts_and_bytes(validate_data) -> None:
    data = jsonl(chat("1"), {"messages": []}, chat("2"))
    report = validate_data(data)
    assert report.counts == {"records": 3, "valid": 2, "invalid": 1}
    assert report.bytes == len(data)


def test_lone_surrogate_in_a_json_array_is_reported_not_raised(validate_data) -> None:
    report = validate_data('[{"text": "bad \\ud800 text"}]', name="data.json")
    assert not report.valid
    assert ("invalid_utf8", 1) in [(i.code, i.line) for i in report.issues]


def test_an_integer_beyond_64_bits_in_a_json_array_is_said_to_be_one(validate_data) -> None:
    tools = '[{"type": "function", "function": {"name": "f", "parameters": {"maximum": 1%s}}}]'
    record = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", '
    record += '"content": "a"}], "tools": %s}' % (tools % ("0" * 29))
    report = validate_data(f"[{record}]", name="data.json")
    issue = report.issues[0]  # then too_few_examples: the one record was refused
    assert (issue.code, issue.line) == ("invalid_type", 1)
    assert "integer beyond 64 bits" in issue.message


# --- token counting ------------------------------------------------------------------------
def test_no_token_counts_means_no_token_stats(tmp_path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl(chat()))
    report = pipeline.validate(str(path), RunConfig(min_examples=1), count_tokens=False)
    assert report.tokens is None
    assert report.cost is None


def test_estimated_token_stats(validate_data) -> None:
    report = validate_data(jsonl(chat("abcd", "efgh"), chat("a" * 40, "b" * 40)), epochs=2)
    # ceil(8 / 4) + 8 = 10 and ceil(80 / 4) + 8 = 28.
    tokens = report.tokens
    assert (tokens.method, tokens.min, tokens.max, tokens.total) == ("estimate", 10, 28, 38)
    assert (tokens.epochs, tokens.billable, tokens.limit) == (2, 76, 2048)


@pytest.mark.slow
def test_missing_base_model_falls_back_to_estimate(tmp_path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl(chat()))
    config = RunConfig(min_examples=1, base_model=str(tmp_path / "no-such-model"))
    report = pipeline.validate(str(path), config)
    assert report.valid  # a warning: the counts are estimates, the data is fine
    assert report.issue_counts == {"tokenizer_unavailable": 1}
    assert report.tokens.method == "estimate"


def test_a_turn_of_weight_0_is_a_warning_for_gemini_which_learns_it(validate_data) -> None:
    skipped = {"role": "assistant", "content": "WRONG", "weight": 0}
    record = {"messages": [{"role": "user", "content": "q"}, skipped, *chat("1")["messages"]]}
    gemini = validate_data(jsonl(record), backend="gemini")
    assert gemini.valid
    found = [(i.code, i.line, i.path, i.severity) for i in gemini.issues]
    assert found == [("weight_unsupported", 1, "$.messages[1].content", "warning")]
    assert validate_data(jsonl(record), backend="custom").issues == []  # the trainer skips it


def test_reasoning_is_a_warning_for_gemini_whose_data_has_no_place_for_it(validate_data) -> None:
    thought = {"role": "assistant", "content": "4", "reasoning_content": "2 and 2 make 4"}
    record = {"messages": [{"role": "user", "content": "2+2?"}, thought]}
    gemini = validate_data(jsonl(record), backend="gemini")
    assert gemini.valid
    found = [(i.code, i.line, i.path, i.severity) for i in gemini.issues]
    assert found == [("reasoning_unsupported", 1, "$.messages[1].content", "warning")]


@pytest.mark.slow
def test_tool_data_the_templates_would_drop_is_refused(tmp_path, real_counter) -> None:
    """SmolLM2's template renders the content alone: a turn that is a tool call would be
    learned as an empty answer, and reasoning is left out of the answers."""
    from droptune.tokens import unrendered

    assert unrendered(real_counter.tokenizer) == {"tool_calls", "tools", "reasoning_content"}
    call = {"type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    calling = [
        {"role": "user", "content": "Where is order 7?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "shipped"},
        {"role": "assistant", "content": "It has shipped."},
    ]
    thinking = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Two and two."},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text(jsonl({"messages": calling}, {"messages": thinking}, chat("1")))
    report = pipeline.validate(str(path), RunConfig(min_examples=1), counter=real_counter)
    found = [(i.code, i.line, i.severity) for i in report.issues]
    assert found == [
        ("template_drops_tools", 1, "error"),
        ("template_drops_reasoning", 2, "warning"),
    ]
    assert "leaves out tool_calls" in report.issues[0].message
    assert report.counts["valid"] == 2
