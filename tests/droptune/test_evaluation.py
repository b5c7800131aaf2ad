"""Baseline-vs-tuned metrics: per-example scores, means, deltas, bootstrap intervals, gate."""

from __future__ import annotations

import pytest

from droptune.evaluation import Comparison, gate, label_of, normalize, rouge_l, score


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
    assert s == {"exact_match": 1.0, "rouge_l": 1.0, "accuracy": 1.0, "output_tokens": 3.0}
    assert score("world", "sports", labels=["sports", "world"])["accuracy"] == 0.0


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
    assert "misses" in decision["reason"]
    assert gate({"delta": {"rouge_l": 0.1}})["passed"] is True
    assert gate({"delta": {}}, metric="accuracy")["passed"] is False
