#!/usr/bin/env bash
# Regenerates the PyTorch reference fixtures (see make_reference.py). Needs Debian's python3-torch,
# python3-pil and python3-numpy (apt-get install python3-torch python3-pil python3-numpy) and network
# access to PyPI for the model code of efficientnet-lite-pytorch 0.1.0.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps -q -d "$work" efficientnet-lite-pytorch==0.1.0
(cd "$work" && python3 -m zipfile -e efficientnet_lite_pytorch-0.1.0-py3-none-any.whl src)
PYTHONPATH="$work/src" /usr/bin/python3 "$here/make_reference.py"
