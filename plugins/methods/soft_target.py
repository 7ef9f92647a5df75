"""Losses that are a cross entropy against a per-example target distribution.

Label smoothing, hard bootstrapping and mixup each train on CE(z, t) = −Σ_k t_k log p_k with a
target t built from the label (and, for mixup, a second label) that no gradient flows through.
Their gradient per example is then p − t, and the weight the engine records is ‖p − t‖₁.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from benchsuite import LossMethod, LossOutput
from benchsuite_plugins.methods.weighting import upcast

if TYPE_CHECKING:
    import torch


def soft_target_output(logits: torch.Tensor, target: torch.Tensor) -> LossOutput:
    """Mean cross entropy of ``logits`` against the (constant) target distributions, and each
    example's weight ‖p − t‖₁."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        weights = (logits.detach().softmax(1) - target).abs().sum(1)
    return LossOutput(F.cross_entropy(logits, target), weights)


class SoftTargetLoss(LossMethod):
    """A mean cross entropy against ``target(logits, targets)``; see the module docstring."""

    @abc.abstractmethod
    def target(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-example target distributions (N, C), constant (built without a graph)."""

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        logits = upcast(logits)
        return soft_target_output(logits, self.target(logits, targets))

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = upcast(logits)
        return logits.softmax(1) - self.target(logits, targets)
