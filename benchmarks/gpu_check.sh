#!/usr/bin/env bash
# Every GPU figure of the serving issue in one short run (a few minutes on one H100).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT or runs/gpu_check
#
# 1. the CUDA-marked serving tests (optimized == plain on the GPU, one packed copy);
# 2. benchmarks/bench_inference.py --sections cuda transact: p50 forward per batch of 256
#    of the paper-preset ranker (plain fp32, optimized fp32/fp16/bf16, fp16 + CUDA graphs
#    via torch.compile(mode="reduce-overhead")), candidates/s, score differences; and the
#    TransAct CPU module figures of the same machine for reference;
# 3. nvidia-smi and the torch/CUDA versions, so the numbers name their machine.
# Needs a Python whose torch has CUDA (set PYTHON=..., else .venv/bin/python, else python3).
set -u
OUT_DIR="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$OUT_DIR"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

pick_python() {
  for p in "${PYTHON:-}" .venv/bin/python python3 python; do
    [ -n "$p" ] || continue
    command -v "$p" >/dev/null 2>&1 || [ -x "$p" ] || continue
    if "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}
PY="$(pick_python)" || { echo "no Python with CUDA torch found (set PYTHON=...)" | tee "$OUT_DIR/ERROR.txt"; exit 2; }
echo "python: $PY" | tee "$OUT_DIR/env.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' | tee -a "$OUT_DIR/env.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv >> "$OUT_DIR/env.txt" 2>&1 || true
"$PY" -c 'import numpy, pyarrow' 2>/dev/null || echo "WARNING: numpy/pyarrow missing; transact.data.schema needs them" | tee -a "$OUT_DIR/env.txt"

status=0
if "$PY" -c 'import pytest, fastapi, hypothesis' 2>/dev/null; then
  timeout 240 "$PY" -m pytest tests/serving -q -m cuda -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT_DIR/cuda_tests.txt" || status=1
else
  echo "pytest/fastapi/hypothesis missing: CUDA tests skipped" | tee "$OUT_DIR/cuda_tests.txt"
fi

timeout 420 "$PY" benchmarks/bench_inference.py --sections cuda transact --repeats 20 \
  --json "$OUT_DIR/inference_gpu.json" 2>&1 | tail -20 | tee "$OUT_DIR/inference_gpu.txt" || status=1
echo "results in $OUT_DIR (inference_gpu.json: 'cuda' section = GPU figures)"
exit $status
