"""Losses as example weighting: the one place where per-example weights, the rescaled gradient and
the derivative normalisation are defined.

Definitions (DM paper §3, Eqs. 1–7; IMAE Eqs. 19–22; ``docs/reference.md`` §1, §4):

* **Weight.** An example's weight (emphasis) ``w_i`` is the L1 norm of the gradient of its own
  loss ``ℓ_i`` w.r.t. its logits, before any batch reduction. For a loss of ``p_y`` alone the
  gradient is ``c(p_y)·(p − e_y)`` and ``w = 2(1 − p_y)·c(p_y)``: CCE 2(1 − p), reduced MAE
  2p(1 − p), reduced MSE 4p(1 − p)², GCE 2p^q(1 − p). Methods report these (detached) in
  ``LossOutput.weights``, so the engine's ``weight_focus`` and ``weight_var`` (both invariant to a
  common scale) compare emphasis across methods.
* **Rescaled gradient.** Derivative manipulation (DM, GR, IMAE) prescribes the weight directly:
  ``∇_z ℓ_i = w_i · u_i`` with the unit-L1 direction ``u_i = (p − e_y) / (2(1 − p_y))``, the
  weight held constant (no gradient flows through it). The textbook surrogate is
  ``stopgrad(w_i / (2(1 − p_y))) · CE_i``; we use the gradient-identical
  ``stopgrad(w_i) · ½·log((1 − p_y)/p_y)``, since ``∇_z ½·log((1 − p_y)/p_y) = u_i`` exactly, and
  it never divides by ``1 − p_y`` (which underflows to 0 for confident examples).
* **Derivative normalisation** (``batch_sum``, the authors' code, ProSelfLC-AT 6e6138a and
  DeepCriticalLearning): example i's gradient is ``c_i·(p − e_y)`` with
  ``c_i = w_i / (2(1 − p_y,i) + ε) / Σ_j w_j``, i.e. ``w_i·sat_i·u_i / Σ_j w_j`` with the saturation
  ``sat_i = 2(1 − p_y,i) / (2(1 − p_y,i) + ε)``. The denominator sums the *raw* weights, so the
  batch's gradient L1 mass ``Σ_i w_i·sat_i / Σ_j w_j`` is 1 while examples are far from fitted and
  vanishes once the whole batch is (1 − p_y ≪ ε): at a logit margin of 30 over 9 other classes it is
  1.7e-4, at 60 1.6e-17. Methods without an ε (the loss's ``*_dn`` variants) have ``sat = 1`` and
  unit mass. ``mean`` divides by the batch size instead of ``Σ_j w_j``.

Numerics: ``log p_y = z_y − LSE(z)`` and ``log(1 − p_y) = LSE_{j≠y}(z) − LSE(z)``; the latter is
accurate even when ``1 − p_y`` is far below float32's epsilon, where ``1 − softmax(z)_y`` (and
even ``−expm1(log p_y)``) round to 0. Everything is finite for any finite logits.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchsuite.method import LossMethod, LossOutput
from benchsuite.params import Param

if TYPE_CHECKING:
    import torch

    from benchsuite.method import BatchReduction

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class TargetProbs:
    """``log p_y`` and ``log(1 − p_y)`` of a batch (differentiable), with the logits they came from."""

    logits: torch.Tensor
    targets: torch.Tensor
    target_mask: torch.Tensor  # (N, C) bool, True at the target class
    log_p: torch.Tensor
    log_q: torch.Tensor

    @property
    def p(self) -> torch.Tensor:
        return self.log_p.exp()

    @property
    def one_minus_p(self) -> torch.Tensor:
        """1 − p_y, accurate to full relative precision."""
        return self.log_q.exp()

    def detach(self) -> "TargetProbs":
        return TargetProbs(
            self.logits.detach(), self.targets, self.target_mask, self.log_p.detach(), self.log_q.detach()
        )


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits as float32 (losses are computed in at least float32)."""
    import torch

    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def target_probs(logits: torch.Tensor, targets: torch.Tensor) -> TargetProbs:
    """``log p_y`` and ``log(1 − p_y)`` of ``logits`` (N, C ≥ 2); half precision is upcast."""
    import torch

    logits = upcast(logits)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"expected logits of shape (N, C) with C >= 2, got {tuple(logits.shape)}")
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, targets[:, None], True)
    lse = logits.logsumexp(1)
    log_p = logits.gather(1, targets[:, None]).squeeze(1) - lse
    log_q = logits.masked_fill(mask, -math.inf).logsumexp(1) - lse
    return TargetProbs(logits, targets, mask, log_p, log_q)


def unit_direction_potential(t: TargetProbs) -> torch.Tensor:
    """``½·log((1 − p_y)/p_y)`` per example: its gradient w.r.t. the logits is
    ``(p − e_y) / (2(1 − p_y))``, the unit-L1 direction shared by every loss of ``p_y``."""
    return 0.5 * (t.log_q - t.log_p)


