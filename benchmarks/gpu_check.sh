#!/usr/bin/env bash
# Every GPU figure of the serving issue in one short run (about a minute on one H100).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $OUT or runs/gpu_check
#
# 1. the torch/CUDA versions and nvidia-smi, so the numbers name their machine (env.txt);
# 2. the CUDA-marked serving tests: optimized == plain on the GPU, one packed copy, CUDA
#    graphs == plain across buckets (cuda_tests.txt);
# 3. benchmarks/bench_inference.py --sections cuda (inference_gpu.json / .txt): the
#    paper-preset ranker's p50 per request of 256 candidates, plain fp32 against the
#    optimized path eager in fp32/fp16/bf16, with CUDA graphs (fp32, fp16, fp16 without
#    the DCN width alignment) and through torch.compile(mode="reduce-overhead"); score
#    differences; the graph replay alone; candidates/s at 1024 and 4096 candidates; the
#    TransAct module alone; a profile of the fastest eager variant.
# Needs a Python whose torch has CUDA (set PYTHON=..., else .venv/bin/python, else python3),
# with numpy, pyarrow, scipy, tqdm, cloudpickle, prometheus_client and pytest; nothing of the
# service (FastAPI, RocksDB, Redis, Kafka) is imported.
set -u
OUT_DIR="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

. benchmarks/cuda_python.sh  # sets PY
{
  echo "python: $PY"; date -u
  "$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv 2>&1
  grep -m1 "model name" /proc/cpuinfo; nproc
} | tee "$OUT_DIR/env.txt"

status=0
SECONDS=0
timeout 150 "$PY" -m pytest tests/serving/test_ranker.py -m cuda -p no:cacheprovider -q 2>&1 \
  | tail -30 | tee "$OUT_DIR/cuda_tests.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "tests: ${SECONDS}s"

SECONDS=0
timeout 330 "$PY" benchmarks/bench_inference.py --sections cuda --repeats 25 \
  --json "$OUT_DIR/inference_gpu.json" 2>&1 | tee "$OUT_DIR/inference_gpu.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "bench: ${SECONDS}s; results in $OUT_DIR"
exit $status
