#!/usr/bin/env bash
# `make bench`: EfficientNet-Lite0 throughput of Petri, PyTorch and ONNX Runtime on this machine, same
# weights, batch 32, 224², 2 threads, each measurement in its own process (for peak memory):
#   forward   inference on random inputs
#   train     forward + backward + AdamW step (Petri and PyTorch), with batch norm using batch statistics
#             (PyTorch's train mode) and frozen (running statistics; Petri then folds BN into the convolutions
#             and runs the step in micro-batches of 4 with accumulated gradients: identical gradients)
#   scratch   cnn-mini (the from-scratch candidate of `auto`) training steps, batch 16, 64² (Petri, PyTorch)
#   mlp       one fit of `auto`'s MLP head, 162 rows × 4432 features, 300 steps (rows × steps per second)
#   features  end to end: decode + resize + forward of 512 PBC JPEGs (petri features --no-cache path)
# The end-to-end figures need a folder of JPEGs: BENCH_IMAGES, else pbc-8class-500 in $PETRI_DATASETS
# (skipped without it).
# Installs its reference tooling: Debian python3-torch/python3-pil, PyPI onnxruntime/pillow.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=2
WEIGHTS="${PETRI_WEIGHTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/petri/weights}/efficientnet-lite0-57934424.pth"
IMAGES="${BENCH_IMAGES:-${PETRI_DATASETS:-../shared/datasets}/pbc-8class-500}"
ITER="${BENCH_ITERATIONS:-10}"
TORCH_PY=/usr/bin/python3

if ! $TORCH_PY -c "import torch, PIL" 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-pil python3-numpy >/dev/null
  else
    echo "bench: run: sudo apt-get install -y python3-torch python3-pil python3-numpy"; exit 1
  fi
fi
python3 -c "import onnxruntime, PIL, numpy" 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check onnxruntime pillow numpy

swift build -c release --product petri-bench >/dev/null
BENCH=.build/release/petri-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$TORCH_PY scripts/bench/torch_bench.py export "$WEIGHTS" --onnx "$work/lite0.onnx" 2>/dev/null
# Forward FLOPs per image from Petri's own geometry, so all three report GFLOP/s the same way.
export LITE0_FLOPS=$($BENCH flops)

results="$work/results.jsonl"
run() { "$@" | tee -a "$results"; }
run $BENCH forward --iterations "$ITER"
run $TORCH_PY scripts/bench/torch_bench.py forward "$WEIGHTS" --iterations "$ITER"
run python3 scripts/bench/ort_bench.py forward "$work/lite0.onnx" --iterations "$ITER"
TRAIN_ITER=$((ITER / 2 > 2 ? ITER / 2 : 2))
run $BENCH train --bn batch --iterations "$TRAIN_ITER"
run $TORCH_PY scripts/bench/torch_bench.py train "$WEIGHTS" --iterations "$TRAIN_ITER"
run $BENCH train --bn frozen --iterations "$TRAIN_ITER"
run $TORCH_PY scripts/bench/torch_bench.py train-frozen "$WEIGHTS" --iterations "$TRAIN_ITER"
# Training from scratch (cnn-mini, 64 px, batch 16): what `auto`'s from-scratch candidate costs per step.
run $BENCH scratch --batch 16 --iterations $((ITER * 10))
# Three such trainings side by side on compute lanes (one core each), as auto's inner-fold fits run.
run $BENCH scratch --batch 16 --iterations $((ITER * 10)) --lanes 3
run $TORCH_PY scripts/bench/torch_cnn_mini.py 16 $((ITER * 10))
# The MLP head `auto` fits on frozen features (162 rows × 4432 features, 300 full-batch AdamW steps).
run $BENCH mlp --iterations 3
run $TORCH_PY scripts/bench/torch_mlp_head.py 162 4432 3
if [ -d "$IMAGES" ]; then
  run $BENCH features --images "$IMAGES" --count 512
  run $TORCH_PY scripts/bench/torch_bench.py features "$WEIGHTS" --images "$IMAGES" --count 512
  run python3 scripts/bench/ort_bench.py features "$work/lite0.onnx" --images "$IMAGES" --count 512
else
  echo "bench: $IMAGES not found: end-to-end figures skipped"
fi

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
get = {(r["framework"], r["mode"]): r for r in rows}
print()
print(f"{'mode':<17}{'framework':<13}{'images/s':>10}{'GFLOP/s':>9}{'peak MB':>9}{'Petri ×':>9}")
for mode in ["forward", "train-bn-batch", "train-bn-frozen", "scratch", "scratch-3lanes", "mlp", "features"]:
    p = get.get(("petri", mode))
    for fw in ["petri", "pytorch", "onnxruntime"]:
        r = get.get((fw, mode))
        if not r:
            continue
        ratio = "" if fw == "petri" or not p else f"{p['images_per_s'] / r['images_per_s']:.2f}"
        print(f"{mode:<17}{fw:<13}{r['images_per_s']:>10.1f}{r['gflops']:>9.1f}{r['peak_mb']:>9}{ratio:>9}")
PY
