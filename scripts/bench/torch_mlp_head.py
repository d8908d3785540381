"""PyTorch reference for `petri-bench mlp`: the MLP head `auto` fits on frozen features — rows L2-normalised and
scaled by sqrt(D), Linear(D, 256) + ReLU + dropout 0.5 + Linear(256, 4), full-batch AdamW (lr 3e-3, weight decay
0.05 on the weights), label smoothing 0.1, 300 steps with warm-up + cosine — on random features of auto's width
(4432: Lite0+1+2 stage 6 + head). Prints one JSON line like petri-bench ("images_per_s" = training rows × steps
per second, and seconds per fit)."""
import json
import math
import sys
import time

import torch
from torch import nn

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 162
dim = int(sys.argv[2]) if len(sys.argv) > 2 else 4432
iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 3
steps = 300
torch.manual_seed(0)
x = torch.rand(rows, dim)
labels = torch.arange(rows) % 4


def fit(seed):
    torch.manual_seed(seed)
    z = nn.functional.normalize(x, dim=1) * math.sqrt(dim)
    net = nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 4)).train()
    decay = [net[0].weight, net[3].weight]
    no_decay = [net[0].bias, net[3].bias]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0}], lr=3e-3)
    warmup = round(steps * 0.05)
    schedule = lambda t: (t + 1) / warmup if t < warmup else 0.5 * (1 + math.cos(math.pi * (t - warmup) / (steps - warmup)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(z), labels).backward()
        opt.step()
        sched.step()


fit(100)
start = time.perf_counter()
for i in range(iterations):
    fit(i)
seconds = (time.perf_counter() - start) / iterations
print(json.dumps({"framework": "pytorch", "mode": "mlp", "batch": rows, "images_per_s": round(rows * steps / seconds, 1),
                  "gflops": 0.0, "peak_mb": 0, "rows": rows, "dim": dim, "seconds_per_fit": round(seconds, 3)}))
