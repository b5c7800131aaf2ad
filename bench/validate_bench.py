"""Validation throughput and memory: droptune against the loops a script would run instead.

Synthetic OpenAI-style chat JSONL (system/user/assistant, 1-3 exchanges, ~0.5-3 KB a line, a
fifth of the conversations with non-ASCII text), written once into a temporary folder. On it:

peers, timed on prefixes because they are slow
  - naive:     per line `json.loads` + `jsonschema.validate(record, chat.json)` (droptune's own
               chat schema); `validate` re-checks the schema on every call, as scripts do
  - compiled:  the same with `Draft202012Validator(chat.json)` built once: the stronger peer,
               and the one the goals are judged against (median of --repeat runs)
  - per-line tokens: compiled check + `tokenizer.apply_chat_template(messages)` (tokenized) per
               line, with the same tokenizer droptune uses
droptune
  - `pipeline.validate(path, RunConfig(), count_tokens=False)` on the whole file (median of
    --repeat runs), single process
  - `pipeline.validate(path, RunConfig())`: exact counts with the default base model's
    tokenizer and chat template, on a 100 MB prefix, counted in worker processes on the
    usable cores as `droptune validate` does for inputs over 8 MB; the tokenizer load is timed
    apart and excluded
  - ablations of the exact counts, each with one part done the plain way and the rest as
    droptune runs it: the Rust encoder in place of word counts, Jinja for every conversation,
    `regex` for every word split (no ASCII form in `re`)
  - the content hash alone on the --tokens-mb prefix's canonical records: XXH3-64 (used)
    against blake2b-64, and the share of a no-token scan each takes
  - peak RSS (VmHWM) in fresh processes, on a --rss-mb prefix and on the whole file, of the
    no-token validation and of `pipeline.prepare` (exact tokens, split, data files); "flat"
    here: the whole file's peak is within 10% of the prefix's

Goals (from the issue): no tokens >= 100 MB/s and >= 10x the compiled peer; with tokens >= 18
MB/s on 2 cores; peak RSS < 300 MB and flat. Every ratio compares numbers from this run on this
machine; MB = 10^6 bytes.

    python bench/validate_bench.py                  # 200 MB; ~30 s on 2 cores
    python bench/validate_bench.py --size-mb 1024   # ~1 GB
    python bench/validate_bench.py --data my.jsonl  # an existing chat JSONL file instead

It prints a table, then one JSON line with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import MB, make_data, peak_rss_mb, prefix_file

ROOT = Path(__file__).resolve().parent.parent
CHAT_SCHEMA = ROOT / "droptune" / "formats" / "schemas" / "chat.json"


# --- measurements -------------------------------------------------------------------------
def peer_jsonschema(path: Path, compiled: bool, tokenizer: Any = None) -> dict:
    """What a script does: json.loads + jsonschema per line (+ the chat template, tokenized)."""
    import jsonschema

    schema = json.loads(CHAT_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validate = validator.validate if compiled else (lambda r: jsonschema.validate(r, schema))
    lines = invalid = tokens = 0
    started = time.perf_counter()
    with path.open("rb") as f:
        for raw in f:
            lines += 1
            try:
                record = json.loads(raw)
                validate(record)
            except (ValueError, jsonschema.ValidationError):
                invalid += 1
                continue
            if tokenizer is not None:
                ids = tokenizer.apply_chat_template(record["messages"], return_dict=False)
                tokens += len(ids)
    out = _speed(path.stat().st_size, time.perf_counter() - started, records=lines)
    out.update(invalid=invalid, **({"tokens_total": tokens} if tokenizer is not None else {}))
    return out


def median_run(runs: list[dict]) -> dict:
    """The run of median speed, with every run's speed beside it (this machine is noisy)."""
    ordered = sorted(runs, key=lambda r: r["mb_s"])
    return {**ordered[len(ordered) // 2], "runs_mb_s": [r["mb_s"] for r in runs]}


def bench_droptune(path: Path, counter: Any = None, repeat: int = 1) -> dict:
    from droptune import pipeline
    from droptune.config import RunConfig

    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        report = pipeline.validate(
            str(path), RunConfig(), counter=counter, count_tokens=counter is not None
        )
        runs.append(time.perf_counter() - started)
    out = _speed(path.stat().st_size, statistics.median(runs), records=report.counts["records"])
    out.update(valid=report.counts["valid"], issues=dict(report.issue_counts))
    if repeat > 1:
        out["runs_mb_s"] = [round(path.stat().st_size / MB / s, 1) for s in runs]
    if report.tokens is not None:
        out.update(counter=report.tokens.method, tokens_total=report.tokens.total)
    return out


def bench_hashes(path: Path) -> dict:
    """The content hash alone, XXH3-64 (what the scan uses) against blake2b-64 (what it used),
    over the canonical records of `path` held in memory; and each one's share of a no-token
    scan of the same file."""
    import hashlib

    import xxhash

    from droptune.config import RunConfig
    from droptune.scan import Scan

    with Scan(str(path), RunConfig(), count_tokens=False) as scan:
        encoded = [scanned.encoded for scanned in scan]
    size = sum(map(len, encoded))

    def seconds(digest: Any) -> float:
        started = time.perf_counter()
        for e in encoded:
            digest(e)
        return time.perf_counter() - started

    xxh3 = min(seconds(xxhash.xxh3_64_intdigest) for _ in range(3))
    blake2b = min(
        seconds(lambda e: int.from_bytes(hashlib.blake2b(e, digest_size=8).digest(), "little"))
        for _ in range(3)
    )
    scan_s = bench_droptune(path)["seconds"]
    return {
        "records": len(encoded),
        "canonical_mb": round(size / MB, 1),
        "xxh3_s": round(xxh3, 3),
        "blake2b_s": round(blake2b, 3),
        "xxh3_vs_blake2b": round(blake2b / xxh3, 1),
        "scan_s": scan_s,
        "xxh3_share_of_scan": round(xxh3 / scan_s, 3),
        "blake2b_share_of_scan": round(blake2b / (scan_s - xxh3 + blake2b), 3),
    }


def bench_encoder_alone(path: Path, counter: Any) -> dict:
    """Exact counts as droptune made them before word counts and worker processes: the
    tokenizer's `encode_batch_fast` (Rust, on every core) in the scanning process."""
    from droptune import counting
    from droptune.tokens import ChatTemplateCounter

    encoder = ChatTemplateCounter(counter.tokenizer, counter.files, word_counts=False)
    pool_from = counting.PARALLEL_MIN_BYTES
    counting.PARALLEL_MIN_BYTES = 1 << 62
    try:
        return bench_droptune(path, encoder)
    finally:
        counting.PARALLEL_MIN_BYTES = pool_from


def bench_jinja_render(path: Path, counter: Any) -> dict:
    """Exact counts with every conversation rendered by Jinja (`apply_chat_template`), not
    joined (`droptune.chat_render`): the rest as droptune runs it."""
    from droptune.tokens import ChatTemplateCounter

    return bench_droptune(path, ChatTemplateCounter(counter.tokenizer, counter.files, joined=False))


def bench_regex_words(path: Path, counter: Any) -> dict:
    """Exact counts with every piece split into words by `regex`, ASCII ones too (no ASCII
    form of the pattern in `re`: `droptune.bpe_count.ascii_form`): the rest as droptune runs it."""
    from droptune import bpe_count
    from droptune.tokens import ChatTemplateCounter

    ascii_form = bpe_count.ascii_form
    bpe_count.ascii_form = lambda pattern: None
    try:
        plain = ChatTemplateCounter(counter.tokenizer, counter.files)
    finally:
        bpe_count.ascii_form = ascii_form
    return bench_droptune(path, plain)


def child_main(job: str, path: str) -> None:
    """`--child validate PATH`: validate without tokens in this fresh process; `--child prepare
    PATH`: prepare a run folder (exact tokens, split, data files) in a temporary folder, as the
    upload function does: without torch, which its image does not install (`droptune[functions]`)
    and which transformers would otherwise import with the tokenizer (~250 MB);
    `--child import -`: only import droptune. Prints seconds and peak RSS. Peak RSS is VmHWM of
    /proc/self/status, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would
    inherit this benchmark's own peak. Token-counting workers are processes of their own and
    not in this number.
    """
    if job == "prepare":
        sys.modules["torch"] = None  # type: ignore[assignment]  # not installed, to importlib
    started = time.perf_counter()
    from droptune import pipeline
    from droptune.config import RunConfig

    valid = None
    if job == "validate":
        valid = pipeline.validate(path, RunConfig(), count_tokens=False).counts["valid"]
    elif job == "prepare":
        with tempfile.TemporaryDirectory(prefix="droptune-bench-run-") as run:
            valid = pipeline.prepare(path, RunConfig(), run).counts["valid"]
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), "valid": valid}))


