"""The upload function end to end on a large upload: what streaming through Cloud Storage costs.

A synthetic chat JSONL file (the generator of validate_bench.py) is validated, split and
written to a run folder twice, each in a fresh process:

  - local:    `pipeline.prepare(path, RunConfig(), run_dir)` on the local file, run folder on
              local disk: the core's own speed, the peer of this benchmark;
  - function: `handle_upload(...)` exactly as `functions/main.py` calls it, with the object on
              fake-gcs-server and the run folder written back to it through google-cloud-storage,
              plus the claim, the status writes and the Pub/Sub message (Google's emulator).

Both count tokens exactly with the default base model's tokenizer (`--tokens estimate` to
leave the tokenizer out); its load is timed apart and excluded. Both run as the function is
deployed: without torch (`droptune[functions]` does not install it; transformers imports
torch whenever it is importable, which alone costs ~200 MB of RSS). Printed: wall time, MB/s
and peak RSS (VmHWM) of each, and the ratio function/local. Goal from the issue: peak RSS of
the function < 300 MB on a 100 MB upload. MB = 10^6 bytes.

Runs alternate (local, function, local, ...) `--repeat` times and the medians are reported:
on 2 cores the tokenizer's threads make single runs vary by ±20%.

    python bench/function_bench.py                 # 100 MB, 3 runs each, ~3 min
    python bench/function_bench.py --size-mb 20 --tokens estimate
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import MB, make_data, peak_rss_mb  # noqa: E402


def child(mode: str, target: str, tokens: str) -> None:
    """Run one measurement in this fresh process and print its numbers as JSON."""
    sys.modules["torch"] = None  # as deployed: transformers then finds no torch to import
    from droptune import pipeline
    from droptune.config import RunConfig
    from droptune.tokens import EstimateCounter, counter_for

    config = RunConfig()
    started = time.perf_counter()
    counter = (
        EstimateCounter()
        if tokens == "estimate"
        else counter_for(config.backend, config.base_model)
    )
    load = time.perf_counter() - started
    started = time.perf_counter()
    if mode == "local":
        with tempfile.TemporaryDirectory() as run_dir:
            report = pipeline.prepare(target, config, run_dir, counter=counter)
        result = {"valid": report.counts["valid"], "state": "valid" if report.valid else "invalid"}
    else:
        from droptune.intake import IntakeSettings, UploadedObject, handle_upload

        obj = UploadedObject.from_resource(json.loads(target))
        outcome = handle_upload(obj, IntakeSettings.from_env(), counter=counter)
        result = {"state": str(outcome.state), "detail": outcome.detail}
    seconds = time.perf_counter() - started
    # token-counting workers (droptune.counting) are forks of this process, waited for by now
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({
        "seconds": seconds, "tokenizer_s": load, "rss_mb": peak_rss_mb(),
        "worker_rss_mb": workers_mb, **result,
    }))  # fmt: skip


def measure(mode: str, target: str, tokens: str, env: dict[str, str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, target, tokens]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=100)
    parser.add_argument("--tokens", choices=["exact", "estimate"], default="exact")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "TARGET", "TOKENS"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="droptune-fbench-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import pubsub_v1, storage

    from droptune.local.storage_emulator import StorageEmulator
    from tests.support.emulators import PubSubEmulator

    if args.tokens == "exact":  # converts the GGUF tokenizer once (that needs torch), cached
        from droptune.config import RunConfig
        from droptune.tokens import counter_for

        counter_for(RunConfig().backend, RunConfig().base_model)
    data = tmp / "chat.jsonl"
    examples = make_data(data, args.size_mb, args.seed)
    size = data.stat().st_size
    print(f"data: {size / MB:,.1f} MB, {examples:,} chat examples", file=sys.stderr)

    pubsub = PubSubEmulator(tmp)
    pubsub.start()
    try:
        with StorageEmulator() as gcs:
            env = {
                **os.environ,
                "STORAGE_EMULATOR_HOST": gcs.url,
                "PUBSUB_EMULATOR_HOST": pubsub.host,
            }
            os.environ.update(env)
            client = storage.Client(project="bench", credentials=AnonymousCredentials())
            uploads, runs = client.create_bucket("uploads"), client.create_bucket("runs")
            topic = "projects/bench/topics/runs"
            pubsub_v1.PublisherClient().create_topic(name=topic)
            env.update(
                DROPTUNE_UPLOADS_BUCKET=uploads.name,
                DROPTUNE_RUNS_BUCKET=runs.name,
                DROPTUNE_TOPIC=topic,
            )
            blob = uploads.blob("bench/chat.jsonl")
            started = time.perf_counter()
            blob.upload_from_filename(str(data), timeout=600)
            upload_s = time.perf_counter() - started

            runs = {"local": [], "function": []}
            for i in range(args.repeat):
                # Each function run gets an upload of its own: a second delivery of the same
                # object would find its run done and return at once.
                copy = uploads.copy_blob(blob, uploads, f"bench/chat-{i}.jsonl", timeout=600)
                resource = json.dumps(dict(copy._properties))
                runs["local"].append(measure("local", str(data), args.tokens, env))
                result = measure("function", resource, args.tokens, env)
                if result["state"] != "QUEUED":
                    raise SystemExit(f"the function run ended {result['state']}: {result}")
                runs["function"].append(result)
            local, function = median(runs["local"]), median(runs["function"])
    finally:
        pubsub.stop()
    report(size, args, upload_s, local, function)


def median(results: list[dict]) -> dict:
    """The run with the median time, its peak RSS replaced by the highest seen."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    return {
        **ordered[len(ordered) // 2],
        "rss_mb": max(r["rss_mb"] for r in results),
        "worker_rss_mb": max(r["worker_rss_mb"] for r in results),
    }


def report(
    size: int, args: argparse.Namespace, upload_s: float, local: dict, function: dict
) -> None:
    rows = [("local file -> local run folder", local), ("function: emulator -> emulator", function)]
    print(f"\nmedian of {args.repeat} run(s) each")
    print(f"{'':34} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}  outcome")
    for name, r in rows:
        mbps = size / MB / r["seconds"]
        outcome = r.get("state")
        print(f"{name:34} {r['seconds']:8.2f} {mbps:7.1f} {r['rss_mb']:12.0f}  {outcome}")
    ratio = local["seconds"] / function["seconds"]
    print(f"\nfunction throughput / local throughput: {ratio:.2f}x")
    print(f"function peak RSS {function['rss_mb']:.0f} MB (goal < 300 MB): "
          f"{'met' if function['rss_mb'] < 300 else 'NOT met'}")  # fmt: skip
    print(f"largest token-counting worker's peak RSS {function['worker_rss_mb']:.0f} MB (a fork: "
          "pages it shares with the function count in both)")  # fmt: skip
    print(f"(upload of the file to the emulator, not counted: {upload_s:.1f} s; tokenizer load "
          f"excluded: {function['tokenizer_s']:.1f} s; tokens: {args.tokens})")  # fmt: skip
    print(json.dumps({
        "size_mb": round(size / MB, 1), "tokens": args.tokens,
        "local_s": round(local["seconds"], 2), "function_s": round(function["seconds"], 2),
        "local_mbps": round(size / MB / local["seconds"], 1),
        "function_mbps": round(size / MB / function["seconds"], 1),
        "ratio": round(ratio, 3),
        "local_rss_mb": round(local["rss_mb"]), "function_rss_mb": round(function["rss_mb"]),
        "function_worker_rss_mb": round(function["worker_rss_mb"]),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
