"""GCE: generalised cross entropy L_q = (1 − p_y^q)/q (Zhang & Sabuncu 2018), its truncated
variant, and GCE-DN.

L_q interpolates between CCE (q → 0) and the reduced MAE (q = 1). Its gradient is
p_y^q·(p − e_y), weight 2p_y^q(1 − p_y), emphasis mode ψ = q/(q + 1). q = 0.7 is the value of
every reference implementation (``docs/reference.md`` §3).

The truncated L_q keeps a persistent 0/1 weight v_i per training example (initially 1); its
per-example loss is v_i·L_q(p_y) + (1 − v_i)·L_q(k), so pruned examples (v_i = 0) give no gradient.
From ``prune_start`` of the training on, every ``prune_every`` of it, v_i is refreshed to
[p_y > k] over the whole training set with the checkpoint that was best on a clean validation
split so far (the paper's protocol; the popular unofficial code selects on the test set, which we
never do). Pruning must start once the model fits: if the best checkpoint has p_y <= k everywhere,
every example is pruned and training stops for good (the per-epoch ``pruned`` fraction shows it:
on ``digits`` at 40% noise a first refresh after epoch 5 or 8 pruned 99–100% of the examples,
after epoch 10 70%, after epoch 15 45%, 87% of them noisy).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

from benchsuite import LossOutput, Param, Preset, StepOutput, hookimpl
from benchsuite.needs import Need, clean_validation
from benchsuite_plugins.methods.weighting import LOG2, DerivativeLoss, TargetProbLoss, TargetProbs, target_probs

if TYPE_CHECKING:
    import torch

    from benchsuite.engine import TrainContext
    from benchsuite.task import Batch

Q = Param(0.7, "exponent q: q → 0 is CCE, q = 1 the reduced MAE", low=0.0, high=1.0, low_open=True)


def gce_loss(log_p: torch.Tensor, q: float) -> torch.Tensor:
    """(1 − p^q)/q from log p, without cancellation."""
    import torch

    return -torch.expm1(q * log_p) / q


def gce_log_weight(t: TargetProbs, q: float) -> torch.Tensor:
    """log of 2p^q(1 − p), the weight of L_q."""
    return LOG2 + q * t.log_p + t.log_q


class GCE(TargetProbLoss):
    name = "gce"
    summary = "generalised cross entropy (1 − p_y^q)/q, mean over the batch"
    parameters = {"q": Q}

    def example_loss(self, t: TargetProbs) -> torch.Tensor:
        return gce_loss(t.log_p, self.q)

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return gce_log_weight(t, self.q)

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * p**self.q * (1 - p)


class GCEDN(DerivativeLoss):
    """GCE's weights 2p^q(1 − p), derivative-normalised."""

    name = "gce_dn"
    summary = "generalised cross entropy with derivative normalisation (DM paper's GCE-DN)"
    parameters = {"q": Q}

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return gce_log_weight(t, self.q)

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * p**self.q * (1 - p)

    def reported_loss(self, t: TargetProbs) -> torch.Tensor:
        return gce_loss(t.log_p, self.q)


def _schedule_source(dataset: str, start: int, epochs: int) -> str:
    return (
        f"GCE paper's {dataset} schedule as run by AlanChou/Truncated-Loss (main.py, README): "
        f"{epochs} epochs, pruning from epoch {start}, every 10 epochs"
    )


