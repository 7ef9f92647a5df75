"""torchvision backbones with ImageNet weights taken from disk, never downloaded at run time."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ...errors import BenchsuiteError


class MissingWeightsError(BenchsuiteError, FileNotFoundError):
    """Pretrained weights were asked for but are not on disk."""


def imagenet_weights_path(arch: str) -> tuple[Path, str]:
    """Where torchvision's cache keeps ``arch``'s default ImageNet weights, and their URL."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    url = weights.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def torchvision_backbone(arch: str, weights: str | None) -> nn.Module:
    """A torchvision classification model.

    ``weights``: ``None`` for random initialisation; ``"imagenet"`` for torchvision's default
    ImageNet weights from the torch hub cache; or a path to a state-dict file.
    """
    import torchvision

    model = torchvision.models.get_model(arch, weights=None)
    if weights is None:
        return model
    if weights == "imagenet":
        path, url = imagenet_weights_path(arch)
        if not path.is_file():
            raise MissingWeightsError(
                f"ImageNet weights for {arch} are not at {path}. benchsuite never downloads weights at run "
                f"time: fetch {url} into that folder (or set TORCH_HOME), pass weights='/path/to/file.pth', "
                "or weights=None for random initialisation."
            )
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"weights file {path} does not exist (pass weights=None for random init)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return model
