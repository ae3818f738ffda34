"""The benchmark's networks in PyTorch, identical to this library's `models.cifarResNet({ depth:
20, shortcut: 'B' })` (272,474 trainable parameters) and `models.resnet50()` (torchvision's
layout, 25,557,032): conv-BN-ReLU, projection shortcut = 1x1 convolution + BN where the shape
changes, bottleneck stride on the 3x3 convolution, global average pooling, a linear layer.
Shared by bench/peer_torch.py, bench/ops_torch.py and bench/gpu_torch.py.
"""

import torch.nn as nn
import torch.nn.functional as F

PARAMS = {"resnet20": 272_474, "resnet50": 25_557_032}


def conv_bn(cin, cout, k, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False), nn.BatchNorm2d(cout))


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a, self.b = conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1)
        # Option B of He et al.: project only where the shape changes.
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


MODELS = {"resnet20": resnet20, "resnet50": resnet50}


def trainable_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
