"""Hyperparameters sized to the data: small files get enough steps, big ones a bounded run,
anything the user sets wins, and every choice says why."""

from __future__ import annotations

import pytest

from droptune import sizing
from droptune.sizing import plan

SMOL = 135_000_000  # SmolLM2-135M


@pytest.mark.parametrize("examples", [10, 20, 40, 60, 99, 150, 400])
def test_a_small_file_gets_at_least_fifty_optimizer_steps(examples: int):
    p = plan(examples, examples * 100, 150, model_params=SMOL)
    assert p.steps >= 50
    assert p.examples_seen >= sizing.MIN_EXAMPLES_SEEN
    assert p.examples_per_step.value >= sizing.MIN_BATCH


def test_sixty_examples_no_longer_train_three_steps():
    """The measured failure: 60 examples in packed rows of 4,096 tokens made 3 steps."""
    p = plan(60, 60 * 120, 200, model_params=SMOL, device="cpu")
    assert (p.epochs.value, p.examples_per_step.value, p.steps) == (3, 2, 90)
    assert p.learning_rate.value == 1e-3


@pytest.mark.parametrize("examples", [1_000, 5_000, 10_000, 25_000])
def test_a_big_file_is_bounded_to_25000_examples_seen(examples: int):
    p = plan(examples, examples * 300, 2000, model_params=SMOL)
    assert p.examples_seen <= sizing.MAX_EXAMPLES_SEEN
    assert p.steps <= sizing.MAX_EXAMPLES_SEEN / sizing.MAX_BATCH + 1
    assert p.examples_per_step.value <= sizing.MAX_BATCH


def test_a_file_beyond_25000_examples_is_trained_once_in_steps_of_64():
    """OpenAI's rule never goes below one pass on a GPU: the user's data is all used."""
    p = plan(100_000, 100_000 * 300, 2000, model_params=SMOL)
    assert (p.epochs.value, p.examples_per_step.value, p.examples_seen) == (1, 64, 100_000)


def test_on_a_cpu_a_big_file_trains_on_a_share_of_one_pass_within_the_token_budget():
    """AG News, 2,160 rows of ~120 tokens: 3 passes took 56 minutes on 2 cores."""
    p = plan(2160, 2160 * 120, 300, model_params=SMOL, device="cpu")
    budget = sizing.cpu_token_budget(SMOL)
    assert p.epochs.value < 1 and p.examples_seen * 120 <= budget * 1.01
    assert "CPU" in p.epochs.why and f"{budget:,}" in p.epochs.why
    assert 71 <= p.steps <= 141
    assert p.tokens_per_batch.value <= sizing.MICRO_BATCH_TOKENS["cpu"]


def test_a_bigger_model_gets_a_smaller_cpu_budget():
    assert sizing.cpu_token_budget(4 * SMOL) == sizing.cpu_token_budget(SMOL) // 4


def test_every_setting_the_user_gives_wins_and_is_marked_as_set():
    given = {
        "epochs": 2,
        "learning_rate": 3e-5,
        "tokens_per_batch": 2048,
        "gradient_accumulation": 4,
        "eval_every": 7,
        "eval_examples": 10,
        "early_stopping_patience": 5,
    }
    p = plan(2160, 2160 * 120, 300, model_params=SMOL, device="cpu", settings=given)
    assert p.settings() == given
    chosen = p.to_dict()
    assert all(not chosen[key]["auto"] for key in given)
    assert chosen["epochs"]["why"] == "set in the run configuration"


def test_none_and_zero_are_left_to_the_rules_but_a_patience_of_zero_means_never():
    p = plan(
        500, 50_000, 200, settings={"epochs": None, "eval_every": 0, "early_stopping_patience": 0}
    )
    assert p.epochs.auto and p.eval_every.auto
    assert (p.early_stopping_patience.value, p.early_stopping_patience.auto) == (0, False)


def test_max_steps_fixes_the_length_and_the_batch_is_still_sized():
    p = plan(2160, 2160 * 120, 300, settings={"max_steps": 30})
    assert p.steps == 30 and p.examples_per_step.auto
    assert p.eval_every.value == 6  # five evaluations over the 30 steps


def test_each_choice_says_why():
    chosen = plan(60, 6000, 150, model_params=SMOL).to_dict()
    assert set(chosen) >= {"epochs", "examples_per_step", "learning_rate", "eval_every"}
    for key, choice in chosen.items():
        assert choice["auto"] and len(choice["why"]) > 20, key


@pytest.mark.parametrize(
    ("params", "method", "rate"),
    [
        (135_000_000, "lora", 1e-3),
        (3_000_000_000, "qlora", 1e-3),
        (8_000_000_000, "lora", 5e-4),
        (70_000_000_000, "lora", 3e-4),
        (135_000_000, "full", 1e-4),
        (None, "lora", 2e-4),
    ],
)
def test_the_learning_rate_follows_the_model_size(params, method, rate):
    assert plan(100, 10_000, 150, model_params=params, method=method).learning_rate.value == rate


def test_micro_batches_hold_the_longest_example_and_the_device_memory_bounds_them():
    long_tail = plan(1000, 1000 * 100, 1900, device="cpu")
    assert long_tail.tokens_per_batch.value == 1900  # one example must fit a row
    assert "longest" in long_tail.tokens_per_batch.why
    gpu = plan(20_000, 20_000 * 300, 1000)
    assert gpu.tokens_per_batch.value == sizing.MICRO_BATCH_TOKENS["gpu"]
    step = gpu.tokens_per_batch.value * gpu.gradient_accumulation.value
    assert abs(step - 64 * 300) <= gpu.tokens_per_batch.value  # accumulated to the batch


def test_eval_examples_are_capped_on_a_cpu():
    assert plan(100, 10_000, 150, device="cpu").eval_examples.value == 64
    assert plan(100, 10_000, 150, device="gpu").eval_examples.value == 1024


def test_no_examples_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        plan(0, 0, 0)
