"""Video (tracklet) embeddings from an ImageNet CNN: per-frame features, mean-pooled per tracklet.

The usual video re-identification baseline treats a tracklet as a set of frames: each frame is
embedded by the image network and the frame features are averaged (``docs/reference.md``
§7). Frames travel as uint8 and are normalised on the device, so loaders move 4× fewer bytes.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def strip_classifier(model: nn.Module) -> tuple[nn.Module, int]:
    """``model`` with its last linear layer (the ImageNet classifier) replaced by an identity, and
    the dimension of the features that layer received."""
    last_name, last = "", None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name, last = name, module
    if last is None:
        raise ValueError(f"{type(model).__name__} has no linear classifier to remove")
    parent_name, _, attr = last_name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, nn.Identity())
    return model, last.in_features


class VideoEncoder(nn.Module):
    """uint8 frames → features: ``(B, T, 3, H, W)`` tracklets give ``(B, D)`` (mean over the T
    frames); ``(N, 3, H, W)`` frames give per-frame ``(N, D)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, T, 3, H, W) tracklets or (N, 3, H, W) frames, got shape {tuple(x.shape)}")
        frames = x.flatten(0, 1) if x.ndim == 5 else x
        feats = self.backbone((frames.float() - self.mean) / self.std)
        return feats.view(x.shape[0], x.shape[1], -1).mean(1) if x.ndim == 5 else feats
