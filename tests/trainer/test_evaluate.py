"""The trainer's evaluation on CPU with the real SmolLM2-135M (untuned, so baseline and tuned
are the same model): what it measures per answer, the files it writes through the core, the
report beside them, and the run_id on its log lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from droptune_trainer.evaluate import LABEL_SLACK, answer_budget, evaluate


class OneTokenPerWord:
    def __call__(self, texts: list[str], add_special_tokens: bool) -> dict:
        return {"input_ids": [text.split() for text in texts]}


def test_labelled_answers_generate_only_what_the_longest_label_needs():
    labels = ["World", "Science and technology"]
    assert answer_budget(OneTokenPerWord(), labels, 256) == 3 + LABEL_SLACK
    assert answer_budget(OneTokenPerWord(), labels, 2) == 2  # a smaller setting still wins
    assert answer_budget(OneTokenPerWord(), None, 256) == 256  # free text: the setting


def test_a_template_that_writes_before_the_answer_gets_those_tokens_too(pulled_model):
    """Qwen3's template writes an empty thinking block before every answer, which the tuned
    model learns to write first: the budget holds it and the label."""
    from transformers import AutoTokenizer

    from tests.trainer.test_generation import QWEN3_LIKE

    plain = answer_budget(AutoTokenizer.from_pretrained(pulled_model), ["Sports"], 256)
    tokenizer = AutoTokenizer.from_pretrained(pulled_model)
    tokenizer.chat_template = QWEN3_LIKE
    lead = len(tokenizer("<think>\n\n</think>\n\n", add_special_tokens=False).input_ids)
    assert answer_budget(tokenizer, ["Sports"], 256) == plain + lead


@pytest.mark.slow
def test_evaluation_measures_writes_reports_and_labels_its_logs(
    run_dir: Path, pulled_model: Path, capture_logs
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pulled_model)
    model = AutoModelForCausalLM.from_pretrained(pulled_model)
    read_log = capture_logs("droptune.trainer")
    metrics = evaluate(
        model, tokenizer, run_dir, torch.device("cpu"), baseline_model=model, max_new_tokens=4
    )

    assert metrics["n"] == 2 and metrics["delta"]["rouge_l"] == 0.0  # the same model twice
    assert metrics["tuned"]["mean_input_tokens"] > 10
    assert metrics["tuned"]["mean_latency_s"] > 0
    assert "mean_latency_s" not in metrics["ci95"]  # batched: one time for many answers
    folder = run_dir / "evaluation"
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    with (folder / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(
        0 < float(r["tuned_output_tokens"]) <= 4 and float(r["tuned_latency_s"]) > 0 for r in rows
    )
    html = (folder / "report.html").read_text()
    assert "Baseline vs tuned" in html and (folder / "plots" / "deltas.png").is_file()
    lines = read_log()
    assert lines and all(
        line["logging.googleapis.com/labels"]["run_id"] == "test" for line in lines
    )
    assert any(line.get("gate_passed") is not None for line in lines)


def test_a_baseline_without_adapters_to_switch_off_is_refused(tiny_model: Path):
    """Else the "baseline" would be the tuned model itself, the delta 0, and the gate blind."""
    from droptune_trainer.errors import TrainerError
    from droptune_trainer.evaluate import answer_all
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from droptune.cases import Case

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    case = Case(prompt=[{"role": "user", "content": "hi"}], reference="hello")
    with pytest.raises(TrainerError, match="baseline_model"):
        answer_all(model, tokenizer, [case], 4, torch.device("cpu"), adapters_off=True)
