"""Quality on defaults: real datasets through `droptune local run`, as a user would drop them.

No setting is given: each case is a file passed to `droptune local run FILE --json`, so the
intake, the hyperparameters sized to the data (droptune.sizing), training on this machine's
CPU, the baseline-vs-tuned evaluation and the gate are all droptune's defaults. The cases,
from ../shared/datasets (nothing is copied into the project):

- agnews: the first 2,400 rows of classification/agnews/train_pool.tsv (text<TAB>label, no
  header; World, Sports, Business, Sci/Tech). Goal: tuned accuracy >= 0.85 on the run's test
  split, the whole run within 15 minutes on 2 cores.
- sst2: the first 2,000 rows of classification/sst2/train.tsv (sentence<TAB>label 0/1).
  Goal: tuned accuracy >= the test split's majority-class rate + 0.20.
- lamini: lamini_docs/lamini_docs.jsonl (question/answer, 1,400 rows). Goal: ROUGE-L better
  than the base model's, the delta's 95% interval above 0.
- random: 400 AG News rows (2,401-2,800) with their labels shuffled among the four topics.
  Goal: GATED, not deployed (nothing real to learn).

    python bench/quality_bench.py                  # every case (an hour or more on 2 cores)
    python bench/quality_bench.py --cases agnews   # the 15-minute goal alone

It prints a table (tuned vs base on the case's metric, run minutes, the trainer's peak
memory), then one JSON line with every number. Peak memory is the trainer process's
resident set, sampled every half second over the whole run (evaluation included), and the
training part as the trainer reports it (training/metrics.json).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
DROPTUNE = ROOT / ".venv" / "bin" / "droptune"
AGNEWS = DATASETS / "classification" / "agnews" / "train_pool.tsv"
SST2 = DATASETS / "classification" / "sst2" / "train.tsv"
LAMINI = DATASETS / "lamini_docs" / "lamini_docs.jsonl"


def agnews(folder: Path) -> Path:
    path = folder / "agnews.tsv"
    path.write_text("".join(AGNEWS.read_text().splitlines(keepends=True)[:2400]))
    return path


def sst2(folder: Path) -> Path:
    path = folder / "sst2.tsv"
    path.write_text("".join(SST2.read_text().splitlines(keepends=True)[:2001]))  # + header
    return path


def lamini(folder: Path) -> Path:
    path = folder / "lamini_docs.jsonl"
    path.write_bytes(LAMINI.read_bytes())
    return path


def random_labels(folder: Path) -> Path:
    rows = AGNEWS.read_text().splitlines()[2400:2800]
    texts = [row.rsplit("\t", 1)[0] for row in rows]
    labels = [row.rsplit("\t", 1)[1] for row in rows]
    random.Random(29).shuffle(labels)
    path = folder / "random_labels.tsv"
    path.write_text("".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    return path


CASES: dict[str, Callable[[Path], Path]] = {
    "agnews": agnews,
    "sst2": sst2,
    "lamini": lamini,
    "random": random_labels,
}


class TrainerMemory:
    """The largest resident set of any `droptune_trainer train` process while it samples."""

    def __init__(self) -> None:
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        import psutil

        while not self.stop.wait(0.5):
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = " ".join(proc.info.get("cmdline") or [])
                if (
                    "droptune_trainer" in cmdline
                    and " train" in cmdline
                    and proc.info["memory_info"]
                ):
                    self.peak = max(self.peak, proc.info["memory_info"].rss)

    def __enter__(self) -> TrainerMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run_case(name: str, folder: Path, timeout_minutes: float) -> dict:
    data = CASES[name](folder)
    command = [
        str(DROPTUNE),
        "local",
        "run",
        str(data),
        "--json",
        "--timeout",
        str(timeout_minutes),
    ]
    started = time.perf_counter()
    with TrainerMemory() as memory:
        done = subprocess.run(command, capture_output=True, text=True)
    minutes = (time.perf_counter() - started) / 60
    try:
        ended = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"case": name, "error": (done.stderr or done.stdout)[-2000:], "minutes": minutes}
    run_dir = Path(ended["run_dir"])
    return {
        "case": name,
        "run_id": ended["run_id"],
        "state": ended["state"],
        "minutes": round(minutes, 1),
        "trainer_peak_gb": round(memory.peak / 1e9, 2),
        **outcome(run_dir),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def outcome(run_dir: Path) -> dict:
    evaluation = read_json(run_dir / "evaluation" / "metrics.json")
    training = read_json(run_dir / "training" / "metrics.json")
    metric = "accuracy" if "accuracy" in evaluation.get("tuned", {}) else "rouge_l"
    test = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    labels = Counter(r.get("label") for r in test if r.get("label") is not None)
    return {
        "metric": metric,
        "n": evaluation.get("n"),
        "base": evaluation.get("baseline", {}).get(metric),
        "tuned": evaluation.get("tuned", {}).get(metric),
        "delta": evaluation.get("delta", {}).get(metric),
        "ci95": evaluation.get("ci95", {}).get(metric),
        "gate": evaluation.get("gate"),
        "majority": max(labels.values()) / sum(labels.values()) if labels else None,
        "steps": training.get("steps"),
        "train_minutes": round(training.get("wall_seconds", 0) / 60, 1),
        "tokens_per_second": round(training.get("tokens_per_second", 0)),
        "train_peak_gb": round(training.get("peak_memory_mb", 0) / 1e3, 2),
        "chosen": {k: v["value"] for k, v in (training.get("chosen") or {}).items()},
    }


def goal(result: dict) -> tuple[str, bool]:
    name, tuned = result["case"], result.get("tuned")
    if name == "agnews":
        met = tuned is not None and tuned >= 0.85 and result["minutes"] <= 15
        return "accuracy >= 0.85 within 15 min", met
    if name == "sst2":
        target = (result.get("majority") or 0) + 0.20
        return f"accuracy >= {target:.3f} (majority + 0.20)", tuned is not None and tuned >= target
    if name == "lamini":
        low = (result.get("ci95") or [0])[0]
        return "ROUGE-L interval above 0", low is not None and low > 0
    return "GATED, not deployed", result.get("state") == "GATED"


def report(results: list[dict]) -> None:
    header = (
        f"{'case':8} {'state':10} {'metric':9} {'base':>6} {'tuned':>6} {'delta (95% interval)':>26} "
        f"{'steps':>5} {'run min':>7} {'train GB':>8} {'peak GB':>7}  goal"
    )
    print(header)
    for r in results:
        if "error" in r:
            print(f"{r['case']:8} error after {r['minutes']:.1f} min: {r['error'][-300:]}")
            continue
        interval = r.get("ci95") or [float("nan")] * 2
        delta = (
            ""
            if r.get("delta") is None
            else f"{r['delta']:+.3f} ({interval[0]:+.3f}, {interval[1]:+.3f})"
        )
        text, met = goal(r)
        print(
            f"{r['case']:8} {r['state']:10} {r['metric']:9} {fmt(r.get('base')):>6} "
            f"{fmt(r.get('tuned')):>6} {delta:>26} {r.get('steps') or '-':>5} "
            f"{r['minutes']:7.1f} {r.get('train_peak_gb') or 0:8.2f} {r['trainer_peak_gb']:7.2f}  "
            f"{'met' if met else 'MISSED'}: {text}"
        )
    print(json.dumps(results, default=str))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES)
    )
    parser.add_argument("--timeout", type=float, default=90, help="minutes per case")
    args = parser.parse_args()
    names = [n for n in args.cases.split(",") if n]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    if not DATASETS.is_dir():
        sys.exit(
            f"{DATASETS} is missing: this benchmark needs ../shared/datasets beside the checkout"
        )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = Path(tmp) / name
            folder.mkdir()
            results.append(run_case(name, folder, args.timeout))
            print(json.dumps(results[-1], default=str), file=sys.stderr, flush=True)
    report(results)


if __name__ == "__main__":
    main()
