"""CCE: categorical cross entropy, the baseline every robust method is compared with; and CCE-DN.

CCE's gradient w.r.t. the logits is ``p − e_y``, so its weight (L1 norm) is ``2(1 − p_y)``: it
emphasises the examples it fits worst, noisy ones included (emphasis mode ψ = 0). CCE-DN keeps
that weighting and applies the derivative normalisation (DM paper Tables 1–3, "CCE-DN").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchsuite import LossMethod, LossOutput, hookimpl
from benchsuite_plugins.methods.weighting import LOG2, DerivativeLoss, TargetProbs, upcast

if TYPE_CHECKING:
    import torch


class CCE(LossMethod):
    """Mean cross entropy over the batch; gradient w.r.t. the logits p − e_y (divided by N)."""

    name = "cce"
    summary = "categorical cross entropy (mean over the batch)"
    version = "2"  # reports its weights

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        """PyTorch's mean cross entropy, spelled as the two ops it dispatches to (``log_softmax``
        then ``nll_loss``: the same floats forward and backward), so that the weights
        w = 2(1 − p_y) = −2·expm1(log p_y) read log p_y from the same log-softmax instead of a
        second per-example cross entropy: the baseline costs what plain PyTorch costs (a second
        log-softmax of a digits batch cost 0.02 of a step; on AVX-512 CPUs torch's softmax over 10
        classes is slow)."""
        import torch
        import torch.nn.functional as F

        log_probs = upcast(logits).log_softmax(1)
        log_p_y = log_probs.detach().gather(1, targets.unsqueeze(1)).squeeze_(1)
        weights = torch.expm1(log_p_y).mul_(-2)  # in place: one allocation fewer, the same floats
        return LossOutput(F.nll_loss(log_probs, targets), weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return logits.softmax(1) - F.one_hot(targets, logits.shape[1]).to(logits.dtype)


class CCEDN(DerivativeLoss):
    """CCE's weights 2(1 − p_y), derivative-normalised: example i's gradient is (p_i − e_y) / Σ_j w_j,
    CCE's gradient divided by the batch's total gradient mass (so hard batches are not louder)."""

    name = "cce_dn"
    summary = "cross entropy with derivative normalisation (batch gradient / batch sum of weights)"

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return LOG2 + t.log_q

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * (1 - p)


@hookimpl
def register_methods(register):
    register(CCE)
    register(CCEDN)
