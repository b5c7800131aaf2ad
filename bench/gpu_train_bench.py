"""LoRA training throughput on a GPU: droptune's training loop on the data and model shapes of
`../shared/bench/peer_sft_bench.py` (HF Trainer and TRL SFTTrainer variants), measured in the
same machine call so that the ratio compares like with like.

The same synthetic data as the peer script (numpy seed 0: 1,024 sequences of random token
ids, lengths log-normal around 350, clipped to 32..1,024), the same random-init Qwen2 shape
in bf16 with SDPA attention, LoRA r=16, alpha 32 on all linear layers, loss on every token,
30 optimizer steps of which the first 6 warm up. The peer takes 8 sequences per step; here
each step is one packed row of about the same number of tokens (8 x the mean length), with
`position_ids` restarting per sequence and attention per sequence (`droptune_trainer.attention`:
PyTorch's varlen flash kernel on the GPU) so no sequence attends to another. Measured: real
(non-padding) tokens per second over the timed steps, peak GPU memory, final loss. An
ablation runs the same loop with transformers' masked SDPA over the whole row instead;
`--fp32-adapters` another with peft's fp32 adapters instead of bf16 ones with fp32 masters.

`--gen` also times evaluation generation as the peer's `gen` run does (the base model, 64
prompts of 64-255 random token ids, exactly 32 new greedy tokens each): droptune's evaluation
(`droptune_trainer.evaluate.answer_all`: prompts rendered by a chat template, batched by
length under a token budget, left-padded) against a per-sample `model.generate` loop on 16 of
the same prompts, in this process; with `--peer` the peer script's own loop runs too.

    python bench/gpu_train_bench.py --peer --gen    # ours beside the peer script (GPU)
    python bench/gpu_train_bench.py --model qwen2-1.5b
    python bench/gpu_train_bench.py --profile      # where a step's time goes
    python bench/gpu_train_bench.py --model tiny --device cpu --steps 3 --warmup 1 --examples 32 --gen

`--peer` needs what the peer script imports (trl, datasets, liger-kernel for its liger runs)
and prints the ratio against its best run (`--peer-runs trl_packing_liger` runs only that
one, the best of the five on an H200, in a third of the time); `bench/gpu_kit.sh` brings those, and the script, to
a GPU machine that cannot download them. Goals from the issue: training >= 2.0x the best
peer; batched evaluation >= 20x the per-sample loop.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "trainer")]
PEER = ROOT.parent / "shared" / "bench" / "peer_sft_bench.py"

N, MAXLEN, PEER_BATCH, STEPS, WARMUP = 1024, 1024, 8, 30, 6
PROMPTS, LOOPED, NEW_TOKENS = 64, 16, 32  # as the peer's `gen` run
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


def base_model(name: str, device: str) -> Any:
    """The peer's random-init Qwen2 shape: bf16 on a GPU, float32 on a CPU, SDPA attention."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(max_position_embeddings=4096, **SHAPES[name])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")


def make_model(name: str, device: str) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(base_model(name, device), lora)


