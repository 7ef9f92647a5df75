"""Evaluation on an exponential moving average (EMA) of the weights: an engine option.

A grid's ``eval_ema = DECAY`` (``--eval-ema DECAY``) scores every method of the grid on an EMA of
its predictor's trainable weights (``Method.eval_model``: the trained network, or an ensemble
such as DivideMix's) instead of the weights themselves; by default every method is scored on its
own weights. It is part of each cell's identity. The EMA follows IEG's reference code (TF's
``ExponentialMovingAverage`` with ``num_updates``): after the t-th optimisation step
``ema ← d·ema + (1 − d)·θ`` with ``d = min(DECAY, (1 + t)/(10 + t))``, which lets the average
follow the fast early changes; it is evaluated with the live model's buffers (BatchNorm running
statistics), as that code evaluates it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """An EMA of ``model``'s trainable weights, updated after each optimisation step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay!r} must lie in (0, 1)")
        self.decay = decay
        self.model = model
        self.average = copy.deepcopy(model).requires_grad_(False)
        pairs = [(a, p) for a, p in zip(self.average.parameters(), model.parameters()) if p.requires_grad]
        self._average_params = [a for a, _ in pairs]
        self._live_params = [p for _, p in pairs]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live weights in, after an optimisation step."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_(self._average_params, self._live_params, 1.0 - decay)

    @torch.no_grad()
    def evaluated(self) -> nn.Module:
        """The averaged weights with the live model's buffers and train/eval mode."""
        for average, live in zip(self.average.buffers(), self.model.buffers()):
            average.copy_(live)
        return self.average.train(self.model.training)
