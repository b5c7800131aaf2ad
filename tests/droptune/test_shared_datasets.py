"""Real datasets written by others (`../shared/datasets`) get the verdicts we know they deserve.

Facts asserted here were read off `droptune validate FILE --json --no-tokens` and checked
against the files themselves (e.g. lamini_docs line 424 really has an empty answer).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson
import pytest

from droptune import pipeline
from droptune.bpe_count import WordCounter
from droptune.config import RunConfig
from droptune.report import Report
from droptune.scan import Scan
from droptune.tokens import EstimateCounter

DATASETS = (Path(__file__).parents[2] / ".." / "shared" / "datasets").resolve()

pytestmark = pytest.mark.skipif(
    not DATASETS.is_dir(), reason=f"shared datasets not checked out at {DATASETS}"
)


@cache
def validate(name: str, **config) -> Report:
    """Validate without token counts (they are checked in the tests that need them)."""
    return pipeline.validate(str(DATASETS / name), RunConfig(**config), count_tokens=False)


def located(report: Report, code: str) -> list[tuple[int | None, str | None]]:
    return [(i.line, i.path) for i in report.issues if i.code == code]


def test_lamini_docs_has_one_empty_answer() -> None:
    report = validate("lamini_docs/lamini_docs.jsonl")
    assert not report.valid
    assert report.format.name == "prompt_response"
    assert report.issue_counts == {"crlf_line_endings": 1, "empty_text": 1}
    assert located(report, "empty_text") == [(424, "$.answer")]
    assert report.counts == {"records": 1400, "valid": 1399, "invalid": 1}


def test_toy_chat_starts_one_conversation_with_the_assistant() -> None:
    report = validate("openai_cookbook/toy_chat_fine_tuning.jsonl")
    assert not report.valid
    assert report.format.name == "chat"
    assert located(report, "first_turn_not_user") == [(4, "$.messages[1].content")]
    assert located(report, "too_few_examples") == [(None, None)]
    assert report.counts == {"records": 5, "valid": 4, "invalid": 1}


def test_toy_chat_line_5_is_longer_than_max_length_by_estimate() -> None:
    path = str(DATASETS / "openai_cookbook/toy_chat_fine_tuning.jsonl")
    report = pipeline.validate(path, RunConfig(), counter=EstimateCounter())
    assert located(report, "over_max_length") == [(5, "$")]
    assert report.tokens.method == "estimate"
    assert report.tokens.max > 2048


@pytest.mark.slow
def test_toy_chat_line_5_is_longer_than_max_length_exactly(real_counter) -> None:
    path = str(DATASETS / "openai_cookbook/toy_chat_fine_tuning.jsonl")
    report = pipeline.validate(path, RunConfig(), counter=real_counter)
    assert located(report, "over_max_length") == [(5, "$")]
    assert report.tokens.method == "exact"
    assert report.tokens.examples == 4


def test_alpaca_en_demo_is_a_valid_alpaca_array() -> None:
    report = validate("llamafactory/alpaca_en_demo.json")
    assert report.valid
    assert (report.format.container, report.format.name) == ("json_array", "alpaca")
    assert report.counts["valid"] == report.counts["records"] == 999
    assert set(report.issue_counts) == {"duplicate_example"}


def test_glaive_toolcall_is_valid_sharegpt_for_the_custom_backend() -> None:
    report = validate("llamafactory/glaive_toolcall_en_demo.json")
    assert report.valid
    assert report.format.name == "sharegpt"
    assert report.counts["valid"] == 300


def test_glaive_toolcall_tool_turns_are_refused_by_gemini() -> None:
    report = validate("llamafactory/glaive_toolcall_en_demo.json", backend="gemini")
    assert not report.valid
    assert report.issue_counts["tool_calls_unsupported"] == report.counts["invalid"] > 0
    assert set(report.issue_counts) == {"tool_calls_unsupported", "duplicate_example"}
    assert located(report, "tool_calls_unsupported")[0] == (2, "$")


def test_c4_demo_is_plain_text() -> None:
    report = validate("llamafactory/c4_demo.jsonl")
    assert report.valid
    assert report.format.name == "text"
    assert report.issue_counts == {}


def test_c4_demo_cannot_tune_gemini() -> None:
    report = validate("llamafactory/c4_demo.jsonl", backend="gemini")
    assert "text_only_unsupported" in report.issue_counts


def test_identity_is_valid_alpaca_with_placeholder_warnings() -> None:
    report = validate("llamafactory/identity.json")
    assert report.valid
    assert report.format.name == "alpaca"
    assert report.issue_counts == {"template_placeholder": 85}
    assert located(report, "template_placeholder")[0] == (2, "$.output")


def test_v1_sft_demo_is_valid_chat() -> None:
    report = validate("llamafactory/v1_sft_demo.jsonl")
    assert report.valid
    assert report.format.name == "chat"
    assert report.counts["valid"] == 500


def test_reason_tool_use_demo_is_clean_chat() -> None:
    report = validate("llamafactory/reason_tool_use_demo_50.jsonl")
    assert report.valid
    assert report.format.name == "chat"
    assert report.issue_counts == {}
    assert report.counts["valid"] == 50


def test_dataset_info_is_not_a_dataset() -> None:
    report = validate("llamafactory/dataset_info.json")
    assert not report.valid
    assert report.format.name is None
    assert report.issue_counts == {"json_syntax": 1}
    assert located(report, "json_syntax") == [(1, None)]


@pytest.mark.parametrize("backend", ["custom", "gemini"])
def test_gemini_tuning_example_is_valid_gemini_contents(backend: str) -> None:
    report = validate(
        "gemini_tuning/patient_1_glucose_examples.jsonl", backend=backend, min_examples=1
    )
    assert report.valid
    assert report.format.name == "gemini_contents"
    assert report.issue_counts == {}


def test_sst2_is_binary_classification_with_a_header() -> None:
    report = validate("classification/sst2/train.tsv")
    assert report.valid
    assert (report.format.container, report.format.name) == ("delimited", "classification")
    assert set(report.counts["labels"]) == {"0", "1"}
    assert report.counts["records"] == report.counts["valid"] == 60614
    assert set(report.issue_counts) == {"duplicate_example"}


def test_agnews_is_headerless_four_label_classification() -> None:
    report = validate("classification/agnews/train_pool.tsv")
    assert report.valid
    assert report.format.name == "classification"
    assert set(report.counts["labels"]) == {"World", "Sports", "Business", "Sci/Tech"}
    lines = (DATASETS / "classification/agnews/train_pool.tsv").read_bytes().count(b"\n")
    assert report.counts["records"] == report.counts["valid"] == lines
    assert "label_imbalance" not in report.issue_counts


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "lamini_docs/lamini_docs.jsonl",
        "llamafactory/c4_demo.jsonl",
        "llamafactory/alpaca_en_demo.json",
        "llamafactory/glaive_toolcall_en_demo.json",
        "llamafactory/identity.json",
        "llamafactory/v1_sft_demo.jsonl",
        "llamafactory/reason_tool_use_demo_50.jsonl",
        "openai_cookbook/toy_chat_fine_tuning.jsonl",
        "gemini_tuning/patient_1_glucose_examples.jsonl",
        "classification/agnews/train_pool.tsv",
    ],
)
def test_exact_counts_equal_the_tokenizers_own_encoder(name: str, real_counter) -> None:
    """Word counts (ASCII pieces through `re`, others through `regex`) against encoding each
    rendered text with the Rust tokenizer, one text at a time."""
    with Scan(str(DATASETS / name), RunConfig(), count_tokens=False) as scan:
        texts = real_counter.render([orjson.loads(scanned.encoded) for scanned in scan])
    assert texts
    backend = real_counter.tokenizer.backend_tokenizer
    words = WordCounter.for_tokenizer(backend)
    assert words is not None  # the word counts themselves, not a fallback to the encoder
    expected = [len(backend.encode(t, add_special_tokens=False).ids) for t in texts]
    assert words.count(texts) == expected


def test_every_dataset_file_has_a_verdict_here() -> None:
    source = Path(__file__).read_text()
    data_files = [
        p.relative_to(DATASETS).as_posix()
        for p in DATASETS.rglob("*")
        if p.suffix in {".json", ".jsonl", ".tsv", ".csv"} and "workflows" not in p.parts
    ]
    assert data_files
    assert [name for name in data_files if f'"{name}"' not in source] == []
