"""Training hyperparameters sized to the data, for a run that sets none (OpenAI's "auto").

`plan(examples, total_tokens, longest, ...)` chooses what the user left unset and says why;
anything set wins. The trainer applies it; the intake can call it for the cost estimate, so
both count the same steps. Pure arithmetic: no torch.

The rules, and where their numbers come from:

- **Passes over the data** (`epochs`): 3, raised for a small file so that training sees at
  least 100 examples (at most 25 passes), lowered for a big one so that it sees at most
  25,000 (at least 1). This is OpenAI's default `n_epochs`, as its cookbook's data-preparation
  notebook states it (TARGET_EPOCHS 3, MIN/MAX_TARGET_EXAMPLES 100/25,000, 1..25 epochs).
  On a CPU the run is also bounded by time (`cpu_token_budget`): about 8 minutes of
  training at the throughput measured here for the model's size (fp32, or bf16 where a run
  asks for it); a big file then trains on a share of one pass (a shuffled subset), since
  that is what fits the time.
- **Examples a step**: the power of two that gives about 100 optimizer steps (71 to 141),
  from 2 to 64.
  A small file so gets 50 steps or more (100 examples in steps of 2) instead of a few big
  ones (60 examples in packed rows of 4,096 tokens made 3 steps and learned nothing);
  a big one gets 100-200 steps. About 100 steps follows Vertex AI's tuning defaults
  (epochs sized so that each prompt is seen within ~110 steps); the cap of 64 follows
  "LoRA Without Regret" (Thinking Machines, 2025): LoRA loses more than full fine-tuning
  at large batches. In the trainer's terms a step is `tokens_per_batch` x
  `gradient_accumulation` tokens: a micro-batch holds the step's tokens up to what the
  device's memory takes (`MICRO_BATCH_TOKENS`), and at least the longest example.
- **Learning rate** by model size, for LoRA (QLoRA alike): 1e-3 below 5B parameters, 5e-4
  below 20B, 3e-4 above; full fine-tuning a tenth of that. These are the optimal LoRA rates
  of Thinking Machines' sweep (tinker-cookbook `hyperparam_utils.get_lr`: Llama-3.2-1B/3B,
  Qwen3-4B 1e-3; Llama-3.1-8B 3e-4 and Qwen3-8B 1e-3; 27B and larger 3e-4) and "LoRA
  Without Regret"'s finding that LoRA's best rate is about 10x full fine-tuning's. With the
  model's size unknown: 2e-4, the usual LoRA starting point (Unsloth's guide, the LoRA paper).
- **Evaluation and early stopping**: 5 validation losses a run (every steps / 5), and a stop
  after 2 without a better one: the last 40% of the run is not spent on a plateau.

>>> p = plan(60, 60 * 120, 200, model_params=135_000_000)
>>> p.epochs.value, p.examples_per_step.value, p.steps, p.learning_rate.value
(3, 2, 90, 0.001)
>>> p = plan(2160, 2160 * 120, 300, model_params=135_000_000, device="cpu")
>>> round(p.epochs.value, 2), p.examples_per_step.value, p.steps
(0.37, 8, 100)
>>> plan(2160, 2160 * 120, 300, settings={"epochs": 2}).epochs.to_dict()
{'value': 2, 'why': 'set in the run configuration', 'auto': False}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Device = Literal["cpu", "gpu"]

# OpenAI's default n_epochs (openai-cookbook, "Data preparation and analysis for chat model
# fine-tuning"): 3 passes, at least 100 and at most 25,000 examples seen, 1 to 25 passes.
TARGET_EPOCHS = 3
MIN_EXAMPLES_SEEN, MAX_EXAMPLES_SEEN = 100, 25_000
MIN_EPOCHS, MAX_EPOCHS = 1, 25
TARGET_STEPS = 100  # optimizer steps a run aims for (Vertex AI's tuning defaults: ~110)
MIN_BATCH, MAX_BATCH = 2, 64  # examples a step (LoRA Without Regret: LoRA dislikes big ones)
EVALUATIONS = 5  # validation losses a run
# Validation examples scored each time: on a CPU, scoring a few hundred would take longer
# than the training between two evaluations.
VALIDATION_EXAMPLES: dict[str, int] = {"cpu": 64, "gpu": 1024}
PATIENCE = 2  # evaluations without a better loss before stopping
# Tokens of one micro-batch (forward and backward at once): the device's memory bounds it.
# A CPU keeps fp32 activations, 1.3 MB a token for a 135M model (docs/training.md).
MICRO_BATCH_TOKENS: dict[str, int] = {"cpu": 1024, "gpu": 4096}
# Training on a CPU is bounded by time: CPU_SECONDS at the throughput a model of this size
# has there, measured for SmolLM2-135M on 2 cores and scaled by parameters.
CPU_SECONDS = 480
# SmolLM2-135M, LoRA, micro-batches of ~700 tokens on 2 cores of an AMD EPYC (bench/
# quality_bench.py), validation included: fp32, and bf16 where the CPU computes it.
CPU_TOKENS_PER_SECOND: dict[str, float] = {"float32": 200.0, "bfloat16": 290.0}
CPU_REFERENCE_PARAMS = 135_000_000
# LoRA learning rate by model size (tinker-cookbook's sweep), and when the size is unknown.
LORA_RATES = ((5e9, 1e-3), (20e9, 5e-4), (math.inf, 3e-4))
UNKNOWN_SIZE_RATE = 2e-4
FULL_OVER_LORA = 0.1  # LoRA Without Regret: LoRA's best rate is ~10x full fine-tuning's


@dataclass(frozen=True)
class Choice:
    """One setting's value and why it is that: chosen by a rule (`auto`) or set by the user."""

    value: Any
    why: str
    auto: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "why": self.why, "auto": self.auto}


