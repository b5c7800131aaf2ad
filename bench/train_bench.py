"""LoRA training throughput on this machine: droptune's trainer against TRL's SFTTrainer.

Both train SmolLM2-135M-Instruct (the pulled checkpoint) with LoRA r=16, alpha 32 on all
linear layers, on the same synthetic chat examples, for the same number of optimizer steps
with about the same real tokens in each step: TRL with its defaults (padded batches of
`--batch` examples, no packing, loss on every token), droptune with its defaults (packed
rows of the same token budget, loss on the assistant's turns). TRL runs as `--trl cpu` (its
defaults less bf16 autocast and gradient checkpointing, the stronger peer on a CPU) or
`--trl defaults` (SFTConfig() as it is). Measured: real (non-padding)
tokens per second after `--warmup` steps, and the final training loss of each. Goal from
the issue, on 2 CPU cores: >= 1.5x TRL.

Ablation, in the same run: droptune with transformers' masked SDPA over the whole packed row
in place of its per-example attention (`droptune_trainer.attention`); the larger `--batch`,
the longer the rows and the more the per-example attention saves.

    python bench/train_bench.py                     # CPU; ~5 min on 2 cores
    python bench/train_bench.py --steps 20 --batch 8

Needs `trl` (pip install trl): the peer is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "trainer")]

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
WORDS = [
    "the",
    "model",
    "data",
    "training",
    "example",
    "answer",
    "question",
    "user",
    "assistant",
    "request",
    "response",
    "token",
    "file",
    "line",
    "error",
    "check",
    "schema",
    "format",
    "field",
    "record",
    "message",
    "role",
    "content",
    "output",
    "input",
    "batch",
    "memory",
    "speed",
    "cloud",
    "bucket",
    "storage",
    "upload",
    "report",
    "config",
    "option",
    "default",
    "list",
    "string",
    "number",
    "value",
    "customer",
    "order",
    "invoice",
    "payment",
    "refund",
    "account",
    "email",
    "address",
    "shipping",
    "delivery",
    "product",
    "price",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def examples(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        user = " ".join(sentence(rng, rng.randint(6, 14)) for _ in range(rng.randint(2, 6)))
        answer = " ".join(sentence(rng, rng.randint(6, 14)) for _ in range(rng.randint(1, 5)))
        out.append({"messages": [
            {"role": "system", "content": "You are a concise support agent."},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]})  # fmt: skip
    return out


def bench_droptune(
    records: list[dict],
    tokens_per_step: int,
    steps: int,
    warmup: int,
    tmp: Path,
    per_example_attention: bool = True,
) -> dict:
    from droptune_trainer import attention
    from droptune_trainer.train import setup, train

    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    (run_dir / "data").mkdir(parents=True)
    (run_dir / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "run.json").write_text(json.dumps({"config": {"base_model": MODEL}}))
    masked = mock.patch.object(attention, "install", lambda model: False)
    with nullcontext() if per_example_attention else masked:
        s = setup(
            str(run_dir),
            overrides={
                "max_steps": steps + warmup,
                "tokens_per_batch": tokens_per_step,
                "max_length": tokens_per_step,
                "eval_every": 10_000,
                "checkpoint_every": 10_000,
            },
        )
    history = train(s)
    (t0, n0), (t1, n1) = history.step_end[warmup - 1], history.step_end[-1]
    return {
        "tokens_per_second": (n1 - n0) / (t1 - t0),
        "final_loss": history.train_loss[-1][1],
        "tokens_per_step": (n1 - n0) / steps,
    }


def bench_trl(
    records: list[dict], batch: int, steps: int, warmup: int, tmp: Path, variant: str
) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from droptune.models import pull

    folder = pull(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    timing: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                timing["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            timing["end"] = time.perf_counter()

    config = SFTConfig(
        output_dir=str(tmp / "trl"), max_steps=steps + warmup, per_device_train_batch_size=batch,
        learning_rate=2e-4, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        max_length=1024, seed=42,
        # TRL's defaults turn on bf16 autocast and gradient checkpointing, which CPUs without
        # bf16 units run many times slower; "cpu" is TRL set up as a careful user would.
        **({"bf16": False, "gradient_checkpointing": False} if variant == "cpu" else {}),
    )  # fmt: skip
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(records),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Clock()],
    )
    trainer.train()
    # TRL logs the real (non-padding) tokens seen so far as num_tokens, once a step.
    logged = [e for e in trainer.state.log_history if "loss" in e and "num_tokens" in e]
    real = float(logged[-1]["num_tokens"]) - float(logged[warmup - 1]["num_tokens"])
    return {
        "tokens_per_second": real / (timing["end"] - timing["start"]),
        "final_loss": float(logged[-1]["loss"]),
        "tokens_per_step": real / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4, help="TRL examples per step")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--trl",
        choices=["cpu", "defaults"],
        default="cpu",
        help="the peer's setup: 'defaults' is SFTConfig() as it is (bf16 autocast, gradient checkpointing); 'cpu' turns both off",
    )
    args = parser.parse_args()
    records = examples(args.examples, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        trl = bench_trl(records, args.batch, args.steps, args.warmup, Path(tmp), args.trl)
        budget = int(trl["tokens_per_step"])  # the same real tokens per optimizer step
        ours = bench_droptune(records, budget, args.steps, args.warmup, Path(tmp))
        masked = bench_droptune(records, budget, args.steps, args.warmup, Path(tmp), False)
    ratio = ours["tokens_per_second"] / trl["tokens_per_second"]
    gain = ours["tokens_per_second"] / masked["tokens_per_second"]
    print(f"{'':22} {'tokens/s':>9} {'tokens/step':>12} {'final loss':>11}")
    rows = ((f"TRL ({args.trl})", trl), ("droptune", ours), ("droptune, masked SDPA", masked))
    for name, r in rows:
        print(
            f"{name:22} {r['tokens_per_second']:9.0f} {r['tokens_per_step']:12.0f} {r['final_loss']:11.3f}"
        )
    print(f"droptune / TRL: {ratio:.2f}x real tokens per second (goal >= 1.5x on CPU)")
    print(f"per-example attention / masked SDPA: {gain:.2f}x (ablation)")
    print("(losses differ by design: TRL learns every token, droptune the assistant's turns)")
    print(
        json.dumps(
            {
                "trl_tps": round(trl["tokens_per_second"], 1),
                "droptune_tps": round(ours["tokens_per_second"], 1),
                "ratio": round(ratio, 2),
                "masked_sdpa_tps": round(masked["tokens_per_second"], 1),
                "attention_gain": round(gain, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