def peak_rss(job: str, path: Path | None) -> dict:
    """Peak RSS of a fresh interpreter that runs `job` on `path` (see `child_main`)."""
    script = str(Path(__file__).resolve())
    cmd = [sys.executable, script, "--child", job, str(path or "-")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "mb": round(path.stat().st_size / MB, 1) if path else 0,
        "rss_mb": round(result["rss_mb"], 1),
        "seconds": round(result["seconds"], 2),
        "valid": result["valid"],
    }


def _speed(size: int, seconds: float, **extra: Any) -> dict:
    return {
        "mb": round(size / MB, 1),
        "seconds": round(seconds, 2),
        "mb_s": round(size / MB / seconds, 2),
        **extra,
    }


# --- the run ------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--size-mb", type=float, default=200, help="synthetic file size (MB); 1024 for ~1 GB")
    add("--data", type=Path, help="an existing chat JSONL file to use instead")
    add("--seed", type=int, default=0, help="seed of the synthetic data")
    add(
        "--non-ascii",
        type=float,
        default=0.2,
        help="share of conversations with non-ASCII text (default 0.2; 1.0 = worst case)",
    )
    add("--naive-mb", type=float, default=2, help="prefix for the naive jsonschema.validate peer")
    add("--baseline-mb", type=float, default=20, help="prefix for the compiled jsonschema peer")
    add("--tokens-mb", type=float, default=100, help="prefix for droptune with token counts")
    add("--token-peer-mb", type=float, default=5, help="prefix for the per-line token peer")
    add("--rss-mb", type=float, default=100, help="the smaller file of the RSS pair")
    add(
        "--repeat",
        type=int,
        default=3,
        help="runs of droptune without tokens and of the compiled peer (median)",
    )
    add("--keep", action="store_true", help="keep the temporary folder")
    add("--child", nargs=2, metavar=("JOB", "PATH"), help=argparse.SUPPRESS)
    add("--skip-prepare-rss", action="store_true", help="measure the RSS of validate only")
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return
    tmp = Path(tempfile.mkdtemp(prefix="droptune-bench-"))
    try:
        run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    t0 = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    if args.data:
        data, gen = args.data, {"generated": False, "path": str(args.data)}
    else:
        data = tmp / "chat.jsonl"
        say(f"writing {args.size_mb:g} MB of chat JSONL (seed {args.seed})")
        started = time.perf_counter()
        lines = make_data(data, args.size_mb, args.seed, args.non_ascii)
        gen = {"generated": True, "seed": args.seed, "non_ascii": args.non_ascii, "lines": lines}
        gen["seconds"] = round(time.perf_counter() - started, 1)
    size = data.stat().st_size
    gen["mb"] = round(size / MB, 1)

    def prefix(mb: float, name: str) -> Path:
        if mb * MB >= size:
            return data
        path = tmp / name
        prefix_file(data, path, mb)
        return path

    say(f"peer: json.loads + jsonschema.validate, {args.naive_mb:g} MB")
    naive = peer_jsonschema(prefix(args.naive_mb, "naive.jsonl"), compiled=False)
    say(
        f"peer: json.loads + compiled Draft202012Validator, {args.baseline_mb:g} MB x {args.repeat}"
    )
    compiled_file = prefix(args.baseline_mb, "compiled.jsonl")
    compiled = median_run(
        [peer_jsonschema(compiled_file, compiled=True) for _ in range(args.repeat)]
    )
    say(f"droptune without tokens, {size / MB:.0f} MB x {args.repeat}")
    fast = bench_droptune(data, repeat=args.repeat)

    say("loading the tokenizer")
    from droptune.config import RunConfig
    from droptune.tokens import counter_for

    config, started = RunConfig(), time.perf_counter()
    counter = counter_for(config.backend, config.base_model)
    load_s = round(time.perf_counter() - started, 2)
    say(f"droptune with exact token counts, {args.tokens_mb:g} MB")
    tokens = bench_droptune(prefix(args.tokens_mb, "tokens.jsonl"), counter)
    tokens["tokenizer_load_s"] = load_s
    say(f"droptune with the Rust encoder in one process (ablation), {args.tokens_mb:g} MB")
    encoder = bench_encoder_alone(prefix(args.tokens_mb, "tokens.jsonl"), counter)
    say(f"droptune with every conversation rendered by Jinja (ablation), {args.tokens_mb:g} MB")
    jinja = bench_jinja_render(prefix(args.tokens_mb, "tokens.jsonl"), counter)
    say(f"droptune with every word split by regex (ablation), {args.tokens_mb:g} MB")
    regex_words = bench_regex_words(prefix(args.tokens_mb, "tokens.jsonl"), counter)
    say(f"peer: compiled jsonschema + apply_chat_template per line, {args.token_peer_mb:g} MB")
    token_peer_file = prefix(args.token_peer_mb, "token_peer.jsonl")
    token_peer = peer_jsonschema(token_peer_file, compiled=True, tokenizer=counter.tokenizer)
    same_file = bench_droptune(token_peer_file, counter)  # the counts must agree exactly
    tokens["same_counts_as_per_line"] = same_file["tokens_total"] == token_peer["tokens_total"]

    say(f"content hashes alone: XXH3 and blake2b, {args.tokens_mb:g} MB")
    hashes = bench_hashes(prefix(args.tokens_mb, "tokens.jsonl"))
    say("peak RSS in fresh processes: validate without tokens")
    small = prefix(args.rss_mb, "rss.jsonl")
    rss = {
        "import_only": peak_rss("import", None),
        "small": peak_rss("validate", small),
        "full": peak_rss("validate", data),
    }
    if not args.skip_prepare_rss:
        say("peak RSS in fresh processes: prepare (tokens, split, data files)")
        rss["prepare_small"] = peak_rss("prepare", small)
        rss["prepare_full"] = peak_rss("prepare", data)
    say("done")
    ablations = {"encoder_alone": encoder, "jinja_render": jinja, "regex_words": regex_words}
    report(gen, naive, compiled, fast, tokens, token_peer, rss, ablations, hashes)


