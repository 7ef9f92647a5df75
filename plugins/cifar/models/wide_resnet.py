"""WRN-28-10 as IEG trains it (google-research ``ieg/models/wrn.py``, the AutoAugment variant).

It differs from Zagoruyko & Komodakis' reference WRN (projection shortcuts, 36,479,194 parameters
with 10 classes): shortcuts that change shape are parameter-free (average pooling by the stride,
then zero-padding the new channels evenly), the first block's BN-ReLU is shared by both branches,
and every stage, as well as the whole trunk, has an extra parameter-free skip connection from its
input. Pre-activation blocks, no dropout; 36,220,634 parameters with 10 classes. Convolutions are
initialised N(0, 2/(k²·out)) (Kaiming, fan-out), the classifier U(±1/√classes) with zero bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _match(x: torch.Tensor, stride: int, out_channels: int) -> torch.Tensor:
    """Parameter-free shortcut: average-pool by ``stride``, zero-pad channels evenly."""
    if stride > 1:
        x = F.avg_pool2d(x, stride)
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2)) if extra else x


class PreActBlock(nn.Module):
    """(BN-ReLU)-conv3×3-BN-ReLU-conv3×3 + shortcut. With ``shared_activation`` the first
    BN-ReLU also feeds the shortcut (IEG's first block)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shared_activation: bool) -> None:
        super().__init__()
        self.stride, self.planes, self.shared_activation = stride, planes, shared_activation
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        shortcut = act if self.shared_activation else x
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return out + _match(shortcut, self.stride, self.planes)


class WideResNet(nn.Module):
    """WRN-depth-width for 32×32 inputs; returns logits."""

    def __init__(self, num_classes: int, depth: int = 28, width: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.stages = nn.ModuleList()
        self.strides = (1, 2, 2)
        in_planes = 16
        for s, (planes, stride) in enumerate(zip(widths, self.strides)):
            blocks = [PreActBlock(in_planes, planes, stride, shared_activation=s == 0)]
            blocks += [PreActBlock(planes, planes, 1, shared_activation=False) for _ in range(n - 1)]
            self.stages.append(nn.Sequential(*blocks))
            in_planes = planes
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = first = self.conv(x)
        for stage, stride in zip(self.stages, self.strides):
            x = stage(x) + _match(x, stride, stage[-1].planes)
        x = x + _match(first, math.prod(self.strides), x.shape[1])
        x = F.relu(self.bn(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
