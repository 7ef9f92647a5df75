"""MAE: mean absolute error between the softmax and the one-hot label; and MAE-DN.

Two conventions exist (``docs/reference.md`` §2): the DM paper (Eq. 2) and APL use
the reduced form 1 − p_y, with gradient p_y·(p − e_y) and weight 2p_y(1 − p_y); Ghosh et al., the
GCE and the IMAE papers use ‖p − e_y‖₁ = 2(1 − p_y), twice that gradient. ``scale`` covers both
(the default 1 is the DM tables' MAE; preset ``l1`` is the IMAE paper's). Either way MAE emphasises
p_y = 0.5 (ψ = 0.5) and barely differentiates examples, which is why it underfits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from benchsuite import Param, Preset, hookimpl
from benchsuite_plugins.methods.weighting import LOG2, DerivativeLoss, TargetProbLoss, TargetProbs

if TYPE_CHECKING:
    import torch


def mae_log_weight(t: TargetProbs) -> torch.Tensor:
    """log of 2p(1 − p), the weight of the reduced MAE 1 − p_y."""
    return LOG2 + t.log_p + t.log_q


class MAE(TargetProbLoss):
    name = "mae"
    summary = "mean absolute error scale·(1 − p_y) (scale 2: ‖p − e_y‖₁), mean over the batch"
    parameters = {
        "scale": Param(
            1.0, "loss = scale·(1 − p_y); 1: DM/APL reduced form, 2: the L1 form ‖p − e_y‖₁", low=0.0, low_open=True
        ),
    }
    presets = {
        "l1": Preset(
            {"scale": 2.0},
            source="IMAE paper Eqs. 17–20 (Ghosh et al.'s ‖p − e_y‖₁, weight 4p(1 − p)); GCE paper",
            doc="the L1 convention, whose weight variance 0.09 under p ~ U(0, 1) the IMAE paper quotes",
        ),
    }

    def example_loss(self, t: TargetProbs) -> torch.Tensor:
        return self.scale * t.one_minus_p

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return math.log(self.scale) + mae_log_weight(t)

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * self.scale * p * (1 - p)


class MAEDN(DerivativeLoss):
    """MAE's weights 2p(1 − p), derivative-normalised (the scale of MAE cancels out)."""

    name = "mae_dn"
    summary = "mean absolute error with derivative normalisation (DM paper's MAE-DN)"

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return mae_log_weight(t)

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * p * (1 - p)

    def reported_loss(self, t: TargetProbs) -> torch.Tensor:
        return t.one_minus_p


@hookimpl
def register_methods(register):
    register(MAE)
    register(MAEDN)
