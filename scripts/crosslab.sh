#!/usr/bin/env bash
# `make crosslab`: the cross-lab yardstick (docs/results.md, "Another lab's images"). Trains on bccd-wbc-crops (all
# images) a frozen-feature MLP (`mlp-multi`) and a from-scratch network (`scratch-mini`), then scores each on
# 50 PBC images per shared class (eosinophil, lymphocyte, monocyte, neutrophil) for three PBC draws, as is and
# adapted without labels: `--adapt auto` (magnification) alone, then with `--adapt-heads` (MLP) or
# `--adapt-norm` (network). Prints one line per model, draw and setting. Needs the public bccd-wbc-crops and
# pbc-8class-500 sets in $PETRI_DATASETS; uses the feature cache (first run ~10 minutes, then ~3).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${PETRI_DATASETS:-../shared/datasets}"
for d in bccd-wbc-crops pbc-8class-500; do
  [ -d "$SHARED/$d" ] || { echo "crosslab: $SHARED/$d not found (set PETRI_DATASETS to the folder holding it)" >&2; exit 1; }
done
PETRI=.build/release/petri
OUT="${CROSSLAB_OUT:-out/crosslab}"
mkdir -p "$OUT"
train() {   # method, model file
  [ -f "$OUT/$2" ] || $PETRI train "$SHARED/bccd-wbc-crops" --method "$1" --seed 0 --out "$OUT/$2" --quiet
}
train mlp-multi bccd-mlp.petri
train scratch-mini bccd-cnn.petri
score() {   # model, draw, extra flags
  $PETRI evaluate "$OUT/$1" "$SHARED/pbc-8class-500" --max-per-class 50 --draw-seed "$2" --adapt auto ${3:-} --quiet 2>/dev/null \
    | awk '/^balanced accuracy/ {print $3}'
}
printf '%-16s %-5s %-8s %-8s\n' model draw "as is*" adapted
for draw in 0 1 2; do
  printf '%-16s %-5s %-8s %-8s\n' "mlp-multi" "$draw" "$(score bccd-mlp.petri $draw)" "$(score bccd-mlp.petri $draw --adapt-heads)"
  printf '%-16s %-5s %-8s %-8s\n' "scratch-mini" "$draw" "$(score bccd-cnn.petri $draw)" "$(score bccd-cnn.petri $draw --adapt-norm)"
done
echo "* as is = with --adapt auto (the magnification found from the images); adapted = + --adapt-heads (MLP) or --adapt-norm (network)"
