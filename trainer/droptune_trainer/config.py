"""The training recipe's settings: defaults that suit SmolLM2-to-Qwen-sized models, each with
its trade-off in the help text. Values come from the run (`epochs`, `max_length`, the base
model), then a recipe YAML, then `--set key=value`, later winning; unknown keys are errors.

Settings left unset (None) are sized to the data when training starts (`droptune.sizing`):
passes, batch, learning rate, evaluation and early stopping. Anything set wins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from droptune.config import Settings, setting
from droptune.errors import ConfigError

Method = Literal["lora", "qlora", "full"]


def from_run_config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's settings that a run's configuration gives: its base model, `epochs`,
    `max_length` and `eval_max_output_tokens`, then its own `training` mapping over them.
    A missing, None or 0 `epochs` is left out: the trainer sizes it to the data.

    >>> from_run_config({"epochs": None, "max_length": 512, "training": {"lora_rank": 8}})
    {'max_length': 512, 'lora_rank': 8}
    """
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
    lora_dropout: float = setting(
        "Dropout on the LoRA path. 0 (Unsloth's default): above 0, each adapted layer keeps "
        "a dropped-out copy of its input and the mask for backward (SmolLM2-135M: +0.9 MB a "
        "token, +25% of training memory), a regulariser short runs do not need.",
        default=0.0,
    )
    target_modules: str = setting(
        "Modules that get adapters: all-linear, or a comma list.", default="all-linear"
    )
    learning_rate: float | None = setting(
        "Peak learning rate; none: by model size (LoRA 1e-3 below 5B parameters, 5e-4 below "
        "20B, 3e-4 above; full fine-tuning a tenth).",
        default=None,
    )
    weight_decay: float = setting("AdamW weight decay.", default=0.0)
    epochs: float | None = setting(
        "Passes over the training data; none: 3, more for small files (>= 100 examples "
        "seen), fewer for big ones (<= 25,000; on a CPU ~9 minutes' worth).",
        default=None,
    )
    max_steps: int = setting("Stop after this many optimizer steps (0: epochs decide).", default=0)
    max_length: int = setting("Tokens per example; longer ones are truncated.", default=2048)
    tokens_per_batch: int | None = setting(
        "Token budget of one micro-batch (packed row); memory scales with it. None: the "
        "step's tokens, up to 4096 on a GPU and 1024 on a CPU, at least the longest "
        "example.",
        default=None,
    )
    gradient_accumulation: int | None = setting(
        "Micro-batches per optimizer step; none: as many as make ~100 steps a run.",
        default=None,
    )
    warmup_ratio: float = setting(
        "Share of steps with a linear warmup before the cosine decay.", default=0.03
    )
    assistant_only_loss: bool = setting(
        "Learn only the assistant turns (not prompts, templates).", default=True
    )
    packing: bool = setting(
        "Pack examples into rows (no padding; no attention across examples).", default=True
    )
    eval_every: int | None = setting(
        "Validation loss every N steps; none: 5 times a run.", default=None
    )
    eval_examples: int | None = setting(
        "Validation examples scored at each evaluation; none: all (at most 1024) on a GPU, "
        "64 on a CPU, where scoring them all would take longer than training.",
        default=None,
    )
    early_stopping_patience: int | None = setting(
        "Stop after N evaluations without improvement (0: never; none: 2).", default=None
    )
    checkpoint_every: int = setting(
        "Checkpoint every N steps (0: once an epoch, and at the end).", default=0
    )
    keep_checkpoints: int = setting("Newest checkpoints kept.", default=2)
    evaluate_at_end: bool = setting(
        "Compare base and tuned on the test split once training ends.", default=True
    )
    eval_max_new_tokens: int = setting(
        "Most tokens generated per test answer in the evaluation.", default=256
    )
    seed: int = setting("Seed for data order, dropout and initialisation.", default=42)
    bf16: bool = setting("bfloat16 compute on GPUs that have it.", default=True)
    cpu_bf16: bool = setting(
        "bfloat16 compute on a CPU with AVX512-BF16 or AMX: LoRA trains 1.45x faster, but "
        "memory grows over a run and local serving stays fp32 (answers may differ slightly).",
        default=False,
    )
    master_weights: bool = setting(
        "LoRA in bf16 with fp32 master weights in the optimizer (bf16 GPUs and CPUs); false: peft's fp32 "
        "adapters, which cast every layer's activations to fp32 and back (slower).",
        default=True,
    )

    def __post_init__(self) -> None:
        if self.method not in ("lora", "qlora", "full"):
            raise ConfigError(f"method must be lora, qlora or full; got {self.method!r}")
        self.require_positive("lora_rank", "lora_alpha", "max_length", "keep_checkpoints")
        # None and 0 leave these to the data (droptune.sizing)
        for name in ("tokens_per_batch", "gradient_accumulation", "eval_every", "eval_examples"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(
                    f"{name} must be at least 1 (or unset); got {getattr(self, name)}"
                )
        for name in ("epochs", "learning_rate"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{name} must be above 0 (or unset); got {getattr(self, name)}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            raise ConfigError(
                f"early_stopping_patience must be 0 (never) or more; got {self.early_stopping_patience}"
            )
        if self.tokens_per_batch and self.tokens_per_batch < self.max_length:
            raise ConfigError(
                f"tokens_per_batch ({self.tokens_per_batch}) must hold one whole example of max_length ({self.max_length})"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1); got {self.warmup_ratio}")
