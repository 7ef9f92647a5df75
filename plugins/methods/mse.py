"""MSE: mean squared error between the softmax and the one-hot label; and MSE-DN.

``form = "full"`` is the textbook Σ_k (p_k − y_k)², whose gradient 2p ⊙ (d − ⟨p, d⟩) (d = p − e_y)
is not along p − e_y. ``form = "reduced"`` is the DM paper's (1 − p_y)² (Eq. 3), a loss of p_y
alone with gradient 2p_y(1 − p_y)·(p − e_y) and weight 4p_y(1 − p_y)² (emphasis mode ψ = 1/3);
the DM paper argues (footnote 2) that dropping the j ≠ y terms is harmless. MSE-DN uses the
reduced form, as the DM tables do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from benchsuite import Param, Preset, hookimpl
from benchsuite_plugins.methods.weighting import DerivativeLoss, TargetProbLoss, TargetProbs

if TYPE_CHECKING:
    import torch

LOG4 = math.log(4.0)


def mse_reduced_log_weight(t: TargetProbs) -> torch.Tensor:
    """log of 4p(1 − p)², the weight of (1 − p_y)²."""
    return LOG4 + t.log_p + 2 * t.log_q


def mse_full_gradient(t: TargetProbs) -> torch.Tensor:
    """∇_z Σ_k (p_k − y_k)² = 2p ⊙ (d − ⟨p, d⟩), written without cancellation: with
    s = Σ_{k≠y} p_k² and q = 1 − p_y, ⟨p, d⟩ = s − p_y·q, so g_y = −2p_y(q² + s) and
    g_j = 2p_j(p_j − s + p_y·q) for j ≠ y."""
    import torch

    p = t.logits.softmax(1)
    p_y, q = t.p[:, None], t.one_minus_p[:, None]
    off = p.masked_fill(t.target_mask, 0.0)
    s = off.square().sum(1, keepdim=True)
    return torch.where(t.target_mask, -2 * p_y * (q.square() + s), 2 * p * (p - s + p_y * q))


class MSE(TargetProbLoss):
    name = "mse"
    summary = "mean squared error: Σ_k (p_k − y_k)² (full) or (1 − p_y)² (reduced), mean over the batch"
    parameters = {
        "form": Param("full", "full: Σ_k (p_k − y_k)²; reduced: (1 − p_y)² (DM paper Eq. 3)", choices=("full", "reduced")),
    }
    presets = {
        "dm_paper": Preset(
            {"form": "reduced"},
            source="DM paper Eq. 3 (its MSE rows in Tables 1–3)",
            doc="the reduced MSE, a loss of p_y alone (emphasis mode 1/3)",
        ),
    }

    def example_loss(self, t: TargetProbs) -> torch.Tensor:
        if self.form == "reduced":
            return t.one_minus_p.square()
        off = t.logits.softmax(1).masked_fill(t.target_mask, 0.0)
        return off.square().sum(1) + t.one_minus_p.square()

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        if self.form == "reduced":
            return mse_reduced_log_weight(t)
        return mse_full_gradient(t).abs().sum(1).log()

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        if self.form == "full":
            raise ValueError("the full MSE's weight depends on every class probability, not on p_y alone")
        return 4 * p * (1 - p).square()

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch

        if self.form == "reduced":
            return super().example_gradient(logits, targets)
        p = logits.softmax(1)
        d = p - torch.nn.functional.one_hot(targets, logits.shape[1]).to(p.dtype)
        return 2 * p * (d - (p * d).sum(1, keepdim=True))


class MSEDN(DerivativeLoss):
    """The reduced MSE's weights 4p(1 − p)², derivative-normalised."""

    name = "mse_dn"
    summary = "reduced mean squared error with derivative normalisation (DM paper's MSE-DN)"

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return mse_reduced_log_weight(t)

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 4 * p * (1 - p).square()

    def reported_loss(self, t: TargetProbs) -> torch.Tensor:
        return t.one_minus_p.square()


@hookimpl
def register_methods(register):
    register(MSE)
    register(MSEDN)
