#!/usr/bin/env bash
# `make generalise`: `auto` on every labelled set, with the evidence to replay its selection rules leave-one-
# dataset-out (docs/results.md, "`auto` left out of its own tuning"). For each set in $PETRI_DATASETS with at
# least two class folders: `petri curve` at 5 and 20 images per class, seeds 0-4, at most 100 images per class
# (a seeded draw), methods `auto:diagnostics=probabilities` (every candidate's inner-CV folds and test score, its
# out-of-fold and test probabilities, three logistic-regression probes beside them, the scale probe's test score
# at every crop; the choice itself is the default's) and `lp` (the peers' frozen-feature logistic regression),
# each line with its test probabilities (--predictions). Then scripts/generalise.py replays the selection rules
# and scripts/generalise_blends.py the blend rules: for each set, the settings best on the other sets, scored on
# the set left out.
#
# The shipped CellNet was pretrained on pbc-8class-500 and malaria-nih-50gray (weights/README.md): on those two,
# `auto` pairs ImageNet with a CellNet pretrained without the set (made here once, about 6 minutes each).
# Outputs in $GENERALISE_OUT (default out/generalise); finished results are kept, a rerun resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${PETRI_DATASETS:-../shared/datasets}"
[ -d "$SHARED" ] || { echo "generalise: $SHARED not found (set PETRI_DATASETS to the folder of labelled sets)" >&2; exit 1; }
PETRI=.build/release/petri
OUT="${GENERALISE_OUT:-out/generalise}"
SIZES="${GENERALISE_SIZES:-5,20}"
SEEDS="${GENERALISE_SEEDS:-0,1,2,3,4}"
CAP="${GENERALISE_CAP:-100}"
mkdir -p "$OUT"

# A CellNet without SET: the shipped recipe (`--after stage2`, 8 epochs, 300 per class) on the other cell sets.
cellnet_without() {   # set, then the sets to pretrain on
  local name="cellnet-without-$1"; shift
  if [ ! -f "${PETRI_WEIGHTS_DIR:-$HOME/.cache/petri/weights}/$name.petri-backbone" ]; then
    local sets=()
    for s in "$@"; do sets+=("$SHARED/$s"); done
    echo "generalise: pretraining $name on $*" >&2
    $PETRI pretrain "${sets[@]}" --name "$name" --after stage2 --epochs 8 --per-class 300 --seed 0 --quiet >&2
  fi
  echo "$name"
}

for dir in "$SHARED"/*/; do
  set_name="$(basename "$dir")"
  classes=$(find "$dir" -mindepth 1 -maxdepth 1 -type d | wc -l)
  if [ "$classes" -lt 2 ]; then echo "generalise: $set_name skipped (not labelled: $classes class folder)" >&2; continue; fi
  auto="auto:diagnostics=probabilities"
  case "$set_name" in
    pbc-8class-500) auto="auto:cellnet=$(cellnet_without pbc bccd-wbc-crops bccd-wbc-fullimage malaria-nih-50gray):diagnostics=probabilities" ;;
    malaria-nih-50gray) auto="auto:cellnet=$(cellnet_without malaria pbc-8class-500 bccd-wbc-crops bccd-wbc-fullimage):diagnostics=probabilities" ;;
  esac
  echo "generalise: $set_name ($auto, lp)" >&2
  $PETRI curve "$dir" --max-per-class "$CAP" --draw-seed 0 --sizes "$SIZES" --seeds "$SEEDS" \
    --method "$auto,lp" --predictions --json "$OUT/$set_name.jsonl" --no-store --quiet
done
# Fine-tuning on the same splits (GENERALISE_FINETUNE, default `partial`: Lite0 above stage 5 on cached trunk
# activations; `none` skips it), after every set has its `auto` results.
FT="${GENERALISE_FINETUNE:-partial}"
if [ "$FT" != none ]; then
  for f in "$OUT"/*.jsonl; do
    set_name="$(basename "$f" .jsonl)"
    echo "generalise: $set_name ($FT)" >&2
    $PETRI curve "$SHARED/$set_name" --max-per-class "$CAP" --draw-seed 0 --sizes "$SIZES" --seeds "$SEEDS" \
      --method "$FT" --predictions --json "$f" --no-store --quiet
  done
fi
python3 scripts/generalise.py "$OUT"/*.jsonl
echo
python3 scripts/generalise_blends.py "$OUT"/*.jsonl
