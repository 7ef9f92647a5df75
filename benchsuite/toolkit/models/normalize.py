"""Input normalisation as the model's first layer, so images can stay uint8 on the device."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """``net`` applied to per-channel standardised images.

    Accepts uint8 images in [0, 255] or floating images in [0, 1] (torchvision's convention), so
    batched views may return either. With ``channels_last`` the float batch is laid out NHWC
    before ``net`` (faster convolutions on CPU; ``net`` must be converted to channels_last too).
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], channels_last: bool = False) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        x = x.to(dtype=torch.float32, memory_format=self.memory_format)
        return self.net((x - self.mean * scale) / (self.std * scale))
