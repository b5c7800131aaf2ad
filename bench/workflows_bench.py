"""Workflows engine overhead per step: droptune's local engine against `workflows-emulator`.

One workflow, a counting loop of `switch` and `assign` steps (two steps an iteration, with
expressions in each), runs to completion in both engines in this run; the time per executed
step is the engine's overhead, since the steps do almost nothing. Goal from the issue:
≤ 50 µs a step. The peer is the one Workflows engine on PyPI (`workflows-emulator`),
installed on first use into its own virtual environment under ~/.cache/droptune/bench (its
pinned dependencies stay out of droptune's). Both take the best of `--repeat` runs.

    python bench/workflows_bench.py                  # 20,000 iterations (40,003 steps)
    python bench/workflows_bench.py --iterations 5000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PEER_VENV = Path.home() / ".cache" / "droptune" / "bench" / "workflows-emulator"

WORKFLOW = """\
main:
  params: [args]
  steps:
    - init:
        assign:
          - i: 0
          - acc: 0
    - check:
        switch:
          - condition: ${i < args.n}
            next: body
        next: done
    - body:
        assign:
          - i: ${i + 1}
          - acc: ${acc + i}
        next: check
    - done:
        return: ${acc}
"""

PEER_RUN = """
import copy, json, logging, sys, time
logging.disable(logging.CRITICAL)
from workflows_emulator.main import execute_workflow, load_workflow
loaded = load_workflow(sys.argv[1])
best = None
for _ in range(int(sys.argv[3])):
    config = copy.deepcopy(loaded)  # the emulator consumes its config as it runs
    started = time.perf_counter()
    result = execute_workflow(config, {"args": {"n": int(sys.argv[2])}})
    elapsed = time.perf_counter() - started
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"seconds": best, "result": result}))
"""


def peer_python() -> Path | None:
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"installing workflows-emulator into {PEER_VENV} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "workflows-emulator"], capture_output=True
    )
    if installed.returncode != 0:
        print(installed.stderr.decode()[-2000:], file=sys.stderr)
        return None
    return python


def run_droptune(path: Path, n: int, repeat: int) -> dict:
    from droptune.local.workflows.engine import Engine, load_workflow

    workflow = load_workflow(str(path))
    best, steps, result = None, 0, None
    for _ in range(repeat):
        engine = Engine(workflow)
        started = time.perf_counter()
        execution = engine.run({"n": n})
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
        steps, result = execution.step_count, execution.result
    return {"seconds": best, "steps": steps, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.iterations
    expected = n * (n + 1) // 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loop.workflows.yaml"
        path.write_text(WORKFLOW)
        ours = run_droptune(path, n, args.repeat)
        assert ours["result"] == expected, ours
        python = peer_python()
        peer = None
        if python is not None:
            out = subprocess.run(
                [str(python), "-c", PEER_RUN, str(path), str(n), str(args.repeat)],
                capture_output=True,
                text=True,
                check=True,
            )
            peer = json.loads(out.stdout.strip().splitlines()[-1])
            assert peer["result"] == expected, peer
    steps = ours["steps"]  # the same steps run in both: init, 2 per iteration, the last check, done
    ours_us = ours["seconds"] / steps * 1e6
    print(f"{steps:,} steps ({n:,} iterations of switch + assign), best of {args.repeat}")
    print(f"droptune engine     {ours['seconds']:8.3f} s  {ours_us:8.2f} µs/step  (goal ≤ 50)")
    numbers = {"steps": steps, "droptune_us_per_step": round(ours_us, 2)}
    if peer is not None:
        peer_us = peer["seconds"] / steps * 1e6
        print(f"workflows-emulator  {peer['seconds']:8.3f} s  {peer_us:8.2f} µs/step")
        print(f"droptune is {peer_us / ours_us:.1f}x faster per step")
        numbers |= {"peer_us_per_step": round(peer_us, 2), "ratio": round(peer_us / ours_us, 1)}
    else:
        print("peer not available (pip could not install workflows-emulator): no ratio")
    print(json.dumps(numbers))


if __name__ == "__main__":
    main()
