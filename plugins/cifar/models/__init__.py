"""The networks of the CIFAR task family, by name.

The names are read when the plugin loads (the tasks' ``model`` parameter); the network modules,
and torch with them, are imported only when a network is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from .resnet import Shortcut

CIFAR_MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet34", "wrn28_10", "googlenet")


def build_cifar_model(name: str, num_classes: int, shortcut: Shortcut = "A") -> nn.Module:
    """A freshly initialised network for 32×32 RGB images; ``shortcut`` applies to the ResNets."""
    if name not in CIFAR_MODELS:
        raise ValueError(f"unknown CIFAR model {name!r}; known: {', '.join(CIFAR_MODELS)}")
    if name == "wrn28_10":
        from .wide_resnet import WideResNet

        return WideResNet(num_classes, depth=28, width=10)
    if name == "googlenet":
        from .googlenet import googlenet_cifar

        return googlenet_cifar(num_classes)
    from .resnet import CifarResNet, ResNet34

    if name == "resnet34":
        return ResNet34(num_classes)
    return CifarResNet(int(name.removeprefix("resnet")), num_classes, shortcut)