class GCETruncated(GCE):
    """Truncated L_q with validation-selected pruning: a loss method with its own ``train_step``,
    which looks up each example's 0/1 weight by ``batch.index``."""

    name = "gce_truncated"
    summary = "truncated L_q: examples with p_y <= k (on the best-on-validation checkpoint) are pruned"
    state_attributes = ("_keep", "_best_model", "_best_val", "_diagnostics")
    parameters = {
        "q": Q,
        "k": Param(
            0.5, "truncation threshold on p_y: examples with p_y <= k are pruned",
            low=0.0, high=1.0, low_open=True, high_open=True,
        ),
        "val_fraction": Param(
            0.1, "clean validation split carved from the training set to select the pruning checkpoint",
            low=0.0, high=0.5, low_open=True,
        ),
        "prune_start": Param(1 / 3, "fraction of the training epochs after which pruning starts", low=0.0, high=1.0),
        "prune_every": Param(1 / 12, "fraction of the training epochs between two refreshes", low=0.0, high=1.0, low_open=True),
    }
    presets = {
        "cifar10": Preset({"prune_start": 40 / 120, "prune_every": 10 / 120}, source=_schedule_source("CIFAR-10", 40, 120)),
        "cifar100": Preset({"prune_start": 80 / 150, "prune_every": 10 / 150}, source=_schedule_source("CIFAR-100", 80, 150)),
    }

    def needs(self) -> tuple[Need, ...]:
        return (clean_validation(self.val_fraction),)

    def compute(self, logits: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None) -> LossOutput:
        """Truncated loss of the batch; ``keep`` holds the examples' 0/1 weights (default: all 1)."""
        import torch

        t = target_probs(logits, targets)
        with torch.no_grad():
            weights = gce_log_weight(t.detach(), self.q).exp()
        loss = gce_loss(t.log_p, self.q)
        if keep is not None:
            loss = torch.where(keep, loss, (1 - self.k**self.q) / self.q)
            weights = weights * keep
        return LossOutput(loss.mean(), weights)

    def start(self, ctx: "TrainContext") -> None:
        import torch

        epochs = ctx.recipe.num_epochs(ctx.steps_per_epoch)
        self._first_refresh = max(1, round(self.prune_start * epochs))
        self._refresh_every = max(1, round(self.prune_every * epochs))
        self._last_epoch = epochs
        self._keep = torch.ones(ctx.data.num_train, dtype=torch.bool, device=ctx.device)
        self._best_model = copy.deepcopy(ctx.model)
        self._best_val = -math.inf
        self._diagnostics: dict[str, float] = {"pruned": 0.0}

    def train_step(self, ctx: "TrainContext", batch: "Batch") -> StepOutput:
        with ctx.autocast():
            logits = ctx.model(batch.x)
        out = self.compute(logits.float(), batch.y, keep=self._keep[batch.index])
        ctx.optimize(out.loss)
        return StepOutput(loss=out.loss.detach(), logits=logits.detach(), weights=out.weights)

    def end_epoch(self, ctx: "TrainContext", metrics: dict[str, float]) -> dict[str, float]:
        if "val_acc" not in metrics:
            raise RuntimeError(
                f"{self.name} selects its pruning checkpoint on validation accuracy, but the task reported no "
                "'val_acc'; the task's prepare() must carve the clean_validation need's split (prepare_in_memory does) "
                "and its evaluate() must report val_acc"
            )
        if metrics["val_acc"] > self._best_val:
            self._best_val = metrics["val_acc"]
            self._best_model.load_state_dict(ctx.model.state_dict())
        since = ctx.epoch - self._first_refresh
        if since >= 0 and since % self._refresh_every == 0 and ctx.epoch < self._last_epoch:
            self._refresh(ctx)
        return dict(self._diagnostics)

    def _refresh(self, ctx: "TrainContext") -> None:
        """v_i = [p_y > k] over the training set, with the best-on-validation checkpoint in eval mode."""
        import torch

        with torch.no_grad():
            model = self._best_model.eval()
            log_k = math.log(self.k)
            for batch in ctx.data.train.eval_batches(ctx.recipe.eval_batch_size):
                with ctx.autocast():
                    logits = model(batch.x)
                self._keep[batch.index] = target_probs(logits.float(), batch.y).log_p > log_k
            pruned = ~self._keep.cpu()
            noisy = ctx.data.is_noisy
            self._diagnostics = {"pruned": pruned.float().mean().item()}
            if pruned.any():
                self._diagnostics["pruned_noisy"] = (pruned & noisy).sum().item() / pruned.sum().item()
            if noisy.any():
                self._diagnostics["noisy_pruned"] = (pruned & noisy).sum().item() / noisy.sum().item()


@hookimpl
def register_methods(register):
    register(GCE)
    register(GCEDN)
    register(GCETruncated)
