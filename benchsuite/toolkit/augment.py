"""Batched image augmentation on device tensors: one generator, no per-sample Python.

Images are (N, C, H, W) tensors of any dtype (the CIFAR tasks keep uint8 so that the whole
training set stays on the device); every function returns the same dtype and shape, so views
compose and normalisation stays in the model's first layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def random_crop_flip(
    x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True, fill: float = 0
) -> torch.Tensor:
    """Pad by ``padding`` (with ``fill``: zeros by default), crop back to (H, W) at a random
    offset, and mirror half the images.

    The standard CIFAR augmentation (He et al. 2016). Crop offset and mirroring are folded into
    one index per output pixel, so the whole batch is a single ``gather``. IEG's strong view pads
    with mid-grey (``fill=128`` on uint8 images).
    """
    import torch

    n, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = x.new_full((n, c, hp, wp), fill)
    padded[:, :, padding : padding + h, padding : padding + w] = x
    device = x.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device).to(device)
    rows = offsets[0, :, None] + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        mirrored = (torch.rand(n, generator=generator, device=generator.device) < 0.5).to(device)
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    cols = cols + offsets[1, :, None]
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.view(n, c, hp * wp).gather(2, index).view(n, c, h, w)


def cutout(x: torch.Tensor, generator: torch.Generator, size: int = 16, fill: float = 0) -> torch.Tensor:
    """Fill a ``size``×``size`` square at a uniformly drawn centre of every image with ``fill``.

    The square is clipped at the borders (DeVries & Taylor 2017; IEG's strong view uses size 16
    and fills with mid-grey, i.e. ``fill=128`` on uint8 images).
    """
    import torch

    n, _, h, w = x.shape
    device = x.device
    cy = torch.randint(0, h, (n, 1), generator=generator, device=generator.device).to(device)
    cx = torch.randint(0, w, (n, 1), generator=generator, device=generator.device).to(device)
    low, high = size // 2, size - size // 2
    r = torch.arange(h, device=device)
    col = torch.arange(w, device=device)
    inside_r = (r >= cy - low) & (r < cy + high)
    inside_c = (col >= cx - low) & (col < cx + high)
    mask = inside_r[:, None, :, None] & inside_c[:, None, None, :]
    return x.masked_fill(mask, fill)


@dataclass(frozen=True)
class CropFlip:
    """The weak training view as a ``ViewFn``: ``random_crop_flip`` with fixed settings."""

    padding: int = 4
    flip: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, generator, self.padding, self.flip)
