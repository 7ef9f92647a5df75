"""Bootstrapping, soft and hard (Reed, Lee, Anguelov, Szegedy, Erhan & Rabinovich, "Training deep
neural networks on noisy labels with bootstrapping", ICLR 2015 workshop).

The target is a convex combination of the given label and the model's own current belief,
β·e_y + (1 − β)·b, and the loss is the cross entropy against it:

* soft, b = q (the softmax output): −Σ_k (β t_k + (1 − β) q_k) log q_k = β·CE + (1 − β)·H(q).
  The gradient flows through q in the target, as in the paper, which calls this softmax
  regression with minimum-entropy regularisation (and as in the authors' comparison code of the
  forward-correction paper, Patrini et al. 2017, whose ``boot_soft`` lets Keras differentiate
  through it). Holding q constant instead would make the gradient exactly β·(q − e_y), i.e. CCE
  at β times the learning rate, so that reading is not offered.
* hard, b = e_ŷ with ŷ = argmax_k q_k: −β log q_y − (1 − β) log q_ŷ (ŷ is piecewise constant).

What is implemented: the paper's two bootstrapping objectives with a fixed β, applied from the
first step. Not implemented: its reconstruction-based consistency objective, and any warm-up or β
schedule (later variants, e.g. dynamic bootstrapping, add those).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchsuite import LossMethod, LossOutput, Param, Preset, hookimpl
from benchsuite_plugins.methods.soft_target import SoftTargetLoss
from benchsuite_plugins.methods.weighting import upcast

if TYPE_CHECKING:
    import torch

_PATRINI_CODE = "giorgiop/loss-correction loss.py (boot_soft, β = 0.95), the forward-correction paper's baselines"


class BootstrapSoft(LossMethod):
    """Soft bootstrapping: β·CE + (1 − β)·H(q). Gradient (per example)
    β(q − e_y) − (1 − β)·q ⊙ (log q + H(q)); reported weight: its L1 norm."""

    name = "bootstrap_soft"
    summary = "soft bootstrapping: CE against β·label + (1 − β)·prediction (Reed et al. 2015)"
    in_default_grid = False
    parameters = {"beta": Param(0.95, "β: weight of the given label in the target", low=0.0, high=1.0)}
    presets = {
        "reed": Preset({"beta": 0.95}, source="Reed et al. 2015, MNIST experiments (soft bootstrapping, β = 0.95); " + _PATRINI_CODE),
    }

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        import torch

        log_q = upcast(logits).log_softmax(1)
        entropy = -(log_q.exp() * log_q).sum(1)
        loss = (-self.beta * log_q.gather(1, targets[:, None]).squeeze(1) + (1 - self.beta) * entropy).mean()
        with torch.no_grad():
            weights = self.example_gradient(logits.detach(), targets).abs().sum(1)
        return LossOutput(loss, weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        log_q = upcast(logits).log_softmax(1)
        q = log_q.exp()
        entropy = -(q * log_q).sum(1, keepdim=True)
        onehot = F.one_hot(targets, q.shape[1]).to(q.dtype)
        return self.beta * (q - onehot) - (1 - self.beta) * q * (log_q + entropy)


class BootstrapHard(SoftTargetLoss):
    """Hard bootstrapping: CE against β·e_y + (1 − β)·e_ŷ, ŷ the predicted class. Gradient
    q − β e_y − (1 − β) e_ŷ; reported weight: its L1 norm."""

    name = "bootstrap_hard"
    summary = "hard bootstrapping: CE against β·label + (1 − β)·predicted class (Reed et al. 2015)"
    in_default_grid = False
    parameters = {"beta": Param(0.8, "β: weight of the given label in the target", low=0.0, high=1.0)}
    presets = {"reed": Preset({"beta": 0.8}, source="Reed et al. 2015, MNIST experiments (hard bootstrapping, β = 0.8)")}

    def target(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """β·e_y + (1 − β)·e_ŷ (constant: no gradient flows through the argmax)."""
        import torch.nn.functional as F

        classes = logits.shape[1]
        label = F.one_hot(targets, classes).to(logits.dtype)
        predicted = F.one_hot(logits.detach().argmax(1), classes).to(logits.dtype)
        return self.beta * label + (1 - self.beta) * predicted


@hookimpl
def register_methods(register):
    register(BootstrapSoft)
    register(BootstrapHard)
