#!/usr/bin/env bash
# The GPU run, as one command on a machine with an NVIDIA GPU and no network: the carried wheels
# (`make gpu-wheels` put them in .whl/) go into /tmp/site, then bench/gpu/voxtral_gpu.py measures
# and writes bench/results/gpu.json and .md (or $OUT, when set, gets a copy).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:$PWD/gen:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export GPU_BENCH_TMP="${GPU_BENCH_TMP:-/tmp}"
python3 -m bench.gpu.voxtral_gpu "$@"
if [ -n "${OUT:-}" ]; then cp bench/results/gpu*.json bench/results/gpu*.md "$OUT"/ 2>/dev/null || true; fi