def report(
    gen: dict,
    naive: dict,
    compiled: dict,
    fast: dict,
    tokens: dict,
    token_peer: dict,
    rss: dict,
    ablations: dict[str, dict],
    hashes: dict,
) -> None:
    def ratio(a: dict, b: dict) -> float:
        return round(a["mb_s"] / b["mb_s"], 1)

    ratios = {
        "no_tokens_vs_naive": ratio(fast, naive),
        "no_tokens_vs_compiled": ratio(fast, compiled),
        "compiled_vs_naive": ratio(compiled, naive),
        "tokens_vs_per_line_tokens": ratio(tokens, token_peer),
        "tokens_vs_compiled": ratio(tokens, compiled),
        **{f"tokens_vs_{name}": ratio(tokens, run) for name, run in ablations.items()},
        "rss_full_vs_small": round(rss["full"]["rss_mb"] / rss["small"]["rss_mb"], 2),
    }
    more = (rss["full"]["valid"] or 0) - (rss["small"]["valid"] or 0)
    grown = rss["full"]["rss_mb"] - rss["small"]["rss_mb"]
    rss["bytes_per_extra_example"] = round(grown * MB / more) if more > 0 else None
    pair = ("prepare_small", "prepare_full")
    if all(k in rss for k in pair):
        ratios["prepare_rss_full_vs_small"] = round(
            rss["prepare_full"]["rss_mb"] / rss["prepare_small"]["rss_mb"], 2
        )
    peaks = [rss[k]["rss_mb"] for k in ("small", "full", *pair) if k in rss]
    goals = {
        "no_tokens_100_mb_s": fast["mb_s"] >= 100,
        "no_tokens_10x_compiled": ratios["no_tokens_vs_compiled"] >= 10,
        "tokens_18_mb_s": tokens["mb_s"] >= 18,
        "rss_under_300_mb": max(peaks) < 300,
        "rss_flat": max(v for k, v in ratios.items() if k.endswith("rss_full_vs_small")) <= 1.1,
    }
    rows = [
        ("peer: json.loads + jsonschema.validate", naive),
        ("peer: json.loads + compiled validator", compiled),
        ("droptune validate --no-tokens", fast),
        ("peer: compiled + apply_chat_template/line", token_peer),
        ("droptune, Rust encoder alone (ablation)", ablations["encoder_alone"]),
        ("droptune, Jinja render only (ablation)", ablations["jinja_render"]),
        ("droptune, words split by regex (ablation)", ablations["regex_words"]),
        ("droptune validate (exact tokens)", tokens),
    ]
    print(f"\n{'run':44} {'MB':>7} {'s':>7} {'MB/s':>8} {'vs compiled':>12}")
    for name, r in rows:
        x = ratio(r, compiled)
        print(f"{name:44} {r['mb']:7.1f} {r['seconds']:7.2f} {r['mb_s']:8.2f} {x:>11}x")
    print(
        f"no tokens: {ratios['no_tokens_vs_naive']}x the naive loop, "
        f"{ratios['no_tokens_vs_compiled']}x the compiled one; exact tokens: "
        f"{ratios['tokens_vs_per_line_tokens']}x the per-line tokenizing loop and "
        f"{ratios['tokens_vs_encoder_alone']}x the Rust encoder alone, "
        f"{ratios['tokens_vs_jinja_render']}x rendering every conversation with Jinja, "
        f"{ratios['tokens_vs_regex_words']}x splitting every word with regex "
        f"(tokenizer load {tokens['tokenizer_load_s']:.1f} s, excluded)"
    )
    print(
        f"peak RSS without tokens: {rss['small']['rss_mb']:.0f} MB on {rss['small']['mb']:.0f} MB, "
        f"{rss['full']['rss_mb']:.0f} MB on {rss['full']['mb']:.0f} MB "
        f"(x{ratios['rss_full_vs_small']}, {rss['bytes_per_extra_example']} B per extra "
        f"example; importing droptune alone: {rss['import_only']['rss_mb']:.0f} MB)"
    )
    print(
        f"content hash: XXH3 {hashes['xxh3_vs_blake2b']}x blake2b on the same "
        f"{hashes['records']:,} records; {hashes['xxh3_share_of_scan']:.0%} of a no-token scan "
        f"(blake2b would be {hashes['blake2b_share_of_scan']:.0%})"
    )
    if "prepare_rss_full_vs_small" in ratios:
        print(
            f"peak RSS of prepare as the function runs it (exact tokens, split, data files; no "
            f"torch; the token workers apart): "
            f"{rss['prepare_small']['rss_mb']:.0f} MB on {rss['prepare_small']['mb']:.0f} MB, "
            f"{rss['prepare_full']['rss_mb']:.0f} MB on {rss['prepare_full']['mb']:.0f} MB "
            f"(x{ratios['prepare_rss_full_vs_small']})"
        )
    print(f"exact token counts equal to the per-line loop's: {tokens['same_counts_as_per_line']}")
    print("goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items()))
    machine = {"python": sys.version.split()[0], "cpus": len(os.sched_getaffinity(0))}
    print(
        json.dumps(
            {
                "data": gen,
                "peer_naive": naive,
                "peer_compiled": compiled,
                "droptune_no_tokens": fast,
                "peer_per_line_tokens": token_peer,
                "droptune_tokens": tokens,
                **{f"droptune_{name}": run for name, run in ablations.items()},
                "content_hashes": hashes,
                "rss": rss,
                "ratios": ratios,
                "goals": goals,
                "machine": machine,
            }
        )
    )


if __name__ == "__main__":
    main()