@dataclass(frozen=True)
class Plan:
    """The settings a run trains with. `steps`, `examples_seen` and `tokens_seen` are what
    they come to (the cost estimate's training tokens are `tokens_seen`)."""

    epochs: Choice
    examples_per_step: Choice
    tokens_per_batch: Choice
    gradient_accumulation: Choice
    learning_rate: Choice
    eval_every: Choice
    eval_examples: Choice
    early_stopping_patience: Choice
    steps: int
    examples_seen: int
    tokens_seen: int

    def settings(self) -> dict[str, Any]:
        """The trainer's settings (TrainConfig keys) with their values."""
        keys = ("epochs", "tokens_per_batch", "gradient_accumulation", "learning_rate")
        keys += ("eval_every", "eval_examples", "early_stopping_patience")
        return {key: getattr(self, key).value for key in keys}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """`{setting: {value, why, auto}}`, what training/metrics.json records as `chosen`."""
        names = ("epochs", "examples_per_step", "tokens_per_batch", "gradient_accumulation")
        names += ("learning_rate", "eval_every", "eval_examples", "early_stopping_patience")
        return {name: getattr(self, name).to_dict() for name in names}


SET = "set in the run configuration"


def plan(
    examples: int,
    total_tokens: int,
    longest: int,
    *,
    model_params: int | None = None,
    method: str = "lora",
    device: Device = "gpu",
    dtype: str = "float32",
    settings: Mapping[str, Any] | None = None,
) -> Plan:
    """The settings for `examples` training examples of `total_tokens` tokens in all, the
    longest `longest`, on a model of `model_params` parameters, trained on `device` in
    `dtype`. `settings` holds what the user set (TrainConfig keys; None or 0 for "choose");
    `max_steps` there fixes the length.

    >>> p = plan(10, 1000, 100)
    >>> p.epochs.value, p.examples_seen, p.tokens_seen, p.steps  # OpenAI: 100 seen at least
    (10, 100, 10000, 50)
    >>> plan(20_000, 2_000_000, 300).epochs.value  # and at most 25,000
    1
    """
    if examples < 1:
        raise ValueError("plan() needs at least one training example")
    # None and 0 leave a setting to the rules; a patience of 0 means "never stop early"
    given = {
        k: v
        for k, v in (settings or {}).items()
        if v is not None and (v != 0 or k == "early_stopping_patience")
    }
    mean = max(total_tokens / examples, 1.0)
    epochs = choose_epochs(examples, mean, given.get("epochs"), model_params, device, dtype)
    seen = max(1, round(examples * epochs.value))
    batch = choose_batch(seen)
    tokens, accumulation = micro_batches(batch.value, mean, longest, device, given)
    # examples a step as the trainer takes them: packed rows of tokens_per_batch tokens
    per_step = max(1.0, tokens.value * accumulation.value / mean)
    steps = given.get("max_steps") or max(1, math.ceil(seen / per_step))
    if given.get("max_steps"):
        seen = round(steps * per_step)
    return Plan(
        epochs=epochs,
        examples_per_step=batch,
        tokens_per_batch=tokens,
        gradient_accumulation=accumulation,
        learning_rate=choose_learning_rate(model_params, method, given.get("learning_rate")),
        eval_every=choose_eval_every(steps, given.get("eval_every")),
        eval_examples=choose_eval_examples(device, given.get("eval_examples")),
        early_stopping_patience=choose_patience(given.get("early_stopping_patience")),
        steps=steps,
        examples_seen=seen,
        tokens_seen=round(seen * mean),
    )


