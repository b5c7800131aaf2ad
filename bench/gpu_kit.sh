#!/usr/bin/env bash
# The trainer's GPU benchmarks in one device call: bench/gpu_train_bench.py --peer --gen.
#
# The GPU machine reaches no package index and receives only this checkout, so `prepare`
# gathers what it lacks into .gpu/ (git-ignored): Python 3.12 x86-64 wheels of what the peer
# script imports (trl, datasets, liger-kernel and their pure-Python needs) and of droptune's
# own imports missing from its image (orjson), plus a copy of ../shared/bench/peer_sft_bench.py.
# `run` installs the wheels there and runs the bench; with no arguments, `--peer --gen` on the
# Qwen2-0.5B shape (about 8 minutes on an H100: the peer's five runs, then droptune's).
#
#   bench/gpu_kit.sh prepare          # here, where pip reaches its registry
#   bench/gpu_kit.sh run [ARGS...]    # there, with .gpu carried along
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu
WHEELS=(trl==1.16.0 datasets dill multiprocess liger-kernel orjson)

case "${1:-}" in
prepare)
  mkdir -p "$KIT/wheels"
  platforms=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
  done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$KIT/wheels" "${WHEELS[@]}"
  cp ../shared/bench/peer_sft_bench.py "$KIT/"
  du -sh "$KIT"
  ;;
run)
  shift
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$KIT"/wheels/*.whl
  export PYTHONPATH="/tmp/site" PYTHONUNBUFFERED=1
  args=("$@")
  [ ${#args[@]} -gt 0 ] || args=(--peer --gen)
  python3 bench/gpu_train_bench.py --peer-script "$KIT/peer_sft_bench.py" "${args[@]}"
  ;;
*)
  echo "usage: $0 prepare | run [gpu_train_bench.py arguments]" >&2
  exit 2
  ;;
esac
