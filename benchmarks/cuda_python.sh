# Sourced by the GPU scripts (gpu_check.sh, gpu_experiments.sh) from the repository root:
# sets PY to the first of $PYTHON, .venv/bin/python, python3, python whose torch sees a
# CUDA device, or writes $OUT_DIR/ERROR.txt and exits 2.
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