def openai_epochs(examples: int) -> int:
    """OpenAI's default passes over `examples` training examples.

    >>> [openai_epochs(n) for n in (5, 20, 60, 5_000, 10_000, 40_000)]
    [20, 5, 3, 3, 2, 1]
    """
    if examples * TARGET_EPOCHS < MIN_EXAMPLES_SEEN:
        return min(MAX_EPOCHS, MIN_EXAMPLES_SEEN // examples)
    if examples * TARGET_EPOCHS > MAX_EXAMPLES_SEEN:
        return max(MIN_EPOCHS, MAX_EXAMPLES_SEEN // examples)
    return TARGET_EPOCHS


def cpu_token_budget(model_params: int | None, dtype: str = "float32") -> int:
    """Training tokens a CPU gets through in CPU_SECONDS for a model of this size, computing
    in `dtype` (float32, or bfloat16 on a CPU that has it).

    >>> cpu_token_budget(135_000_000), cpu_token_budget(540_000_000), cpu_token_budget(None, "bfloat16")
    (96000, 24000, 139200)
    """
    params = model_params or CPU_REFERENCE_PARAMS
    speed = CPU_TOKENS_PER_SECOND.get(dtype, CPU_TOKENS_PER_SECOND["float32"])
    return round(CPU_SECONDS * speed * CPU_REFERENCE_PARAMS / params)


def choose_epochs(
    examples: int, mean: float, given: Any, model_params: int | None, device: Device, dtype: str
) -> Choice:
    if given is not None:
        return Choice(given, SET, auto=False)
    epochs = openai_epochs(examples)
    if epochs == TARGET_EPOCHS:
        why = f"{epochs} passes over {examples:,} examples (OpenAI's default)"
    elif epochs > TARGET_EPOCHS:
        why = (
            f"{epochs} passes: a file of {examples:,} examples is seen at least "
            f"{MIN_EXAMPLES_SEEN} times in all (OpenAI's default, at most {MAX_EPOCHS} passes)"
        )
    else:
        why = (
            f"{epochs} pass(es): {examples:,} examples are seen at most {MAX_EXAMPLES_SEEN:,} "
            "times in all (OpenAI's default, at least 1 pass)"
        )
    if device != "cpu":
        return Choice(epochs, why)
    budget = cpu_token_budget(model_params, dtype)
    if examples * epochs * mean <= budget:
        return Choice(epochs, why + f"; within the CPU's {budget:,}-token budget")
    share = round(budget / mean / examples, 3)
    return Choice(
        share,
        f"{share:g} of a pass ({round(share * examples):,} of {examples:,} examples, shuffled): "
        f"on a CPU training is bounded to {budget:,} tokens, about {CPU_SECONDS // 60} minutes "
        f"for a model of this size in {dtype}, instead of {epochs} passes",
    )


def nearest_power_of_two(x: float) -> int:
    """The power of two nearest `x` on a log scale (1 for anything up to 1.41).

    >>> [nearest_power_of_two(x) for x in (0.5, 1.8, 2.9, 7.99, 100)]
    [1, 2, 4, 8, 128]
    """
    return 1 << max(0, round(math.log2(x))) if x > 1 else 1


def choose_batch(seen: int) -> Choice:
    size = min(MAX_BATCH, max(MIN_BATCH, nearest_power_of_two(seen / TARGET_STEPS)))
    return Choice(
        size,
        f"{size} examples a step: about {TARGET_STEPS} optimizer steps over the {seen:,} "
        f"examples seen ({MIN_BATCH} to {MAX_BATCH} a step)",
    )


def micro_batches(
    batch: int, mean: float, longest: int, device: Device, given: Mapping[str, Any]
) -> tuple[Choice, Choice]:
    """(tokens_per_batch, gradient_accumulation) for `batch` examples of `mean` tokens a step:
    micro-batches as large as the device's memory takes, and each at least the longest
    example, accumulated to the step's tokens."""
    wanted = max(1, round(batch * mean))
    cap = MICRO_BATCH_TOKENS[device]
    if "tokens_per_batch" in given:
        tokens = Choice(given["tokens_per_batch"], SET, auto=False)
    elif "gradient_accumulation" in given:
        size = max(longest, math.ceil(wanted / given["gradient_accumulation"]))
        tokens = Choice(size, f"the step's ~{wanted:,} tokens over the micro-batches set")
    else:
        size = max(longest, min(wanted, cap))
        reason = (
            f"the step's ~{wanted:,} tokens"
            if size == wanted
            else f"the longest example ({longest:,} tokens)"
            if size == longest
            else f"at most {cap:,} tokens at once on a {device.upper()} (memory)"
        )
        tokens = Choice(size, reason)
    if "gradient_accumulation" in given:
        return tokens, Choice(given["gradient_accumulation"], SET, auto=False)
    count = max(1, round(wanted / tokens.value))
    return tokens, Choice(
        count, f"{count} micro-batch(es) of {tokens.value:,} tokens make the step's ~{wanted:,}"
    )


def choose_learning_rate(model_params: int | None, method: str, given: Any) -> Choice:
    """
    >>> choose_learning_rate(494_000_000, "lora", None).value
    0.001
    >>> choose_learning_rate(8_000_000_000, "full", None).value
    5e-05
    """
    if given is not None:
        return Choice(given, SET, auto=False)
    if model_params is None:
        rate, size = UNKNOWN_SIZE_RATE, "a model of unknown size"
    else:
        rate = next(r for limit, r in LORA_RATES if model_params < limit)
        size = f"a {model_params / 1e9:.3g}B-parameter model"
    why = f"LoRA on {size} (Thinking Machines' sweep of LoRA rates by model size)"
    if method == "full":
        rate, why = rate * FULL_OVER_LORA, why + "; full fine-tuning: a tenth of LoRA's"
    return Choice(float(f"{rate:.3g}"), why)


def choose_eval_every(steps: int, given: Any) -> Choice:
    if given is not None:
        return Choice(given, SET, auto=False)
    every = max(1, math.ceil(steps / EVALUATIONS))
    return Choice(every, f"{EVALUATIONS} validation losses over ~{steps} steps")


def choose_eval_examples(device: Device, given: Any) -> Choice:
    if given is not None:
        return Choice(given, SET, auto=False)
    count = VALIDATION_EXAMPLES[device]
    return Choice(
        count, f"at most {count:,} validation examples scored each time on a {device.upper()}"
    )


def choose_patience(given: Any) -> Choice:
    if given is not None:
        return Choice(given, SET, auto=False)
    return Choice(
        PATIENCE,
        f"stop after {PATIENCE} evaluations without a better validation loss "
        f"({PATIENCE * 100 // EVALUATIONS}% of the run)",
    )
