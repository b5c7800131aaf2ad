"""Reading a JSON-array dataset: droptune's streaming reader against `json.load` of the file.

The synthetic chat data of the other benchmarks (bench/common.py), written as one JSON array,
pretty-printed (`indent=2`, one line per key, as exported by most tools) and compact (one
line). droptune reads an array an element at a time, each with the line it starts on; the
peer, `json.load`, reads the whole file into memory and knows no lines. Measured on each
file: MB/s (median of --repeat runs, MB = 10^6 bytes) and peak RSS in a fresh process, with
droptune's JSONL reading of the same records beside them.

    python bench/array_bench.py               # 100 MB of records; ~1 min on 2 cores
    python bench/array_bench.py --size-mb 20
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MB, make_data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def read_droptune(path: Path) -> int:
    from droptune.issues import IssueLog
    from droptune.reader import RecordReader

    with path.open("rb") as stream:
        reader = RecordReader(stream, path.name, IssueLog())
        return sum(1 for _ in reader)


def read_json_load(path: Path) -> int:
    with path.open("rb") as stream:
        return len(json.load(io.TextIOWrapper(stream, encoding="utf-8")))


READERS = {"droptune": read_droptune, "json.load": read_json_load}


def speed(reader: str, path: Path, repeat: int) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = READERS[reader](path)
        times.append(time.perf_counter() - started)
    return path.stat().st_size / MB / statistics.median(times), count


def peak_rss(reader: str, path: Path) -> float:
    """Peak RSS (MB) of a fresh process that reads `path` once."""
    code = f"import sys; sys.path[:0] = {[str(ROOT / 'bench'), str(ROOT)]!r}; "
    code += "import array_bench as b, pathlib, common; "
    code += f"b.READERS[{reader!r}](pathlib.Path({str(path)!r})); print(common.peak_rss_mb())"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="droptune-bench-") as tmp:
        jsonl = Path(tmp) / "chat.jsonl"
        make_data(jsonl, args.size_mb, seed=0, non_ascii=0.2)
        records = [json.loads(line) for line in jsonl.open()]
        pretty, compact = Path(tmp) / "pretty.json", Path(tmp) / "compact.json"
        pretty.write_text(json.dumps(records, indent=2, ensure_ascii=False))
        compact.write_text(json.dumps(records, ensure_ascii=False))
        del records
        results = {"records": sum(1 for _ in jsonl.open())}
        print(f"{'file':14} {'reader':10} {'MB/s':>7} {'peak RSS MB':>12}")
        for path in (pretty, compact, jsonl):
            for reader in READERS if path != jsonl else ["droptune"]:
                mb_s, count = speed(reader, path, args.repeat)
                assert count == results["records"], (reader, path.name, count)
                rss = peak_rss(reader, path)
                results[f"{path.stem}/{reader}"] = {"mb_s": round(mb_s, 1), "rss_mb": round(rss)}
                print(f"{path.name:14} {reader:10} {mb_s:7.1f} {rss:12.0f}")
    for name in ("pretty", "compact"):
        ours, peer = results[f"{name}/droptune"], results[f"{name}/json.load"]
        print(
            f"{name} array: droptune / json.load {ours['mb_s'] / peer['mb_s']:.2f}x the speed, "
            f"{ours['rss_mb'] / peer['rss_mb']:.2f}x the peak memory"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