def rescaled_gradient_loss(t: TargetProbs, coefficients: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient is ``Σ_i coefficients_i · u_i`` and whose value is ``value``.

    ``coefficients`` are held constant (detached); ``value`` is only reported (detached)."""
    surrogate = (coefficients.detach() * unit_direction_potential(t)).sum()
    return surrogate + (value.detach() - surrogate.detach())


def log_saturation(t: TargetProbs, eps: float) -> torch.Tensor | float:
    """log of ``sat = 2(1 − p_y)/(2(1 − p_y) + ε)``: the factor by which the authors' ε in the
    denominator ``w/(2(1 − p_y) + ε)`` shrinks an example's gradient; ~1 unless 1 − p_y ≲ ε, then → 0."""
    import torch

    if eps == 0:
        return 0.0
    return torch.nn.functional.logsigmoid(LOG2 + t.log_q - math.log(eps))


def saturation(p: torch.Tensor, eps: float) -> torch.Tensor:
    """``2(1 − p)/(2(1 − p) + ε)`` in plain arithmetic (for checks and plots)."""
    return 2 * (1 - p) / (2 * (1 - p) + eps)


def normalised_coefficients(log_weights: torch.Tensor, log_applied: torch.Tensor, normalize: str) -> torch.Tensor:
    """Per-example gradient scale along the unit direction: ``w_i·sat_i / Σ_j w_j`` (``batch_sum``)
    or ``w_i·sat_i / N`` (``mean``), from ``log w`` and ``log(w·sat)``.

    ``batch_sum`` is computed as ``exp(log(w_i·sat_i) − LSE_j log w_j)``: never overflows (each term is
    at most 1), never 0/0, and a saturated batch's coefficients go to 0 instead of being
    renormalised back to a total of 1."""
    if normalize == "batch_sum":
        return (log_applied - log_weights.logsumexp(0)).exp()
    if normalize == "mean":
        return log_applied.exp() / len(log_applied)
    raise ValueError(f"unknown normalisation {normalize!r}; use 'batch_sum' or 'mean'")


def textbook_gradient(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``w_i / (2(1 − p_y)) · (p − e_y)`` computed the plain way (for checks in float64)."""
    import torch

    p = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(targets, logits.shape[1]).to(p.dtype)
    p_y = p.gather(1, targets[:, None])
    return weights[:, None] / (2 * (1 - p_y)) * (p - onehot)


class TargetProbLoss(LossMethod):
    """A loss of ``p_y`` alone, averaged over the batch; reports its weights.

    Subclasses give the per-example loss (computed stably from ``TargetProbs``; autograd yields the
    gradient), ``log_weight`` (the stable log of its weight, used for reporting and by the ``*_dn``
    variants) and ``weight(p)`` (the textbook closed form, used by the contract checks)."""

    @abc.abstractmethod
    def example_loss(self, t: TargetProbs) -> torch.Tensor:
        """Per-example loss ℓ_i (differentiable)."""

    @abc.abstractmethod
    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        """log w_i, the log L1 norm of ∇_z ℓ_i, from detached ``TargetProbs``."""

    @abc.abstractmethod
    def weight(self, p: torch.Tensor) -> torch.Tensor:
        """w(p_y) in closed form (plain arithmetic; for checks and plots)."""

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        import torch

        t = target_probs(logits, targets)
        with torch.no_grad():
            weights = self.log_weight(t.detach()).exp()
        return LossOutput(self.example_loss(t).mean(), weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p_y = logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
        return textbook_gradient(logits, targets, self.weight(p_y))


NORMALIZE = Param(
    "batch_sum",
    "derivative normalisation: divide the batch gradient by the batch sum of the raw weights (the authors' "
    "code, whose runs the papers publish) or by the batch size (the GR and IMAE papers' text)",
    choices=("batch_sum", "mean"),
)


class DerivativeLoss(LossMethod):
    """A method that prescribes its per-example weight ``w(p_y)`` and rescales the gradient to it.

    Example i's gradient is ``w_i·sat_i·u_i``, divided by ``Σ_j w_j`` (``normalize = "batch_sum"``,
    the ``weight_sum`` batch reduction) or by the batch size (``"mean"``); ``sat_i`` is the
    saturation of the authors' ε (``eps``; subclasses without an ``eps`` parameter have none,
    ``sat = 1``) and subclasses without a ``normalize`` parameter use ``batch_sum``. The reported
    weights are ``w_i·sat_i``, each example's own gradient L1 norm. The loss *value* is the batch
    mean of ``reported_loss`` (CCE by default): a diagnostic only."""

    @abc.abstractmethod
    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        """log w_i, the prescribed weight, from detached ``TargetProbs`` (stable: finite for any
        finite logits)."""

    @abc.abstractmethod
    def weight(self, p: torch.Tensor) -> torch.Tensor:
        """w(p_y) in closed form (plain arithmetic; for checks and plots)."""

    def reported_loss(self, t: TargetProbs) -> torch.Tensor:
        """Per-example loss whose batch mean is reported as the loss value (cross entropy)."""
        return -t.log_p

    @property
    def normalization(self) -> str:
        return getattr(self, "normalize", "batch_sum")

    @property
    def epsilon(self) -> float:
        """The authors' ε of ``w/(2(1 − p_y) + ε)`` (0: none)."""
        return getattr(self, "eps", 0.0)

    @property
    def batch_reduction(self) -> "BatchReduction":  # type: ignore[override]
        return "weight_sum" if self.normalization == "batch_sum" else "mean"

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        import torch

        t = target_probs(logits, targets)
        with torch.no_grad():
            detached = t.detach()
            log_w = self.log_weight(detached)
            log_applied = log_w + log_saturation(detached, self.epsilon)
            coefficients = normalised_coefficients(log_w, log_applied, self.normalization)
            value = self.reported_loss(detached).mean()
        return LossOutput(rescaled_gradient_loss(t, coefficients, value), log_applied.exp())

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p_y = logits.softmax(1).gather(1, targets[:, None]).squeeze(1)
        return textbook_gradient(logits, targets, self.weight(p_y) * saturation(p_y, self.epsilon))

    def normalising_weights(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The raw weights ``w(p_y)`` whose batch sum divides the gradient under ``batch_sum``."""
        return self.weight(logits.softmax(1).gather(1, targets[:, None]).squeeze(1))

