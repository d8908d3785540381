#!/usr/bin/env python3
"""PyTorch side of `make bench` (Debian python3-torch 1.13, channels_last, 2 threads).
Usage: torch_bench.py forward|train|train-frozen|features|export WEIGHTS [--images DIR] [--onnx OUT]"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from lite0 import Lite0  # noqa: E402

FLOPS = float(os.environ.get("LITE0_FLOPS", "0"))


def report(mode, images, seconds, flops_per_image):
    rate = images / seconds
    print(json.dumps({"framework": "pytorch", "mode": mode, "batch": 32, "images_per_s": round(rate, 2),
                      "gflops": round(rate * flops_per_image / 1e9, 1),
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def image_paths(root, count):
    paths = []
    for c in sorted(os.listdir(root)):
        d = os.path.join(root, c)
        if os.path.isdir(d):
            paths += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.lower().endswith((".jpg", ".png"))]
    return paths[:count]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("weights")
    p.add_argument("--images", help="an ImageFolder of JPEGs (mode features)")
    p.add_argument("--count", type=int, default=512)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--onnx")
    a = p.parse_args()
    if a.mode == "features" and not a.images:
        p.error("mode features needs --images DIR")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = Lite0()
    model.load_state_dict(torch.load(a.weights, map_location="cpu"))
    x = torch.rand(32, 3, 224, 224) * 2 - 1
    if a.mode == "export":
        model.eval()
        torch.onnx.export(model, x[:1], a.onnx, opset_version=13, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        return
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    if a.mode == "forward":
        model.eval()
        with torch.inference_mode():
            for _ in range(2):
                model(x)
            t = time.perf_counter()
            for _ in range(a.iterations):
                model(x)
            report("forward", 32 * a.iterations, time.perf_counter() - t, FLOPS)
    elif a.mode in ("train", "train-frozen"):
        model.train()
        if a.mode == "train-frozen":
            # Batch norm with running statistics while the weights train (Petri's tiny-batch mode).
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        model._fc = torch.nn.Linear(1280, 8)
        groups = [{"params": model._fc.parameters(), "lr": 1e-3},
                  {"params": [q for n, q in model.named_parameters() if not n.startswith("_fc")], "lr": 1e-4}]
        opt = torch.optim.AdamW(groups, weight_decay=0.05)
        labels = torch.arange(32) % 8
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def step():
            opt.zero_grad()
            loss_fn(model(x), labels).backward()
            opt.step()
        for _ in range(2):
            step()
        t = time.perf_counter()
        for _ in range(a.iterations):
            step()
        label = "train-bn-frozen" if a.mode == "train-frozen" else "train-bn-batch"
        report(label, 32 * a.iterations, time.perf_counter() - t, 3 * FLOPS)
    elif a.mode == "features":
        # End to end: PIL decode + resize + forward of the pooled features, batch 32.
        model.eval()
        paths = image_paths(a.images, a.count)
        with torch.inference_mode():
            model(x)
            t = time.perf_counter()
            for i in range(0, len(paths), 32):
                batch = [np.asarray(Image.open(q).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
                         for q in paths[i:i + 32]]
                b = torch.from_numpy(np.stack(batch) / 127.5 - 1).permute(0, 3, 1, 2).contiguous(
                    memory_format=torch.channels_last)
                model(b)
            report("features", len(paths), time.perf_counter() - t, FLOPS)


if __name__ == "__main__":
    main()
