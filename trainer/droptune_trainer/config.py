"""The training recipe's settings: defaults that suit SmolLM2-to-Qwen-sized models, each with
its trade-off in the help text. Values come from the run (`epochs`, `max_length`, the base
model), then a recipe YAML, then `--set key=value`, later winning; unknown keys are errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from droptune.config import Settings, setting
from droptune.errors import ConfigError

Method = Literal["lora", "qlora", "full"]


def from_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's settings that a run's configuration gives: its base model, `epochs`,
    `max_length` and `eval_max_output_tokens`, then its own `training` mapping over them."""
    given = {k: run_config[k] for k in ("base_model", "epochs", "max_length") if run_config.get(k)}
    if run_config.get("eval_max_output_tokens"):
        given["eval_max_new_tokens"] = run_config["eval_max_output_tokens"]
    return given | dict(run_config.get("training") or {})


@dataclass
class TrainConfig(Settings):
    base_model: str = setting(
        "HF hub id, local dir, gs:// dir or .gguf file.",
        default="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    method: Method = setting(
        "lora (default), qlora (4-bit base, GPU only) or full fine-tuning.", default="lora"
    )
    lora_rank: int = setting("LoRA rank: higher fits more, costs more memory.", default=16)
    lora_alpha: int = setting(
        "LoRA scaling numerator (alpha / rank scales the update).", default=32
    )
    lora_dropout: float = setting("Dropout on the LoRA path.", default=0.05)
    target_modules: str = setting(
        "Modules that get adapters: all-linear, or a comma list.", default="all-linear"
    )
    learning_rate: float = setting(
        "Peak learning rate (LoRA likes ~1e-4..3e-4; full ~1e-5).", default=2e-4
    )
    weight_decay: float = setting("AdamW weight decay.", default=0.0)
    epochs: int = setting("Passes over the training data.", default=3)
    max_steps: int = setting("Stop after this many optimizer steps (0: epochs decide).", default=0)
    max_length: int = setting("Tokens per example; longer ones are truncated.", default=2048)
    tokens_per_batch: int = setting(
        "Token budget of one micro-batch (packed row); memory scales with it.", default=4096
    )
    gradient_accumulation: int = setting("Micro-batches per optimizer step.", default=1)
    warmup_ratio: float = setting(
        "Share of steps with a linear warmup before the cosine decay.", default=0.03
    )
    assistant_only_loss: bool = setting(
        "Learn only the assistant turns (not prompts, templates).", default=True
    )
    packing: bool = setting(
        "Pack examples into rows (no padding; no attention across examples).", default=True
    )
    eval_every: int = setting("Validation loss every N steps (0: once an epoch).", default=0)
    early_stopping_patience: int = setting(
        "Stop after N evaluations without improvement (0: never).", default=3
    )
    checkpoint_every: int = setting("Checkpoint every N steps (0: once an epoch).", default=0)
    keep_checkpoints: int = setting("Newest checkpoints kept.", default=2)
    evaluate_at_end: bool = setting(
        "Compare base and tuned on the test split once training ends.", default=True
    )
    eval_max_new_tokens: int = setting(
        "Most tokens generated per test answer in the evaluation.", default=256
    )
    seed: int = setting("Seed for data order, dropout and initialisation.", default=42)
    bf16: bool = setting("bfloat16 compute on GPUs that have it (ignored on CPU).", default=True)
    master_weights: bool = setting(
        "LoRA in bf16 with fp32 master weights in the optimizer (GPUs); false: peft's fp32 "
        "adapters, which cast every layer's activations to fp32 and back (slower).",
        default=True,
    )

    def __post_init__(self) -> None:
        if self.method not in ("lora", "qlora", "full"):
            raise ConfigError(f"method must be lora, qlora or full; got {self.method!r}")
        self.require_positive(
            "lora_rank",
            "lora_alpha",
            "epochs",
            "max_length",
            "tokens_per_batch",
            "gradient_accumulation",
            "keep_checkpoints",
        )
        if self.tokens_per_batch < self.max_length:
            raise ConfigError(
                f"tokens_per_batch ({self.tokens_per_batch}) must hold one whole example of max_length ({self.max_length})"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1); got {self.warmup_ratio}")
