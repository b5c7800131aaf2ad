#!/usr/bin/env bash
# The trainer's GPU benchmarks in one device call: bench/gpu_train_bench.py --peer --gen.
#
# The GPU machine reaches no package index and receives only this checkout, so `prepare`
# gathers what it lacks into .gpu/ (git-ignored): Python 3.12 x86-64 wheels of what the peer
# script imports (trl, datasets, liger-kernel and their pure-Python needs) and of droptune's
# own imports missing from its image (orjson), plus a copy of ../shared/bench/peer_sft_bench.py.
# `run` installs the wheels there, checks they import, and runs the bench; with no arguments,
# `--peer --gen` on the Qwen2-0.5B shape (the peer script stops starting runs after 400 s).
# Each result prints as its run ends, so a run cut off by the call's limit keeps the others.
#
#   bench/gpu_kit.sh prepare          # here, where pip reaches its registry
#   bench/gpu_kit.sh run [ARGS...]    # there, with .gpu carried along:
#       device call: carry [".gpu"], command "bench/gpu_kit.sh run 2>&1 | tee $OUT/log"
#   (tee first: a filter before it, grep included, holds the lines in its buffer, and a call
#   cut off by its time limit then brings back an empty log)
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu
# Pinned together: datasets 5.2 needs dill < 0.4.2, multiprocess 0.70.19 needs dill >= 0.4.1.
WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5
  orjson==3.13.0)

case "${1:-}" in
prepare)
  mkdir -p "$KIT/wheels"
  platforms=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$KIT/wheels" "${WHEELS[@]}"
  install -m 644 ../shared/bench/peer_sft_bench.py "$KIT/"
  du -sh "$KIT"
  ;;
run)
  shift
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$KIT"/wheels/*.whl
  export PYTHONPATH="/tmp/site" PYTHONUNBUFFERED=1
  python3 -c "import trl, datasets, liger_kernel, orjson, peft"  # fail before any GPU time
  args=("$@")
  [ ${#args[@]} -gt 0 ] || args=(--peer --gen)
  python3 bench/gpu_train_bench.py --peer-script "$KIT/peer_sft_bench.py" "${args[@]}"
  ;;
*)
  echo "usage: $0 prepare | run [gpu_train_bench.py arguments]" >&2
  exit 2
  ;;
esac
