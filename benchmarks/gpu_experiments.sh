#!/usr/bin/env bash
# The paper's tables on one GPU, at the settling budget: Table 1 in one run of under 10
# minutes on one H100/H200, the other tables in later runs.
#
#   bash benchmarks/gpu_experiments.sh [--budget NAME] [--out DIR] [--no-tests] [NAME ...]
#
#   NAME     experiments to run (default: table1); "rest" = table2 table3 fig4 fig5 table4
#            table8 table9, in that order (each is its own `transact experiment` call, so a
#            run cut by its time limit keeps the tables it finished)
#   --budget default: settle (experiments/budget.py); falls back to default, saying so,
#            while settle does not exist
#   --out    default: $OUT, else runs/gpu_experiments
#
# Steps: 1. env.txt (torch/CUDA versions, nvidia-smi, CPU), 2. the CUDA-marked tests of
# training, models and evaluation (cuda_tests.txt: fast training and scoring on the GPU ==
# the plain paths, pinned batch copies, an end-to-end CUDA train), 3. the experiments with
# --device cuda (experiments/NAME/results.json and results.md, experiments.txt). The world,
# example sets and user embeddings are built once under OUT/experiments/_work and reused by
# the later runs when OUT is the same directory.
#
# Time estimate (docs/performance.md, "Training and scoring"): a small TransAct training
# step of 512 examples at |S| = 100 is 43 GFLOP (FlopCounterMode, forward and backward,
# the plain step), 84 MFLOP per example; Table 1 at the default budget is 4 variants x 200
# steps x 256 examples, about 17 TFLOP of training (the baselines' are less), and scoring
# 500 users' week (forward only, about a third per example) a few TFLOP more: under a
# minute even at 20% of an H100's ~50 TFLOP/s fp32 (TF32 off). The rest is the host (world
# generation, example sets, PinnerFormer embeddings, Python per step): estimated 3-5
# minutes on its 16 cores. Not yet measured on a GPU.
# Needs a Python whose torch has CUDA (PYTHON=..., else .venv/bin/python, else python3).
set -u
BUDGET=settle
OUT_DIR="${OUT:-runs/gpu_experiments}"
TESTS=1
NAMES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) BUDGET="$2"; shift 2 ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    --no-tests) TESTS=0; shift ;;
    rest) NAMES+=(table2 table3 fig4 fig5 table4 table8 table9); shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    -*) echo "gpu_experiments.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) NAMES+=("$1"); shift ;;
  esac
done
[ ${#NAMES[@]} -gt 0 ] || NAMES=(table1)
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

. benchmarks/cuda_python.sh  # sets PY

if ! "$PY" -c "from transact.experiments.budget import get_budget; get_budget('$BUDGET')" 2>/dev/null; then
  echo "unknown budget '$BUDGET'" | tee "$OUT_DIR/ERROR.txt"; exit 2
fi
echo "budget: $BUDGET; experiments: ${NAMES[*]}" | tee -a "$OUT_DIR/budget.txt"
{
  echo "python: $PY"; date -u
  "$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv 2>&1
  grep -m1 "model name" /proc/cpuinfo; nproc
} | tee "$OUT_DIR/env.txt"

status=0
if [ "$TESTS" = 1 ]; then
  SECONDS=0
  timeout 60 "$PY" -m pytest tests/training tests/models tests/evaluation -m cuda \
    -p no:cacheprovider -q 2>&1 | tail -30 | tee "$OUT_DIR/cuda_tests.txt"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  echo "tests: ${SECONDS}s" | tee -a "$OUT_DIR/cuda_tests.txt"
fi

for name in "${NAMES[@]}"; do
  SECONDS=0
  # 520 s: Table 1 and the tests (60 s) inside the 10 minutes of one device call
  timeout 520 "$PY" -m transact.cli experiment "$name" --budget "$BUDGET" --device cuda \
    --out "$OUT_DIR/experiments" --no-progress 2>&1 | tee -a "$OUT_DIR/experiments.txt"
  rc=${PIPESTATUS[0]}
  echo "$name: exit $rc, ${SECONDS}s" | tee -a "$OUT_DIR/experiments.txt"
  [ "$rc" = 0 ] || status=1
done
echo "results in $OUT_DIR"
exit $status
