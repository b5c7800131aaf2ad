"""Baseline-vs-tuned metrics: per-example scores, means, deltas, bootstrap intervals,
per-label statistics checked against hand-computed cases, the gate both ways, and the
results files written to a local folder and to Cloud Storage."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from droptune.evaluation import (
    Comparison,
    change,
    gate,
    gate_record,
    label_of,
    label_report,
    macro_f1,
    normalize,
    prediction_row,
    rouge_l,
    score,
    write_results,
)


def test_normalize_ignores_case_space_and_edge_punctuation():
    assert normalize("  Hello,   World!! ") == "hello, world"


def test_rouge_l_counts_non_english_words():
    assert rouge_l("le chat est là", "le chat est là") == 1.0
    assert rouge_l("数据 很 好", "数据 很 好") == 1.0
    assert rouge_l("completely different", "nothing shared") == 0.0


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ("Sports", "sports"),
        ("sports.", "sports"),
        ("Sci/Tech: new chip", "sci/tech"),
        ("weather", None),
    ],
)
def test_label_of_reads_the_label_a_prediction_names(prediction, label):
    assert label_of(prediction, ["world", "sports", "business", "sci/tech"]) == label


def test_scores_per_example():
    s = score("Sports.", "sports", labels=["sports", "world"], output_tokens=3)
    assert s == {
        "exact_match": 1.0,
        "rouge_l": 1.0,
        "accuracy": 1.0,
        "label": "sports",
        "predicted_label": "sports",
        "output_tokens": 3.0,
    }
    wrong = score("weather, maybe", "sports", labels=["sports", "world"])
    assert wrong["accuracy"] == 0.0 and wrong["predicted_label"] is None
    measured = score("a b", "a b c", input_tokens=12, latency_s=0.25)
    assert measured == {"exact_match": 0.0, "rouge_l": 0.8, "input_tokens": 12.0, "latency_s": 0.25}


def test_comparison_means_deltas_and_intervals():
    comparison = Comparison()
    for i in range(40):
        tuned_right = i % 4 != 0  # 75% vs 25%
        comparison.add(
            score("world" if i % 4 else "sports", "sports", ["sports", "world"], 10),
            score("sports" if tuned_right else "world", "sports", ["sports", "world"], 2),
        )
    metrics = comparison.metrics(seed=1)
    assert metrics["n"] == 40 and metrics["split"] == "test"
    assert metrics["baseline"]["accuracy"] == pytest.approx(0.25)
    assert metrics["tuned"]["accuracy"] == pytest.approx(0.75)
    assert metrics["delta"]["accuracy"] == pytest.approx(0.5)
    low, high = metrics["ci95"]["accuracy"]
    assert low > 0.2 and high <= 1.0 and low < 0.5 < high
    assert metrics["delta"]["mean_output_tokens"] == pytest.approx(-8)


def test_gate_defaults_to_accuracy_for_labelled_data_and_says_why():
    metrics = {"delta": {"accuracy": 0.02, "rouge_l": 0.3}}
    decision = gate(metrics, min_delta=0.05)
    assert decision["metric"] == "accuracy" and decision["passed"] is False
    assert "does not exceed the required +0.0500" in decision["reason"]
    assert gate({"delta": {"rouge_l": 0.1}})["passed"] is True  # no examples counted: unclear
    assert gate({"delta": {"rouge_l": 0.1}})["outcome"] == "unclear"
    assert gate({"delta": {}}, metric="accuracy")["passed"] is False


def test_means_of_input_tokens_and_latency():
    comparison = Comparison()
    comparison.add(
        score("x", "x", input_tokens=10, latency_s=1.0),
        score("x", "x", input_tokens=10, latency_s=0.5),
    )
    comparison.add(
        score("y", "x", input_tokens=20, latency_s=3.0),
        score("x", "x", input_tokens=20, latency_s=1.5),
    )
    metrics = comparison.metrics()
    assert metrics["baseline"]["mean_input_tokens"] == 15.0
    assert metrics["tuned"]["mean_latency_s"] == 1.0
    assert metrics["delta"]["mean_latency_s"] == pytest.approx(-1.0)
    assert metrics["delta"]["exact_match"] == 0.5
    assert "labels" not in metrics and "macro_f1" not in metrics["tuned"]
    assert "mean_latency_s" in metrics["ci95"]  # one time per request: each answer a sample


def test_a_measurement_some_answers_lack_is_averaged_over_the_pairs_that_have_it():
    """An answer with no usage reported has no token counts; its scores still count."""
    comparison = Comparison()
    comparison.add(
        score("x", "x", output_tokens=4), score("x", "x")
    )  # the tuned answer without a count
    comparison.add(score("y", "x", output_tokens=6), score("x", "x", output_tokens=2))
    comparison.add(score("y", "x", output_tokens=8), score("x", "x", output_tokens=4))
    metrics = comparison.metrics()
    assert metrics["delta"]["exact_match"] == pytest.approx(2 / 3)  # every answer
    assert metrics["baseline"]["mean_output_tokens"] == 7.0  # the two complete pairs
    assert metrics["tuned"]["mean_output_tokens"] == 3.0
    assert metrics["ci95"]["mean_output_tokens"] == [-4.0, -4.0]
    lonely = Comparison()
    lonely.add(score("x", "x", output_tokens=4), score("x", "x"))
    assert "mean_output_tokens" not in lonely.metrics()["tuned"]  # no pair has it


def test_latency_shared_by_a_batch_gets_no_interval_and_cannot_pass_a_strict_gate():
    """Batched generation gives every answer of a batch the batch's time: 40 answers in two
    batches are two measurements, and an interval from resampling the 40 would be false."""
    comparison = Comparison(shared_latency=True)
    for i in range(40):
        comparison.add(score("x", "x", latency_s=2.0 + i // 20), score("x", "x", latency_s=1.0))
    metrics = comparison.metrics()
    assert metrics["delta"]["mean_latency_s"] == pytest.approx(-1.5)
    assert "mean_latency_s" not in metrics["ci95"] and "exact_match" in metrics["ci95"]
    assert gate(metrics, "mean_latency_s", -2.0, require_significance=False)["passed"] is True
    strict = gate(metrics, "mean_latency_s", -2.0)
    assert strict["passed"] is False and "no 95% interval" in strict["reason"]


def test_per_label_statistics_match_a_hand_computed_case():
    # references  a a a b b c ; predictions a a b b (none) a
    names = ["a", "b", "c"]
    reference = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, -1, 0])
    report = label_report(reference, predicted, names)
    # a: tp 2, predicted 3 -> P 2/3, support 3 -> R 2/3, F1 2/3
    # b: tp 1, predicted 2 -> P 1/2, support 2 -> R 1/2, F1 1/2
    # c: tp 0 -> P 0, R 0, F1 0
    assert report["per_label"]["a"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert report["per_label"]["b"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert report["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert report["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]
    assert report["no_label"] == 1


def test_macro_f1_counts_only_labels_that_occur_and_works_on_resamples():
    # label 2 never occurs in references or predictions: it does not drag the mean to 0
    assert macro_f1(np.array([0, 1]), np.array([0, 1]), 3) == 1.0
    batch = macro_f1(np.array([[0, 1], [0, 0]]), np.array([[0, 1], [1, 0]]), 2)
    # second row: label 0 tp 1 fn 1 -> F1 2/3; label 1 fp 1 -> F1 0; mean 1/3
    assert batch == pytest.approx([1.0, 1 / 3])


def test_comparison_reports_labels_and_macro_f1_with_an_interval():
    labels = ["billing", "bug"]
    comparison = Comparison(labels=labels)
    for i in range(20):
        truth = labels[i % 2]
        comparison.add(
            score("no idea", truth, labels), score(truth if i % 10 else "bug", truth, labels)
        )
    metrics = comparison.metrics(seed=3)
    assert metrics["labels"]["names"] == labels
    tuned = metrics["labels"]["tuned"]
    # tuned: wrong on i=0 and i=10 (billing answered "bug")
    assert tuned["confusion"] == [[8, 2, 0], [0, 10, 0]]
    assert metrics["labels"]["baseline"]["no_label"] == 20
    assert metrics["tuned"]["macro_f1"] == pytest.approx(tuned["macro_f1"])
    assert metrics["baseline"]["macro_f1"] == 0.0
    low, high = metrics["ci95"]["macro_f1"]
    assert 0 < low <= metrics["delta"]["macro_f1"] <= high <= 1


def test_bootstrap_interval_is_reproducible_and_degenerate_without_variance():
    comparison = Comparison()
    for i in range(30):
        comparison.add(score("a", "a" if i % 3 else "b"), score("a", "a"))
    first, again = comparison.metrics(seed=7), comparison.metrics(seed=7)
    assert first["ci95"] == again["ci95"]
    same = Comparison()
    for _ in range(5):
        same.add(score("a", "a"), score("a", "a"))
    assert same.metrics()["ci95"]["exact_match"] == [0.0, 0.0]


def test_gate_passes_and_fails_with_its_numbers():
    metrics = {
        "n": 50,
        "baseline": {"accuracy": 0.5},
        "tuned": {"accuracy": 0.7},
        "delta": {"accuracy": 0.2},
        "ci95": {"accuracy": [0.05, 0.35]},
    }
    passed = gate(metrics, "accuracy", 0.1, require_significance=False)
    assert passed["passed"] is True and "exceeds the required +0.1000" in passed["reason"]
    assert passed | {"reason": ""} == {
        "metric": "accuracy",
        "min_delta": 0.1,
        "require_significance": False,
        "baseline": 0.5,
        "tuned": 0.7,
        "delta": 0.2,
        "ci95": [0.05, 0.35],
        "outcome": "better",
        "passed": True,
        "reason": "",
    }
    failed = gate(metrics, "accuracy", 0.25)
    assert failed["passed"] is False and "does not exceed the required +0.2500" in failed["reason"]
    strict = gate(metrics, "accuracy", 0.1)
    assert strict["passed"] is False and "does not lie above +0.1000" in strict["reason"]
    assert gate(metrics, "accuracy")["passed"] is True
    assert "the interval lies above +0.0000" in gate(metrics, "accuracy")["reason"]


def test_under_twenty_test_examples_the_delta_decides_and_the_result_is_unclear():
    """A bootstrap over one example gives the interval [d, d]: no evidence, whatever d is. The
    gate then asks delta > 0 and says the result is unclear."""
    comparison = Comparison()
    comparison.add(score("b", "a"), score("a", "a"))
    metrics = comparison.metrics()
    assert metrics["ci95"]["exact_match"] == [1.0, 1.0]
    small = gate(metrics, "exact_match")
    assert small["passed"] is True and small["outcome"] == "unclear"
    assert "from 1 test examples (fewer than 20)" in small["reason"]
    assert "unclear" in small["reason"]


@pytest.mark.parametrize("n", [5, 40])
@pytest.mark.parametrize("require_significance", [True, False])
def test_a_model_merely_equal_to_its_base_is_never_deployed(n, require_significance):
    """The measured failure: 0.000 -> 0.000 passed a gate of min_delta 0 and was deployed."""
    metrics = {
        "n": n,
        "baseline": {"accuracy": 0.0},
        "tuned": {"accuracy": 0.0},
        "delta": {"accuracy": 0.0},
        "ci95": {"accuracy": [0.0, 0.0]},
    }
    decision = gate(metrics, require_significance=require_significance)
    assert decision["passed"] is False
    assert decision["outcome"] in {"no change", "unclear"}
    assert "does not exceed" in decision["reason"]


@pytest.mark.parametrize(
    ("delta", "ci95", "n", "expected"),
    [
        (0.2, [0.1, 0.3], 40, "better"),
        (-0.2, [-0.3, -0.1], 40, "worse"),
        (0.05, [-0.05, 0.15], 40, "no change"),
        (0.0, [0.0, 0.0], 40, "no change"),
        (0.2, [0.1, 0.3], 19, "unclear"),
        (0.2, None, 40, "unclear"),
    ],
)
def test_change_names_the_outcome_and_never_calls_a_delta_of_zero_better(delta, ci95, n, expected):
    assert change(delta, ci95, n) == expected


def test_a_gate_from_the_run_config_applies_as_written():
    from droptune.config import RunConfig

    written = {"metric": "macro_f1", "min_delta": 0.05, "require_significance": True}
    metrics = {
        "n": 40,
        "baseline": {"accuracy": 0.5, "macro_f1": 0.30},
        "tuned": {"accuracy": 0.8, "macro_f1": 0.45},
        "delta": {"accuracy": 0.3, "macro_f1": 0.15},
        "ci95": {"accuracy": [0.2, 0.4], "macro_f1": [0.02, 0.28]},
    }
    decision = gate(metrics, **RunConfig.from_mapping({"gate": written}).gate)
    assert decision["metric"] == "macro_f1" and decision["require_significance"] is True
    assert decision["passed"] is False  # accuracy would pass; macro F1's interval does not
    assert "macro_f1 = +0.1500 (95% interval +0.0200 to +0.2800)" in decision["reason"]


def test_prediction_rows_have_the_same_columns_for_every_backend():
    b = score("bug, I think", "billing", ["billing", "bug"], 3)
    t = score("billing", "billing", ["billing", "bug"], 1)
    row = prediction_row("charged twice", "billing", "bug, I think", "billing", b, t)
    assert list(row)[:5] == [
        "user_input",
        "reference",
        "reference_label",
        "baseline_response",
        "tuned_response",
    ]
    assert row["baseline_label"] == "bug" and row["tuned_label"] == "billing"
    assert row["tuned_accuracy"] == 1.0 and "baseline_predicted_label" not in row


def _results(rows):
    comparison = Comparison()
    for row in rows:
        comparison.add(
            score(row["baseline_response"], row["reference"]),
            score(row["tuned_response"], row["reference"]),
        )
    metrics = comparison.metrics()
    metrics["gate"] = gate(metrics)
    return metrics


def test_write_results_to_a_local_folder(tmp_path):
    rows = [
        prediction_row("q", "a, b", "x", "a, b", score("x", "a, b"), score("a, b", "a, b")),
        prediction_row("q2", "line\nbreak", "y", "z", score("y", "z"), score("z", "z")),
    ]
    metrics = _results([{"baseline_response": "x", "tuned_response": "a, b", "reference": "a, b"}])
    write_results(str(tmp_path / "evaluation"), metrics, rows)
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text()) == metrics
    gate_file = json.loads((tmp_path / "evaluation" / "gate.json").read_text())
    assert gate_file == {"split": "test", "n": metrics["n"], **metrics["gate"]}
    with (tmp_path / "evaluation" / "predictions.csv").open(newline="", encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["reference"] for r in read] == ["a, b", "line\nbreak"]
    assert float(read[0]["tuned_exact_match"]) == 1.0
    write_results(str(tmp_path / "empty"), metrics, [])
    header = (tmp_path / "empty" / "predictions.csv").read_text().strip()
    assert header == "user_input,reference,baseline_response,tuned_response"


def test_write_results_to_cloud_storage(gcs_bucket):
    rows = [prediction_row("q", "a", "b", "a", score("b", "a"), score("a", "a"))]
    metrics = _results([{"baseline_response": "b", "tuned_response": "a", "reference": "a"}])
    write_results(f"gs://{gcs_bucket.name}/runs/r/evaluation", metrics, rows)
    saved = json.loads(gcs_bucket.blob("runs/r/evaluation/metrics.json").download_as_bytes())
    assert saved["gate"]["passed"] is True
    assert json.loads(gcs_bucket.blob("runs/r/evaluation/gate.json").download_as_bytes())["passed"]
    text = gcs_bucket.blob("runs/r/evaluation/predictions.csv").download_as_text()
    assert [r["tuned_response"] for r in csv.DictReader(io.StringIO(text))] == ["a"]


@pytest.mark.parametrize(
    ("labels", "answer", "named"),
    [
        (["-1", "0", "1"], "-1", "-1"),
        (["-1", "0", "1"], "1.", "1"),
        (["C", "C++", "C#"], "C", "C"),
        (["C", "C++", "C#"], "C# is the one", "C#"),
        (["C", "C++", "C#"], "**C++**", "C++"),
        (["yes", "no"], "No, because it is late", "no"),
        (["yes", "no"], "Nobody knows", None),
        (["yes", "no"], "Not sure", None),
        (["sports", "world"], "- World", "world"),
    ],
)
def test_labels_that_differ_by_a_sign_or_a_word_boundary_stay_apart(labels, answer, named):
    assert label_of(answer, labels) == named


def test_signs_are_part_of_an_exact_match():
    assert score("-3", "3")["exact_match"] == 0.0
    assert score("3.", "3")["exact_match"] == 1.0


def test_rouge_l_counts_chinese_and_japanese_by_character():
    assert rouge_l("今天天气很好", "今天天气不好") == pytest.approx(5 / 6)
    assert rouge_l("東京へ行きます", "東京へ行く") > 0.5
    assert rouge_l("the cat sat", "the cat sat") == 1.0


def test_gate_json_stays_small_whatever_the_label_set():
    """The workflow reads gate.json into a variable (Workflows: 512 KB of variables in all):
    a thousand labels grow metrics.json, not gate.json."""
    labels = [f"label-{i:04d} " + "x" * 40 for i in range(1000)]
    rows = [
        {"baseline_response": labels[i], "tuned_response": labels[i], "reference": labels[i]}
        for i in range(0, 1000, 7)
    ]
    comparison = Comparison(labels=labels)
    for row in rows:
        comparison.add(
            score(row["baseline_response"], row["reference"], labels),
            score(row["tuned_response"], row["reference"], labels),
        )
    metrics = comparison.metrics()
    metrics["gate"] = gate(metrics)
    assert len(json.dumps(metrics)) > 100_000
    assert len(json.dumps(gate_record(metrics))) < 1_000
