"""Forward loss correction (Patrini, Rozza, Menon, Nock & Qu, "Making deep neural networks robust to
label noise: a loss correction approach", CVPR 2017).

With T_ij = P(noisy label j | true class i), the model's clean posterior p is pushed through the
noise before the loss: ℓ = −log (Tᵀp)_ỹ = −log Σ_i p_i·T_iỹ (the paper's Eq. for the forward
correction; computed as −logsumexp_i(log p_i + log T_iỹ), finite for any logits). Its gradient per
example is p − r with r_i = p_i·T_iỹ / Σ_k p_k·T_kỹ, the posterior of the true class given the
noisy label; the reported weight is ‖p − r‖₁. The model evaluated is the uncorrected one (p).

Where T comes from (``transition``):

* ``estimate`` (default, the paper's anchor-point estimator): the first ``warmup`` fraction of the cell's
  steps trains the model with plain CCE; then every training example is predicted (eval mode, no
  augmentation) and, for each class i, the anchor x̄_i is the example with the highest p_i, or,
  with ``anchor_quantile`` q < 1, the highest p_i strictly below the q-quantile of p_i over the
  training set (the authors' code's outlier filter, q = 0.97, which it uses everywhere but on
  CIFAR-100); T̂_i· = p(x̄_i). Then the model is reset to its initial weights (its optimiser state
  cleared) and trained from scratch with the corrected loss for the remaining steps. The budget
  split: each phase runs the task recipe's schedule compressed to its own steps (milestones are
  fractions), so both models see a whole schedule. The code instead trains the CCE model for a
  full budget (keeping its best checkpoint on a noisy validation split) and the corrected one for
  another: twice a cell's budget. Default ``warmup`` 0.25, by measurement on ``digits`` (3 seeds,
  symmetric noise 0.2-0.8, one thread): the estimated T was closer to the realised one (mean row
  L1 distance 0.18-0.27) than after a warm-up of 0.5 (0.23-0.40) or 0.1 (0.24-0.42); final test
  accuracy within one standard deviation of the 0.5 split's at 0.2-0.6 and higher at 0.8 (30% vs
  22%): a shorter warm-up memorises less of the noise the estimator has to see through. Too short
  a warm-up fails the other way: on ``digits`` with a 4-epoch budget (one warm-up epoch) every row
  of T̂ is close to the same unfitted prediction, the corrected loss has almost no gradient, and
  the model stays at chance (12 epochs: 84%). The
  curves show the CCE model before the switch (diagnostic ``forward_phase`` 0) and the corrected
  one after (1); a best-epoch figure may come from either. Under the engine's ``eval_ema`` the
  average runs on across the switch: with its ramped decay (1 + t)/(10 + t), the warm-up model's
  share of the averaged weights has fallen below 1e-4 by the end of a default ``digits`` cell.
* ``oracle``: the realised T, counted from the true and the noisy labels of the training set
  (where the truth is known), from the first step: the paper's "forward T" rows with the true T.
* ``symmetric``: the T of symmetric noise at ``flip_rate``, (1 − ρ)·I + ρ/(C − 1)·(J − I), for any
  number of classes: a given T.

Diagnostic ``transition_error`` (when the truth is known): the mean over classes of the L1
distance between the rows of the T in use and of the realised T.

Not implemented: the paper's backward correction (the loss vector multiplied by T⁻¹) and the
code's optional clipping of small entries of T̂.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from benchsuite import LossMethod, LossOutput, Param, Preset, StepOutput, hookimpl
from benchsuite.task import Batch, Recipe
from benchsuite_plugins.methods.weighting import upcast

if TYPE_CHECKING:
    import torch
    from torch import nn

    from benchsuite.engine import TrainContext

_CODE = "giorgiop/loss-correction experiment.py and models.py (NoiseEstimator)"


def anchor_transition(log_probs: torch.Tensor, quantile: float = 1.0) -> torch.Tensor:
    """log T̂ (C, C) from the log-probabilities (N, C) a model predicts on the training set: row i
    is the prediction at class i's anchor, the example with the highest p_i (``quantile`` = 1) or
    the highest p_i strictly below the ``quantile``-quantile of column i ('higher' interpolation:
    the value of rank ⌈q·(N − 1)⌉ in ascending order)."""
    import torch

    with torch.no_grad():
        probs = log_probs.exp()
        anchors = probs.argmax(0)
        if quantile < 1.0:
            rank = math.ceil(quantile * (len(probs) - 1))
            threshold = probs.kthvalue(rank + 1, dim=0).values
            below = probs.masked_fill(probs >= threshold, -1.0)
            anchors = torch.where(below.max(0).values >= 0, below.argmax(0), anchors)
        rows = log_probs[anchors]
        return rows - rows.logsumexp(1, keepdim=True)  # rows sum to 1 (the code's row normalisation)


def realised_transition(true: torch.Tensor, noisy: torch.Tensor, classes: int) -> torch.Tensor:
    """T counted from label pairs: T_ij = #(true i, noisy j) / #(true i); a class never seen keeps
    its identity row."""
    import torch

    counts = torch.bincount(true * classes + noisy, minlength=classes * classes).view(classes, classes).double()
    totals = counts.sum(1, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp_min(1), torch.eye(classes, dtype=torch.float64))


def symmetric_transition(rate: float, classes: int) -> torch.Tensor:
    import torch

    off = rate / (classes - 1)
    return torch.full((classes, classes), off, dtype=torch.float64).fill_diagonal_(1.0 - rate)


class RestartedSchedule:
    """The recipe's per-step schedule run twice: over steps [0, switch), then over [switch, total)."""

    def __init__(self, optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int, switch: int) -> None:
        self.optimizer, self.recipe, self.total_steps, self.switch = optimizer, recipe, total_steps, switch
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps < self.switch:
            factor = self.recipe.lr_factor(self.steps, self.switch)
        else:
            factor = self.recipe.lr_factor(self.steps - self.switch, self.total_steps - self.switch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor


class ForwardCorrection(LossMethod):
    """See the module docstring. Until T is known (the warm-up of ``estimate``) the loss is CCE."""

    name = "forward"
    summary = "forward loss correction −log(Tᵀp)_y, T given or estimated from anchor points (Patrini et al. 2017)"
    in_default_grid = False
    parameters = {
        "transition": Param(
            "estimate",
            "estimate: from a CCE model's anchor points after a warm-up; oracle: the realised T of the "
            "training labels; symmetric: the T of symmetric noise at flip_rate",
            choices=("estimate", "oracle", "symmetric"),
        ),
        "warmup": Param(
            0.25, "estimate: fraction of the cell's steps that train the CCE model T is estimated from",
            low=0.0, high=1.0, low_open=True, high_open=True,
        ),
        "anchor_quantile": Param(
            0.97, "estimate: anchors are the highest p_i below this quantile (1: the highest p_i)",
            low=0.0, high=1.0, low_open=True,
        ),
        "flip_rate": Param(0.0, "symmetric: the flip rate ρ of the given T", low=0.0, high=1.0, high_open=True),
    }
    presets = {
        "patrini": Preset({"anchor_quantile": 0.97}, source=f"Patrini et al. 2017 (anchor-point estimator) and {_CODE}: 97th percentile filter"),
        "patrini_cifar100": Preset(
            {"anchor_quantile": 1.0}, source=f"{_CODE}: no outlier filter on CIFAR-100 (the plain argmax of the paper's estimator)"
        ),
        "oracle": Preset({"transition": "oracle"}, source="Patrini et al. 2017, the experiments' 'forward T' rows (the true T given to the loss)"),
    }

    #: The estimated T appears at the switch step.
    state_attributes = ("_log_t",)

    def __init__(self, preset: str | None = None, **values: Any) -> None:
        super().__init__(preset, **values)
        self._log_t: torch.Tensor | None = None
        self._switch = 0
        self._true_t: torch.Tensor | None = None

    # -- the loss -------------------------------------------------------------------------------

    def set_transition(self, transition: torch.Tensor) -> None:
        """Use the row-stochastic ``transition`` (C, C) from now on."""
        import torch

        t = torch.as_tensor(transition, dtype=torch.float64)
        if t.dim() != 2 or t.shape[0] != t.shape[1] or (t < 0).any() or not torch.allclose(t.sum(1), torch.ones(len(t), dtype=t.dtype)):
            raise ValueError(f"forward: a transition matrix must be square, non-negative, rows summing to 1; got {t}")
        self._log_t = t.log()

    def log_transition(self, classes: int, like: torch.Tensor) -> torch.Tensor | None:
        """log T for ``classes`` classes on ``like``'s device and dtype (``None``: plain CCE)."""
        if self.transition == "symmetric":
            return symmetric_transition(self.flip_rate, classes).log().to(like)
        if self._log_t is None:
            return None
        if len(self._log_t) != classes:
            raise ValueError(f"forward: the transition matrix is {len(self._log_t)}×{len(self._log_t)} but the logits have {classes} classes")
        return self._log_t.to(like)

    def _posterior(self, log_p: torch.Tensor, targets: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
        """log p_i + log T_iỹ, per example (N, C)."""
        return log_p + log_t.T[targets]

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        import torch
        import torch.nn.functional as F

        logits = upcast(logits)
        log_t = self.log_transition(logits.shape[1], logits)
        with torch.no_grad():
            weights = self.example_gradient(logits.detach(), targets).abs().sum(1)
        if log_t is None:
            return LossOutput(F.cross_entropy(logits, targets), weights)
        joint = self._posterior(logits.log_softmax(1), targets, log_t)
        return LossOutput(-joint.logsumexp(1).mean(), weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        logits = upcast(logits)
        log_t = self.log_transition(logits.shape[1], logits)
        if log_t is None:
            return logits.softmax(1) - F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        return logits.softmax(1) - self._posterior(logits.log_softmax(1), targets, log_t).softmax(1)

    # -- where T comes from ---------------------------------------------------------------------

    def privileged_data(self) -> dict[str, Any]:
        """The oracle T is counted from the training set's clean labels: privileged, and marked."""
        data = super().privileged_data()
        if self.transition == "oracle":
            data["noise_transition"] = "true T from the clean training labels"
        return data

    def configure_optimizer(self, model: nn.Module, recipe: Recipe, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """The recipe's optimiser; under ``estimate`` its schedule restarts at the switch."""
        optimizer, scheduler = super().configure_optimizer(model, recipe, total_steps)
        if self.transition != "estimate":
            return optimizer, scheduler
        self._switch = min(max(1, round(self.warmup * total_steps)), max(1, total_steps - 1))
        return optimizer, (None if scheduler is None else RestartedSchedule(optimizer, recipe, total_steps, self._switch))

    def start(self, ctx: TrainContext) -> None:
        data = ctx.data
        known = data.truth_known
        classes = self._num_classes(ctx)
        self._true_t = (
            realised_transition(data.true_labels[known].cpu(), data.noisy_labels[known].cpu(), classes) if known.any() else None
        )
        if self.transition == "oracle":
            if self._true_t is None:
                raise ValueError("forward: transition = 'oracle' needs training examples whose true label is known")
            self.set_transition(self._true_t)
        elif self.transition == "estimate":
            self._log_t = None
            self._initial = copy.deepcopy(ctx.model.state_dict())

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        if self.transition == "estimate" and self._log_t is None and ctx.step >= self._switch:
            self._log_t = anchor_transition(self._training_log_probs(ctx), self.anchor_quantile).double().cpu()
            ctx.model.load_state_dict(self._initial)
            ctx.optimizer.state.clear()
        return super().train_step(ctx, batch)

    def end_epoch(self, ctx: TrainContext, metrics: dict[str, float]) -> dict[str, float]:
        row = {}
        if self.transition == "estimate":
            row["forward_phase"] = float(self._log_t is not None)
        current = self._current_transition(ctx)
        if current is not None and self._true_t is not None:
            row["transition_error"] = (current - self._true_t).abs().sum(1).mean().item()
        return row

    def _current_transition(self, ctx: TrainContext) -> torch.Tensor | None:
        if self.transition == "symmetric":
            return symmetric_transition(self.flip_rate, len(self._true_t)) if self._true_t is not None else None
        return None if self._log_t is None else self._log_t.exp()

    @staticmethod
    def _training_log_probs(ctx: TrainContext) -> torch.Tensor:
        """log p of every training example under the current model (eval mode, no augmentation)."""
        import torch

        model = ctx.model
        model.eval()
        try:
            with torch.no_grad(), ctx.autocast():
                chunks = [model(b.x).float().log_softmax(1) for b in ctx.data.train.eval_batches(ctx.recipe.eval_batch_size)]
        finally:
            model.train()
        return torch.cat(chunks)

    @staticmethod
    def _num_classes(ctx: TrainContext) -> int:
        """The model's output width, read from one training example in eval mode."""
        import torch

        first = next(iter(ctx.data.train.eval_batches(1)))
        model = ctx.model
        model.eval()
        try:
            with torch.no_grad():
                return model(first.x[:1]).shape[1]
        finally:
            model.train()


@hookimpl
def register_methods(register):
    register(ForwardCorrection)
