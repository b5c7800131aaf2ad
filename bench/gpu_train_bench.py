"""LoRA training throughput on a GPU: droptune's training loop on the data and model shapes of
`../shared/bench/peer_sft_bench.py` (HF Trainer and TRL SFTTrainer variants), measured in the
same machine call so that the ratio compares like with like.

The same synthetic data as the peer script (numpy seed 0: 1,024 sequences of random token
ids, lengths log-normal around 350, clipped to 32..1,024), the same random-init Qwen2 shape
in bf16 with SDPA attention, LoRA r=16, alpha 32 on all linear layers, loss on every token,
30 optimizer steps of which the first 6 warm up. The peer takes 8 sequences per step; here
each step is one packed row of about the same number of tokens (8 x the mean length), with
`position_ids` restarting per sequence so no sequence attends to another. Measured: real
(non-padding) tokens per second over the timed steps, peak GPU memory, final loss.

    python bench/gpu_train_bench.py --peer          # ours beside the peer script (GPU)
    python bench/gpu_train_bench.py --model qwen2-1.5b
    python bench/gpu_train_bench.py --model tiny --device cpu --steps 3 --warmup 1 --examples 32

`--peer` needs what the peer script imports (trl, datasets, liger-kernel for its liger runs)
and prints the ratio against its best run. Goal from the issue: >= 2.0x the best peer.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "trainer")]
PEER = ROOT.parent / "shared" / "bench" / "peer_sft_bench.py"

N, MAXLEN, PEER_BATCH, STEPS, WARMUP = 1024, 1024, 8, 30, 6
SHAPES = {  # as in the peer script
    "qwen2-0.5b": dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
    ),
    "qwen2-1.5b": dict(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
    ),
    "tiny": dict(  # a CPU check that the script runs
        vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    ),
}  # fmt: skip


def sequences(n: int) -> list[list[int]]:
    """The peer script's data: the same generator, the same draws in the same order."""
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(math.log(350), 0.6, N), 32, MAXLEN).astype(int)
    return [rng.integers(10, 150000, length).tolist() for length in lengths][:n]


def make_model(name: str, device: str) -> object:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(max_position_embeddings=4096, **SHAPES[name])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def bench_droptune(name: str, device: str, n: int, steps: int, warmup: int) -> dict:
    import torch
    from droptune_trainer.config import TrainConfig
    from droptune_trainer.data import Example, pack
    from droptune_trainer.train import Setup, train
    from droptune_trainer.vertex import place

    seqs = sequences(n)
    per_step = round(PEER_BATCH * sum(map(len, seqs)) / len(seqs))  # the peer's tokens a step
    rows = pack([Example(s, list(s)) for s in seqs], max(per_step, MAXLEN))
    config = TrainConfig(
        max_steps=steps, max_length=MAXLEN, tokens_per_batch=max(per_step, MAXLEN),
        learning_rate=2e-4, warmup_ratio=0.0, lora_dropout=0.0, checkpoint_every=10**6,
        early_stopping_patience=0, evaluate_at_end=False,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="droptune-gpu-bench-"))
    s = Setup(
        config=config,
        run_dir=folder,
        device=torch.device(device),
        dtype=torch.bfloat16 if device == "cuda" else torch.float32,
        tokenizer=SimpleNamespace(pad_token_id=0),
        model=make_model(name, device),
        train_rows=rows,
        eval_rows=[],
        model_out=place(None, folder / "model"),
        checkpoints=place(None, folder / "checkpoints"),
        tensorboard=None,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    history = train(s)
    (t0, tokens0), (t1, tokens1) = history.step_end[warmup - 1], history.step_end[-1]
    return {
        "run": "droptune_packed",
        "model": name,
        "real_tok_s": round((tokens1 - tokens0) / (t1 - t0)),
        "step_s": round((t1 - t0) / (len(history.step_end) - warmup), 4),
        "tokens_per_step": round(history.tokens / len(history.step_end)),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device == "cuda"
        else None,
        "final_loss": round(history.train_loss[-1][1], 4),
    }


def run_peer(name: str) -> list[dict]:
    """The peer script's lines for `name` (its `big` argument adds the 1.5B shape)."""
    which = ["big"] if name == "qwen2-1.5b" else ["all"]
    done = subprocess.run(
        [sys.executable, str(PEER), *which], capture_output=True, text=True, check=False
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for line in lines:
        print(json.dumps({"peer": line}), flush=True)
    if done.returncode:
        print(json.dumps({"peer_exit": done.returncode, "stderr": done.stderr[-1500:]}))
    return [line for line in lines if line.get("model") == name and "real_tok_s" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=SHAPES, default="qwen2-0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--examples", type=int, default=N)
    parser.add_argument("--peer", action="store_true", help="run the peer script first")
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        parser.error("--warmup must be at least 1 and below --steps")
    peers = run_peer(args.model) if args.peer else []
    ours = bench_droptune(args.model, args.device, args.examples, args.steps, args.warmup)
    print(json.dumps(ours), flush=True)
    if peers:
        best = max(peers, key=lambda p: p["real_tok_s"])
        ratio = ours["real_tok_s"] / best["real_tok_s"]
        print(
            f"droptune {ours['real_tok_s']:,} real tokens/s vs the best peer "
            f"({best['run']}) {best['real_tok_s']:,}: {ratio:.2f}x (goal >= 2.0x)"
        )


if __name__ == "__main__":
    main()
