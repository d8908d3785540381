"""PyTorch reference for `petri-bench scratch`: cnn-mini (3 × conv3-BN-ReLU-maxpool3/2, 16→32→64 channels,
64 px, global average pool, dropout 0.2, linear) trained on a random batch, AdamW, one step per iteration.
Prints one JSON line like petri-bench."""
import json
import sys
import time

import torch
from torch import nn

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 16
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 100
torch.manual_seed(0)
layers, c_in = [], 3
for c in (16, 32, 64):
    layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    c_in = c
net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 4))
net = net.to(memory_format=torch.channels_last).train()
x = (torch.rand(batch, 3, 64, 64) * 2 - 1).to(memory_format=torch.channels_last)
labels = torch.arange(batch) % 4
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)


def step():
    optimizer.zero_grad()
    loss_fn(net(x), labels).backward()
    optimizer.step()


for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(iterations):
    step()
rate = batch * iterations / (time.perf_counter() - start)
print(json.dumps({"framework": "pytorch", "mode": "scratch", "batch": batch, "images_per_s": round(rate, 2),
                  "gflops": 0.0, "peak_mb": 0, "net": "cnn-mini"}))
