#!/usr/bin/env python3
"""Writes the PyTorch reference outputs Petri's tests compare against.

Run with Debian's python3-torch (1.13), Pillow and NumPy, and the model code of the PyPI package
efficientnet-lite-pytorch 0.1.0 on PYTHONPATH (scripts/reference/run.sh arranges all of this):

    scripts/reference/run.sh

For each backbone it writes, into Tests/PetriNNTests/Fixtures/:
  <model>-input.npy     uint8 [N, S, S, 3]: fixture images resized with PIL (antialiased bilinear) to S×S
  <model>-logits.npy    float32 [N, 1000]: PyTorch logits for (input/255 - 0.5)/0.5, eval mode
  <model>-features.npy  float32 [N, 1280]: globally pooled head features (Lite0 only)
and pbc-monocyte-pil.npy: the JPEG fixture decoded by PIL (uint8 [H, W, 3]) for the decoder test.
"""
import os
import sys

import numpy as np
import torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PetriNNTests", "Fixtures")
DATA_FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "PetriDataTests", "Fixtures")
WEIGHTS = os.environ.get("PETRI_WEIGHTS_DIR", os.path.expanduser("~/.cache/petri/weights"))
MODELS = {
    "efficientnet-lite0": ("efficientnet-lite0-57934424.pth", 224, ["chelsea.png", "coffee.png", "bccd-neutrophil.png"]),
    "efficientnet-lite1": ("efficientnet-lite1-77cc7160.pth", 240, ["chelsea.png"]),
    "efficientnet-lite2": ("efficientnet-lite2-9656183e.pth", 260, ["coffee.png"]),
}


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    for name, (weights, size, images) in MODELS.items():
        model = EfficientNet.from_name(name)
        state = torch.load(os.path.join(WEIGHTS, weights), map_location="cpu")
        model.load_state_dict(state)
        model.eval()
        pixels = np.stack([
            np.asarray(Image.open(os.path.join(FIXTURES, f)).convert("RGB").resize((size, size), Image.BILINEAR))
            for f in images
        ]).astype(np.uint8)
        x = torch.from_numpy(pixels.astype(np.float32) / 255.0)
        x = ((x - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            logits = model(x).numpy().astype(np.float32)
            features = model.extract_features(x).mean(dim=(2, 3)).numpy().astype(np.float32)
        np.save(os.path.join(FIXTURES, f"{name}-input.npy"), pixels)
        np.save(os.path.join(FIXTURES, f"{name}-logits.npy"), logits)
        if name == "efficientnet-lite0":
            np.save(os.path.join(FIXTURES, f"{name}-features.npy"), features)
        top = logits.argmax(axis=1).tolist()
        print(f"{name}: {images} -> top-1 {top}", file=sys.stderr)
    jpeg = np.asarray(Image.open(os.path.join(DATA_FIXTURES, "pbc-monocyte.jpg")).convert("RGB")).astype(np.uint8)
    np.save(os.path.join(DATA_FIXTURES, "pbc-monocyte-pil.npy"), jpeg)




def tiny_checkpoints():
    """Small checkpoints in both formats with a transposed (non-contiguous) tensor, a storage offset,
    two tensors sharing one storage, and an int64 tensor."""
    base = torch.arange(24, dtype=torch.float32)
    state = {
        "transposed": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
        "offset": base[5:9],
        "shared": base.view(4, 6)[1:3, ::2],
        "count": torch.tensor(7, dtype=torch.int64),
    }
    torch.save(state, os.path.join(FIXTURES, "tiny-zip.pth"))
    torch.save(state, os.path.join(FIXTURES, "tiny-legacy.pth"), _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
    tiny_checkpoints()
