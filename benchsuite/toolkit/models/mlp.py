"""A plain multi-layer perceptron for vector inputs (digits pixels, document vectors)."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """``in_features`` → ``hidden`` ReLU layers → ``num_classes`` logits."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
