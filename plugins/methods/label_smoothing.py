"""Label smoothing (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception
architecture for computer vision", CVPR 2016, §7).

Cross entropy against q'(k) = (1 − ε)·δ_{k,y} + ε·u(k) with the uniform u(k) = 1/C (the ε/C share
goes to the labelled class too, as in the paper and in PyTorch's ``label_smoothing``). Gradient
per example p − q'; reported weight its L1 norm Σ_k |p_k − q'_k|.

What is implemented: the paper's regulariser with the uniform prior, from the first step; the
paper also allows other priors u(k) (it suggests the label marginal), which are not offered. As a
noisy-label method it was studied later (Lukasik, Bhojanapalli, Menon & Kumar, "Does label
smoothing mitigate label noise?", ICML 2020); the paper itself has no label-noise experiment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchsuite import Param, Preset, hookimpl
from benchsuite_plugins.methods.soft_target import SoftTargetLoss

if TYPE_CHECKING:
    import torch


class LabelSmoothing(SoftTargetLoss):
    """Mean cross entropy against the smoothed label."""

    name = "label_smoothing"
    summary = "cross entropy against (1 − ε)·label + ε·uniform (Szegedy et al. 2016)"
    in_default_grid = False
    parameters = {
        "eps": Param(0.1, "ε: probability mass moved from the label to the uniform distribution", low=0.0, high=1.0)
    }
    presets = {"inception": Preset({"eps": 0.1}, source="Szegedy et al. 2016, §7 (ImageNet, ε = 0.1)")}

    def target(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        classes = logits.shape[1]
        return (1 - self.eps) * F.one_hot(targets, classes).to(logits.dtype) + self.eps / classes


@hookimpl
def register_methods(register):
    register(LabelSmoothing)
