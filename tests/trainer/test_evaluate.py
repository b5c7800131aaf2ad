"""The trainer's evaluation on CPU with the real SmolLM2-135M (untuned, so baseline and tuned
are the same model): what it measures per answer, the files it writes through the core, the
report beside them, and the run_id on its log lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from droptune_trainer.evaluate import (
    GPU_TOKENS_PER_BATCH,
    LABEL_SLACK,
    TOKENS_PER_BATCH,
    answer_budget,
    batches,
    bytes_per_token,
    evaluate,
    token_budget,
)


def test_batches_group_prompts_by_length_under_the_budget():
    lengths = [50, 10, 40, 12, 11]
    groups = batches(lengths, budget=40)
    assert groups == [[1, 4, 3], [2], [0]]  # 3 x 12 = 36 tokens padded; 40 alone; 50 alone
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    # What each row may generate counts too: 30-token prompts that grow by 20 fit two a batch.
    assert batches([30] * 5, budget=100, new_tokens=20) == [[0, 1], [2, 3], [4]]


QWEN_05B = SimpleNamespace(  # the shape's generation-relevant sizes, and its bf16 weights
    config=SimpleNamespace(
        num_hidden_layers=24, hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864,
    ),
    dtype=torch.bfloat16,
)  # fmt: skip


def test_a_token_costs_its_keys_and_values_in_every_layer_and_the_prompt_pass_activations():
    kv = 2 * 24 * 2 * (896 // 14)  # keys and values, 2 heads of 64 in 24 layers
    assert bytes_per_token(QWEN_05B) == 2 * (kv + 4 * 4864 + 4 * 896)
    no_shape = SimpleNamespace(config=SimpleNamespace(hidden_size=8))
    assert bytes_per_token(no_shape) is None


def test_a_gpu_batch_holds_what_half_its_free_memory_takes(monkeypatch):
    gpu, per_token = torch.device("cuda"), bytes_per_token(QWEN_05B)
    assert token_budget(QWEN_05B, torch.device("cpu")) == TOKENS_PER_BATCH

    def free(driver_gib: float, cached_gib: float = 0) -> None:
        """What the driver has left, and what PyTorch's allocator holds unused (after
        training, most of what is free)."""
        left, cached = int(driver_gib * 2**30), int(cached_gib * 2**30)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (left, 0))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: cached + 2**30)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2**30)

    free(100)
    assert token_budget(QWEN_05B, gpu) == GPU_TOKENS_PER_BATCH  # capped
    free(1)
    assert token_budget(QWEN_05B, gpu) == 2**29 // per_token  # 9,198 tokens in half a GiB
    free(0.5, cached_gib=0.5)
    assert token_budget(QWEN_05B, gpu) == 2**29 // per_token  # the same: cached is free
    free(0.01)
    assert token_budget(QWEN_05B, gpu) == 1024  # a floor: a batch is never empty
    no_shape = SimpleNamespace(config=None)
    assert token_budget(no_shape, gpu) == TOKENS_PER_BATCH


class OneTokenPerWord:
    def __call__(self, texts: list[str], add_special_tokens: bool) -> dict:
        return {"input_ids": [text.split() for text in texts]}


def test_labelled_answers_generate_only_what_the_longest_label_needs():
    labels = ["World", "Science and technology"]
    assert answer_budget(OneTokenPerWord(), labels, 256) == 3 + LABEL_SLACK
    assert answer_budget(OneTokenPerWord(), labels, 2) == 2  # a smaller setting still wins
    assert answer_budget(OneTokenPerWord(), None, 256) == 256  # free text: the setting


@pytest.mark.slow
def test_evaluation_measures_writes_reports_and_labels_its_logs(
    run_dir: Path, pulled_model: Path, capture_logs
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pulled_model)
    model = AutoModelForCausalLM.from_pretrained(pulled_model)
    read_log = capture_logs("droptune.trainer")
    metrics = evaluate(model, tokenizer, run_dir, torch.device("cpu"), max_new_tokens=4)

    assert metrics["n"] == 2 and metrics["delta"]["rouge_l"] == 0.0  # the same model twice
    assert metrics["tuned"]["mean_input_tokens"] > 10
    assert metrics["tuned"]["mean_latency_s"] > 0
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
