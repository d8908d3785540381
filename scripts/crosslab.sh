#!/usr/bin/env bash
# `make crosslab`: the cross-lab yardstick (docs/results.md, "Another lab's images"). Three public sets of the
# same four white-cell classes (eosinophil, lymphocyte, monocyte, neutrophil) from two labs and two framings —
# bccd-wbc-crops, bccd-wbc-fullimage and pbc-8class-500 — each used to train `petri train`'s default model, which
# is then scored on the other two: on their raw class mix and on a balanced draw, as is and adapted without
# labels: --adapt scale (the magnification alone), the same with the heads and batch norms adapted, and --adapt
# auto (the magnification, then the heads and batch norms only when nearly all images are still unfamiliar);
# CROSSLAB_COLOUR=1 adds the colour match (--adapt scale-colour, --adapt auto-colour; slow: twice the features).
# One line per case: balanced accuracy, the share of images unlike every training image, the share marked
# `accept`, and the share marked `accept` and wrong. Needs the three sets in $PETRI_DATASETS; models and
# folders go to $CROSSLAB_OUT (default out/crosslab) and are reused; the feature cache makes reruns fast.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${PETRI_DATASETS:-../shared/datasets}"
for d in bccd-wbc-crops bccd-wbc-fullimage pbc-8class-500; do
  [ -d "$SHARED/$d" ] || { echo "crosslab: $SHARED/$d not found (set PETRI_DATASETS to the folder holding it)" >&2; exit 1; }
done
PETRI=.build/release/petri
OUT="${CROSSLAB_OUT:-out/crosslab}"
CLASSES=(eosinophil lymphocyte monocyte neutrophil)
mkdir -p "$OUT/data"

# Folders of symbolic links: each set's four classes; PBC's first 100 per class (file-name order) to train on and
# its next 50 per class as PBC's own held-out images.
link() {   # source set, destination folder, first, count (0: all); complete or not at all
  rm -rf "$2.part"
  for c in "${CLASSES[@]}"; do
    mkdir -p "$2.part/$c"
    local files=() dir
    dir="$(cd "$SHARED/$1/$c" && pwd)"
    mapfile -t files < <(cd "$dir" && ls | sort)
    local n=$(( ${#files[@]} - $3 )); [ "$4" -gt 0 ] && [ "$4" -lt "$n" ] && n=$4
    for f in "${files[@]:$3:$n}"; do ln -s "$dir/$f" "$2.part/$c/$f"; done
  done
  mv "$2.part" "$2"
}
[ -d "$OUT/data/crops" ] || link bccd-wbc-crops "$OUT/data/crops" 0 0
[ -d "$OUT/data/fields" ] || link bccd-wbc-fullimage "$OUT/data/fields" 0 0
[ -d "$OUT/data/pbc" ] || link pbc-8class-500 "$OUT/data/pbc" 0 100
[ -d "$OUT/data/pbc-held-out" ] || link pbc-8class-500 "$OUT/data/pbc-held-out" 100 50

for s in crops fields pbc; do
  [ -f "$OUT/$s.petri" ] || $PETRI train "$OUT/data/$s" --seed 0 --out "$OUT/$s.petri" --quiet > "$OUT/$s.train.log"
done

score() {   # model, data, extra flags: prints balanced accuracy, unfamiliar, accept, accept and wrong
  $PETRI evaluate "$OUT/$1.petri" "$2" ${3:-} --quiet 2>/dev/null | awk '
    /^balanced accuracy/ {b = $3}
    /^unlike every training image/ {u = $8; gsub(/[(),]/, "", u)}
    /^marked .accept./ {a = $6; gsub(/[(),]/, "", a); w = $(NF-3)}
    END {printf "%-7s %-6s %-6s %-6s", b, u, a, w}'
}
SETTINGS=("" "--adapt scale" "--adapt scale --adapt-heads --adapt-norm" "--adapt auto")
NAMES=("as is" "scale" "scale+heads,norm" "auto")
if [ "${CROSSLAB_COLOUR:-0}" = 1 ]; then
  SETTINGS+=("--adapt scale-colour" "--adapt auto-colour")
  NAMES+=("scale-colour" "auto-colour")
fi
printf '%-8s %-16s %-16s %-7s %-6s %-6s %-6s\n' trained "evaluated on" setting bal.acc unfam. accept "acc.wrong"
TARGETS_crops=("fields|$OUT/data/fields|" "fields-20|$OUT/data/fields|--max-per-class 20" "pbc|$OUT/data/pbc-held-out|")
TARGETS_fields=("crops|$OUT/data/crops|" "crops-20|$OUT/data/crops|--max-per-class 20" "pbc|$OUT/data/pbc-held-out|")
TARGETS_pbc=("crops|$OUT/data/crops|" "crops-20|$OUT/data/crops|--max-per-class 20" "fields|$OUT/data/fields|"
             "fields-20|$OUT/data/fields|--max-per-class 20" "pbc-same-lab|$OUT/data/pbc-held-out|")
for s in crops fields pbc; do
  declare -n targets="TARGETS_$s"
  for t in "${targets[@]}"; do
    IFS='|' read -r name folder draw <<< "$t"
    for i in "${!SETTINGS[@]}"; do
      printf '%-8s %-16s %-16s %s\n' "$s" "$name" "${NAMES[$i]}" "$(score "$s" "$folder" "$draw ${SETTINGS[$i]}")"
    done
  done
done
