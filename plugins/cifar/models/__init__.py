"""The networks of the CIFAR task family, by name."""

from __future__ import annotations

from torch import nn

from .googlenet import googlenet_cifar
from .resnet import CifarResNet, ResNet34, Shortcut
from .wide_resnet import WideResNet

CIFAR_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet34", "wrn28_10", "googlenet")


def build_cifar_model(name: str, num_classes: int, shortcut: Shortcut = "A") -> nn.Module:
    """A freshly initialised network for 32×32 RGB images; ``shortcut`` applies to the ResNets."""
    if name not in CIFAR_MODELS:
        raise ValueError(f"unknown CIFAR model {name!r}; known: {', '.join(CIFAR_MODELS)}")
    if name == "wrn28_10":
        return WideResNet(num_classes, depth=28, width=10)
    if name == "googlenet":
        return googlenet_cifar(num_classes)
    if name == "resnet34":
        return ResNet34(num_classes)
    return CifarResNet(int(name.removeprefix("resnet")), num_classes, shortcut)
