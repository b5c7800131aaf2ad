#!/usr/bin/env bash
# The trainer's GPU benchmarks in one device call (bench/gpu_train_bench.py --peer --gen), and
# its GPU tests (pytest -m gpu) in another.
#
# The GPU machine reaches no package index and receives only this checkout, so `prepare`
# gathers what it lacks into .gpu/ (git-ignored): Python 3.12 x86-64 wheels of what the peer
# script imports (trl, datasets, liger-kernel and their pure-Python needs) and of droptune's
# own imports missing from its image (orjson), plus a copy of ../shared/bench/peer_sft_bench.py.
# `run` installs the wheels there, checks they import, and runs the bench; with no arguments,
# `--peer --gen` on the Qwen2-0.5B shape (the peer script stops starting runs after 400 s).
# Each result prints as its run ends, so a run cut off by the call's limit keeps the others.
# `test` installs the wheels the tests import beyond the image's (pytest, droptune's core
# needs, matplotlib for the loss plot, rouge-score for the evaluation) and runs the tests
# marked gpu. They train a tiny model built in the test (tests/support/tiny_model.py), since
# the real SmolLM2 checkpoint is larger than a device call can carry; the root conftest, which
# starts the cloud emulators, is left out (--confcutdir).
#
#   bench/gpu_kit.sh prepare          # here, where pip reaches its registry
#   bench/gpu_kit.sh run [ARGS...]    # there, with .gpu carried along:
#       device call: carry [".gpu"], command "bench/gpu_kit.sh run 2>&1 | tee $OUT/log"
#   bench/gpu_kit.sh test             # there too: carry [".gpu"], "... test 2>&1 | tee $OUT/log"
#   (tee first: a filter before it, grep included, holds the lines in its buffer, and a call
#   cut off by its time limit then brings back an empty log)
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu
# Pinned together: datasets 5.2 needs dill < 0.4.2, multiprocess 0.70.19 needs dill >= 0.4.1.
WHEELS=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 liger-kernel==0.8.5
  orjson==3.13.0)
TEST_WHEELS=(pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0 jsonschema-rs==0.61.2
  xxhash==4.1.0 absl-py==2.5.1 nltk==3.10.4 six==1.17.0 joblib==1.6.0 click==8.5.1
  matplotlib==3.11.2 pillow==13.0.0 cycler==0.12.1 python-dateutil==2.9.0.post0
  fonttools==4.68.0 kiwisolver==1.5.1 pyparsing==3.3.3 contourpy==1.3.3)
SDISTS=(rouge-score==0.1.2)  # published as source only: built into a wheel here

install_wheels() {  # the wheels in $KIT/$1 into /tmp/site, ahead of the image's own packages
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$KIT/$1"/*.whl
  export PYTHONPATH="/tmp/site" PYTHONUNBUFFERED=1
}

case "${1:-}" in
prepare)
  mkdir -p "$KIT/wheels"
  platforms=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64")
  done
  download=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12
    --implementation cp "${platforms[@]}")
  "${download[@]}" -d "$KIT/wheels" "${WHEELS[@]}"
  mkdir -p "$KIT/test-wheels"
  "${download[@]}" -d "$KIT/test-wheels" "${TEST_WHEELS[@]}" orjson==3.13.0
  python3 -m pip wheel -q --no-deps -w "$KIT/test-wheels" "${SDISTS[@]}"
  install -m 644 ../shared/bench/peer_sft_bench.py "$KIT/"
  du -sh "$KIT"
  ;;
run)
  shift
  install_wheels wheels
  python3 -c "import trl, datasets, liger_kernel, orjson, peft"  # fail before any GPU time
  args=("$@")
  [ ${#args[@]} -gt 0 ] || args=(--peer --gen)
  python3 bench/gpu_train_bench.py --peer-script "$KIT/peer_sft_bench.py" "${args[@]}"
  ;;
test)
  install_wheels test-wheels
  export PYTHONPATH="$PYTHONPATH:$PWD:$PWD/trainer"
  python3 -m pytest -p no:cacheprovider --confcutdir=tests/trainer -m gpu -v \
    tests/trainer/test_attention.py tests/trainer/test_train.py
  ;;
*)
  echo "usage: $0 prepare | run [gpu_train_bench.py arguments] | test" >&2
  exit 2
  ;;
esac
