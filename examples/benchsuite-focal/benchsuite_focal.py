"""Focal loss (Lin et al., 2017) as a benchsuite method plugin.

FL(p_y) = −(1 − p_y)^γ · log p_y. As a loss of p_y only, its gradient w.r.t. the logits is
c(p_y)·(p − e_y) with c(p) = (1 − p)^γ − γ·p·(1 − p)^(γ−1)·log p, i.e. cross entropy's gradient
rescaled per example — the emphasis the engine records is w = 2(1 − p_y)·c(p_y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchsuite import LossMethod, LossOutput, Param, Preset, hookimpl


def focal_weight(p_y: torch.Tensor, gamma: float) -> torch.Tensor:
    """c(p_y) = (1 − p)^γ · (1 − γ·p·log(p)/(1 − p)): the factor that turns cross entropy's gradient
    into the focal loss's. Written with log(p)/(1 − p) (→ −1 as p → 1), which stays finite for
    γ < 1 where (1 − p)^(γ−1) alone would overflow."""
    one_minus = (1 - p_y).clamp_min(0)
    log_p = p_y.clamp_min(torch.finfo(p_y.dtype).tiny).log()
    ratio = torch.where(one_minus > 1e-4, log_p / one_minus.clamp_min(1e-4), -1 - one_minus / 2)
    return one_minus**gamma * (1 - gamma * p_y * ratio)


class Focal(LossMethod):
    name = "focal"
    summary = "focal loss −(1 − p_y)^γ log p_y (mean over the batch)"
    parameters = {"gamma": Param(2.0, "focusing exponent γ (0 = cross entropy)", low=0.0, high=10.0)}
    presets = {"retinanet": Preset({"gamma": 2.0}, source="Lin et al. 2017, Table 1a")}

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        log_p_y = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        one_minus = -torch.expm1(log_p_y)  # 1 − p_y, accurate when p_y → 1
        loss = -(one_minus.clamp_min(0) ** self.gamma) * log_p_y
        p_y = log_p_y.detach().exp()
        weights = 2 * (1 - p_y) * focal_weight(p_y, self.gamma)
        return LossOutput(loss.mean(), weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Closed form of each example's logit gradient, for benchsuite's contract checks."""
        p = logits.softmax(1)
        p_y = p.gather(1, targets[:, None]).squeeze(1)
        return focal_weight(p_y, self.gamma)[:, None] * (p - F.one_hot(targets, logits.shape[1]).to(p.dtype))


@hookimpl
def register_methods(register):
    register(Focal)