def bench_droptune(
    name: str,
    device: str,
    n: int,
    steps: int,
    warmup: int,
    per_example: bool = True,
    master_weights: bool = True,
) -> dict:
    """`per_example` False is the ablation: the packed row under transformers' masked SDPA;
    `master_weights` False the other: peft's fp32 adapters (`TrainConfig.master_weights`)."""
    import torch
    from droptune_trainer import attention
    from droptune_trainer.config import TrainConfig
    from droptune_trainer.data import Example, pack
    from droptune_trainer.train import Setup, train
    from droptune_trainer.vertex import place

    begun = time.perf_counter()  # the run's whole wall time, to plan a device call's limit
    seqs = sequences(n)
    # The packing peers' tokens a step: PEER_BATCH rows of MAXLEN (their padded runs take
    # PEER_BATCH examples, ~40% of that).
    per_step = PEER_BATCH * MAXLEN
    rows = pack([Example(s, list(s)) for s in seqs], max(per_step, MAXLEN))
    config = TrainConfig(
        max_steps=steps, max_length=MAXLEN, tokens_per_batch=max(per_step, MAXLEN),
        learning_rate=2e-4, warmup_ratio=0.0, lora_dropout=0.0, checkpoint_every=10**6,
        early_stopping_patience=0, evaluate_at_end=False, master_weights=master_weights,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="droptune-gpu-bench-"))
    model = make_model(name, device)
    if per_example:
        attention.install(model)
    s = Setup(
        config=config,
        run_dir=folder,
        device=torch.device(device),
        dtype=torch.bfloat16 if device == "cuda" else torch.float32,
        tokenizer=SimpleNamespace(pad_token_id=0),
        model=model,
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
    shape = SHAPES[name]
    head = shape["hidden_size"] // shape["num_attention_heads"]
    query = torch.zeros(1, shape["num_attention_heads"], 1, head, device=device, dtype=s.dtype)
    key = query[:, : shape["num_key_value_heads"]]
    return {
        "run": ("droptune_packed" if per_example else "droptune_packed_masked_sdpa")
        + ("" if master_weights else "_fp32_adapters"),
        "model": name,
        "attention": ("varlen flash" if attention.varlen_works(query, key, key) else "per sequence")
        if per_example
        else "masked sdpa",
        "real_tok_s": round((tokens1 - tokens0) / (t1 - t0)),
        "step_s": round((t1 - t0) / (len(history.step_end) - warmup), 4),
        "tokens_per_step": round(history.tokens / len(history.step_end)),
        "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device == "cuda"
        else None,
        "final_loss": round(history.train_loss[-1][1], 4),
        "wall_s": round(time.perf_counter() - begun, 1),
    }


def profile_training(name: str, device: str, steps: int = 6) -> None:
    """torch.profiler over a short run of droptune's loop (model setup included, little of it
    on the GPU): the busiest operations by GPU time, and dtype casts, matmul time and GPU
    time per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as traced:
        bench_droptune(name, device, 200, steps, 1)
    events = traced.key_averages()
    print(events.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60))
    by_name = {e.key: e for e in events}
    casts, mm = by_name.get("aten::_to_copy"), by_name.get("aten::mm")
    summary = {
        "profiled_steps": steps,
        "casts_per_step": round(casts.count / steps) if casts else 0,
        "cast_device_ms_per_step": round(casts.device_time_total / 1e3 / steps, 1) if casts else 0,
        "matmul_device_ms_per_step": round(mm.self_device_time_total / 1e3 / steps, 1) if mm else 0,
        "device_ms_per_step": round(sum(e.self_device_time_total for e in events) / 1e3 / steps, 1),
    }
    print(json.dumps(summary), flush=True)


def word_tokenizer() -> object:
    """A fast tokenizer in which the text `t123` is the token id 123, with a chat template that
    prints the contents as they are: prompts of random ids go through droptune's real path."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {f"t{i}": i for i in range(10, 150000)}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    return tokenizer


def bench_generation(name: str, device: str) -> dict:
    """Seconds per test answer: droptune's batched evaluation vs a per-sample loop."""
    import torch
    from droptune_trainer.evaluate import answer_all

    from droptune.cases import Case

    begun = time.perf_counter()
    rng = np.random.default_rng(1)
    prompts = [rng.integers(10, 150000, n).tolist() for n in rng.integers(64, 256, PROMPTS)]
    model = base_model(name, device).eval()
    tokenizer, where = word_tokenizer(), torch.device(device)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.min_new_tokens = NEW_TOKENS  # every answer exactly NEW_TOKENS long

    def timed(work: Callable[[], object]) -> tuple[object, float]:
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = work()
        if device == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - started

    def loop(looped: list[list[int]]) -> None:
        for ids in looped:
            model.generate(
                torch.tensor([ids], device=where), max_new_tokens=NEW_TOKENS, do_sample=False,
                pad_token_id=0,
            )  # fmt: skip

    cases = [
        Case([{"role": "user", "content": " ".join(f"t{i}" for i in ids)}], "") for ids in prompts
    ]
    loop(prompts[:1])  # warm-up of both ways
    answer_all(model, tokenizer, cases[:2], NEW_TOKENS, where, False)
    _, loop_s = timed(lambda: loop(prompts[:LOOPED]))
    answers, batched_s = timed(
        lambda: answer_all(model, tokenizer, cases, NEW_TOKENS, where, False)
    )
    loop_s, batched_s = loop_s / LOOPED, batched_s / PROMPTS
    return {
        "run": "droptune_eval_generate",
        "model": name,
        "new_tokens": NEW_TOKENS,
        "per_sample_loop_s": round(loop_s, 4),
        "batched_s_per_sample": round(batched_s, 4),
        "speedup": round(loop_s / batched_s, 1),
        # the batched run did the same work: every prompt whole, NEW_TOKENS answered to each
        "same_work": [a.input_tokens for a in answers] == [len(ids) for ids in prompts]
        and all(a.output_tokens == NEW_TOKENS for a in answers),
        "wall_s": round(time.perf_counter() - begun, 1),
    }


# The peer script's runs (the table in its __main__), by the tag each prints: `--peer-runs`
# runs some of them through DRIVER, the script's own functions on its own data.
PEER_RUNS = {
    "hf_trainer_pad_to_max": ("hf_trainer_padmax", None),
    "trl_default_padding": ("trl_run", {}),
    "trl_packing_bfd": ("trl_run", {"packing": True}),
    "trl_liger": ("trl_run", {"use_liger_kernel": True}),
    "trl_packing_liger": ("trl_run", {"packing": True, "use_liger_kernel": True}),
}
DRIVER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("peer_sft_bench", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
name, gen, runs = sys.argv[2], sys.argv[3] == "gen", json.loads(sys.argv[4])
for tag, (function, options) in runs.items():
    if options is None:
        getattr(peer, function)(name)
    else:
        getattr(peer, function)(name, tag, **options)
if gen:
    peer.gen_bench(name)
"""


def run_peer(name: str, gen: bool, script: Path, runs: list[str] | None = None) -> list[dict]:
    """The peer script's lines for `name`: all its runs (its `big` argument adds the 1.5B
    shape, `gen` its evaluation generation), or only `runs`."""
    if runs:
        chosen = json.dumps({tag: PEER_RUNS[tag] for tag in runs})
        which = ["-c", DRIVER, str(script), name, "gen" if gen else "", chosen]
    else:
        which = [str(script), "big" if name == "qwen2-1.5b" else "all"] + (["gen"] if gen else [])
    lines, begun = [], time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        command = [sys.executable, *which]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as peer:
            for raw in peer.stdout or ():  # each run's line as it ends: a cut-off run keeps them
                try:  # the HF Trainer prints its own logs as Python dicts: not the peer's lines
                    line = json.loads(raw) if raw.startswith("{") else None
                except json.JSONDecodeError:
                    line = None
                if isinstance(line, dict):
                    lines.append(line)
                    at = round(time.perf_counter() - begun, 1)  # seconds into the peer's run
                    print(json.dumps({"peer": line, "at_s": at}), flush=True)
        if peer.returncode:
            errors.seek(0)
            print(json.dumps({"peer_exit": peer.returncode, "stderr": errors.read()[-1500:]}))
    return [line for line in lines if line.get("model") == name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=SHAPES, default="qwen2-0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--examples", type=int, default=N)
    parser.add_argument("--peer", action="store_true", help="run the peer script first")
    parser.add_argument("--gen", action="store_true", help="time evaluation generation too")
    parser.add_argument("--peer-script", type=Path, default=PEER, help="the peer script's path")
    parser.add_argument(
        "--peer-runs", nargs="+", choices=PEER_RUNS, help="only these of the peer's runs"
    )
    parser.add_argument(
        "--no-ablation", action="store_true", help="skip the masked-SDPA ablation run"
    )
    parser.add_argument(
        "--fp32-adapters", action="store_true", help="also train with peft's fp32 adapters"
    )
    parser.add_argument(
        "--profile", action="store_true", help="only profile a short run of droptune's loop"
    )
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        parser.error("--warmup must be at least 1 and below --steps")
    if args.profile:
        return profile_training(args.model, args.device)
    peers = run_peer(args.model, args.gen, args.peer_script, args.peer_runs) if args.peer else []
    shape = (args.model, args.device, args.examples, args.steps, args.warmup)
    ours = bench_droptune(*shape)
    print(json.dumps(ours), flush=True)
    if args.fp32_adapters:
        fp32 = bench_droptune(*shape, master_weights=False)
        print(json.dumps(fp32), flush=True)
        print(
            "bf16 adapters with fp32 masters / fp32 adapters: "
            f"{ours['real_tok_s'] / fp32['real_tok_s']:.2f}x (final loss "
            f"{ours['final_loss']} / {fp32['final_loss']})"
        )
    trainers = [p for p in peers if "real_tok_s" in p]
    if trainers:
        best = max(trainers, key=lambda p: p["real_tok_s"])
        ratio = ours["real_tok_s"] / best["real_tok_s"]
        print(
            f"droptune {ours['real_tok_s']:,} real tokens/s vs the best peer "
            f"({best['run']}) {best['real_tok_s']:,}: {ratio:.2f}x (goal >= 2.0x)"
        )
    if args.gen:
        gen = bench_generation(args.model, args.device)
        print(json.dumps(gen), flush=True)
        print(
            f"evaluation: {gen['batched_s_per_sample']} s per answer batched vs "
            f"{gen['per_sample_loop_s']} s in the per-sample loop: {gen['speedup']}x (goal >= 20x; "
            f"same prompts and answer lengths: {gen['same_work']})"
        )
        loops = [p for p in peers if p.get("run") == "eval_generate" and "per_sample_loop_s" in p]
        if loops:
            peer_loop = loops[0]["per_sample_loop_s"]
            print(
                f"against the peer script's own loop ({peer_loop} s per answer): "
                f"{peer_loop / gen['batched_s_per_sample']:.1f}x"
            )

    # last: a call cut off by its time limit loses the ablation only
    if not args.no_ablation:
        masked = bench_droptune(*shape, per_example=False)
        print(json.dumps(masked), flush=True)
        print(
            "per-sequence attention / masked SDPA: "
            f"{ours['real_tok_s'] / masked['real_tok_s']:.2f}x (ablation)"
        )


if __name__ == "__main__":
    main()
