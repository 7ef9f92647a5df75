"""ELR: early-learning regularisation towards per-example targets, an EMA of the predictions.

Liu, Niles-Weed, Razavian & Fernandez-Granda, "Early-Learning Regularization Prevents
Memorization of Noisy Labels", NeurIPS 2020; official code shengliu66/ELR (``ELR/model/loss.py``,
``ELR/config_*.json``).

Implemented: ELR, not ELR+. Each training example i keeps a target t_i (zeros at the start),
updated whenever the example is in a batch as t_i ← β·t_i + (1 − β)·p̂_i, where p̂_i is the
network's softmax clamped to [10⁻⁴, 1 − 10⁻⁴] and renormalised (detached: the targets are
constants for the gradient). The loss is

    mean_i CE(z_i, y_i) + λ · mean_i log(1 − ⟨t_i, p_i⟩)

with p_i the clamped softmax. The regulariser's gradient pulls each prediction towards its
target, the model's own early-learning prediction, and so cancels the cross entropy's pull
towards a wrong label once the target disagrees with it. The clamp, the renormalisation and the
zero start follow the code.

Not implemented (ELR+): the second network, the weight-averaged (mean-teacher) targets, mixup
and the code's Clothing1M/WebVision pipelines. The optimiser and schedule are the task's recipe
(the code: SGD at 0.02, weight decay 10⁻³, cosine annealing with restarts or steps).

Weights: an example's weight is the L1 norm of its own loss gradient w.r.t. its logits, in
closed form (``elr_example_gradient``), so the engine's emphasis statistics cover ELR. Per epoch
the curves get ``elr_target_true_noisy`` and ``elr_target_true_clean``: the share of the truly
noisy and the truly clean examples whose target's arg-max is the true class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchsuite import Method, Param, Preset, StepOutput, hookimpl
from benchsuite.task import Batch

if TYPE_CHECKING:
    import torch

    from benchsuite.engine import TrainContext

#: Bounds of the clamped softmax (the code's constants).
PROB_CLAMP = 1e-4


def clamped_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax clamped to [10⁻⁴, 1 − 10⁻⁴] (differentiable inside the bounds, as in the code)."""
    return logits.softmax(1).clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)


def ema_targets(old: torch.Tensor, probs: torch.Tensor, beta: float) -> torch.Tensor:
    """β·old + (1 − β)·probs / Σ probs: the targets after one more visit (``probs`` detached)."""
    probs = probs.detach()
    return beta * old + (1.0 - beta) * probs / probs.sum(1, keepdim=True)


def elr_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """mean CE(z, y) + λ · mean log(1 − ⟨t, p⟩) with p the clamped softmax and t constant."""
    import torch
    import torch.nn.functional as F

    inner = (targets * clamped_probs(logits)).sum(1)
    return F.cross_entropy(logits, labels) + lam * torch.log1p(-inner).mean()


def elr_example_gradient(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, lam: float) -> torch.Tensor:
    """∇_z of example i's own loss CE(z_i, y_i) + λ log(1 − ⟨t_i, p̃_i⟩), before the batch mean.

    With p = softmax(z), m the mask where the clamp lets the gradient through and s = t ⊙ m:
    ∂⟨t, p̃⟩/∂z = p ⊙ (s − ⟨s, p⟩), so the gradient is p − e_y − λ·p ⊙ (s − ⟨s, p⟩) / (1 − ⟨t, p̃⟩).
    """
    import torch.nn.functional as F

    p = logits.softmax(1)
    inside = (p >= PROB_CLAMP) & (p <= 1.0 - PROB_CLAMP)
    s = targets * inside
    inner = (targets * p.clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)).sum(1, keepdim=True)
    pull = p * (s - (s * p).sum(1, keepdim=True)) / (1.0 - inner)
    return p - F.one_hot(labels, logits.shape[1]).to(p.dtype) - lam * pull


class ELR(Method):
    """ELR (see the module docstring): cross entropy plus the early-learning regulariser."""

    name = "elr"
    summary = "cross entropy + λ·log(1 − ⟨t, p⟩), t a per-example EMA of the predictions (ELR)"
    in_default_grid = False
    state_attributes = ("targets",)
    parameters = {
        "beta": Param(0.7, "β: momentum of the per-example target EMA", low=0.0, high=1.0, high_open=True),
        "lam": Param(3.0, "λ: weight of the regulariser log(1 − ⟨t, p⟩)", low=0.0),
    }
    presets = {
        "cifar10_sym": Preset(
            {"beta": 0.7, "lam": 3.0},
            source="Liu et al. 2020; shengliu66/ELR ELR/config_cifar10.json",
            doc="CIFAR-10, symmetric noise (the defaults)",
        ),
        "cifar10_asym": Preset(
            {"beta": 0.9, "lam": 1.0},
            source="Liu et al. 2020; shengliu66/ELR ELR/config_cifar10_asym.json",
            doc="CIFAR-10, asymmetric noise",
        ),
        "cifar100": Preset(
            {"beta": 0.9, "lam": 7.0},
            source="Liu et al. 2020; shengliu66/ELR ELR/config_cifar100.json (README: also for asymmetric noise)",
            doc="CIFAR-100, symmetric and asymmetric noise",
        ),
    }

    def start(self, ctx: TrainContext) -> None:
        import torch

        self.targets: torch.Tensor | None = None  # (N, C), allocated at the first step (C from the logits)
        device = ctx.device
        known = ctx.data.truth_known.to(device)
        noisy = ctx.data.is_noisy.to(device)
        self._groups = torch.stack([noisy, known & ~noisy])
        self._true = ctx.data.true_labels.to(device)

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        import torch

        with ctx.autocast():
            logits = ctx.model(batch.x).float()
        if self.targets is None:
            self.targets = logits.new_zeros(ctx.data.num_train, logits.shape[1])
        targets = ema_targets(self.targets[batch.index], clamped_probs(logits), self.beta)
        self.targets[batch.index] = targets
        loss = elr_loss(logits, batch.y, targets, self.lam)
        ctx.optimize(loss)
        with torch.no_grad():
            weights = elr_example_gradient(logits.detach(), batch.y, targets, self.lam).abs().sum(1)
        return StepOutput(loss=loss.detach(), logits=logits.detach(), weights=weights)

    def end_epoch(self, ctx: TrainContext, metrics: dict[str, float]) -> dict[str, float]:
        """Share of the truly noisy and truly clean examples (among those visited so far) whose
        target points at the true class; one device read."""
        import torch

        if self.targets is None:
            return {}
        hits = (self.targets.argmax(1) == self._true).float()
        groups = self._groups & (self.targets.sum(1) > 0)
        counts = groups.sum(1)
        shares = (groups.float() @ hits) / counts.clamp_min(1)
        names = ("elr_target_true_noisy", "elr_target_true_clean")
        return {name: share for name, (share, count) in zip(names, torch.stack([shares, counts]).T.tolist()) if count}


@hookimpl
def register_methods(register):
    register(ELR)
