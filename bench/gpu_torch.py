#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu.ts on the same GPU: training throughput of ResNet-20 (CIFAR
shape, batch 128) and torchvision's ResNet-50 layout (224x224, batch 64), float32 NCHW, with
TF32 convolutions on and off (torch.backends.cudnn.allow_tf32), cudnn.benchmark off so that
both libraries pick algorithms by heuristics.

    python3 bench/gpu_torch.py [--reps 10] [--warmup 3] [--json out.json]
"""

import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("gpu_torch.py needs PyTorch with CUDA", file=sys.stderr)
    sys.exit(3)


def conv_bn(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False), nn.BatchNorm2d(cout))


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a, self.b = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1)
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + (self.short(x) if self.short else x))


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.a, self.b, self.c = conv_bn(cin, width, 1, 1), conv_bn(width, width, 3, stride), conv_bn(width, cout, 1, 1)
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.c(F.relu(self.b(F.relu(self.a(x)))))
        return F.relu(y + (self.short(x) if self.short else x))


def resnet20():
    layers, cin = [conv_bn(3, 16, 3, 1), nn.ReLU()], 16
    for stage, cout in enumerate([16, 32, 64]):
        for i in range(3):
            layers.append(Basic(cin, cout, 2 if stage > 0 and i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def resnet50():
    stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    layers, cin = [stem], 64
    for stage, (width, count) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for i in range(count):
            layers.append(Bottleneck(cin, width, 2 if stage > 0 and i == 0 else 1))
            cin = width * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_torch.py: torch sees no CUDA device", file=sys.stderr)
        sys.exit(2)
    torch.backends.cudnn.benchmark = False
    rows = []
    for name, batch, size, classes, make in [("resnet20", 128, 32, 10, resnet20), ("resnet50", 64, 224, 1000, resnet50)]:
        for tf32 in (True, False):
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            net = make().cuda().train()
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
            x = torch.randn(batch, 3, size, size, device="cuda")
            y = torch.arange(batch, device="cuda") % classes

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()

            for _ in range(a.warmup):
                step()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(a.reps):
                step()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) * 1000 / a.reps
            rows.append({"model": name, "batch": batch, "tf32": tf32, "imgPerSec": batch * 1000 / ms})
            print(f"torch {name} batch {batch} tf32 {'on ' if tf32 else 'off'}: {batch * 1000 / ms:.1f} img/s ({ms:.1f} ms/step)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                       "device": torch.cuda.get_device_name(0), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
