#!/usr/bin/env python3
"""ONNX Runtime side of `make bench` (PyPI onnxruntime, 2 intra-op threads), on the model that
torch_bench.py exported from the same weights. Usage: ort_bench.py forward|features MODEL.onnx [--images DIR]"""
import argparse
import json
import os
import resource
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

FLOPS = float(os.environ.get("LITE0_FLOPS", "0"))


def report(mode, images, seconds):
    rate = images / seconds
    print(json.dumps({"framework": "onnxruntime", "mode": mode, "batch": 32, "images_per_s": round(rate, 2),
                      "gflops": round(rate * FLOPS / 1e9, 1),
                      "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("model")
    p.add_argument("--images", help="an ImageFolder of JPEGs (mode features)")
    p.add_argument("--count", type=int, default=512)
    p.add_argument("--iterations", type=int, default=10)
    a = p.parse_args()
    if a.mode == "features" and not a.images:
        p.error("mode features needs --images DIR")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    x = (np.random.default_rng(0).random((32, 3, 224, 224), dtype=np.float32) * 2 - 1)
    for _ in range(2):
        sess.run(None, {"input": x})
    if a.mode == "forward":
        t = time.perf_counter()
        for _ in range(a.iterations):
            sess.run(None, {"input": x})
        report("forward", 32 * a.iterations, time.perf_counter() - t)
    else:
        paths = []
        for c in sorted(os.listdir(a.images)):
            d = os.path.join(a.images, c)
            if os.path.isdir(d):
                paths += [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.lower().endswith((".jpg", ".png"))]
        paths = paths[:a.count]
        t = time.perf_counter()
        for i in range(0, len(paths), 32):
            batch = [np.asarray(Image.open(q).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32)
                     for q in paths[i:i + 32]]
            b = np.ascontiguousarray((np.stack(batch) / 127.5 - 1).transpose(0, 3, 1, 2), dtype=np.float32)
            sess.run(None, {"input": b})
        report("features", len(paths), time.perf_counter() - t)


if __name__ == "__main__":
    main()
