"""Co-teaching: two networks, each trained on the small-loss examples its peer selects.

Han, Yao, Yu, Niu, Xu, Hu, Tsang & Sugiyama, "Co-teaching: Robust training of deep neural
networks with extremely noisy labels", NeurIPS 2018; official code bhanML/Co-teaching
(``main.py``, ``loss.py``).

Implemented (the paper's Algorithm 1): two networks f and g of the task's architecture,
initialised independently (g from ``ctx.new_model()``, seeded from the cell's generator). On every
batch each computes its per-example cross entropy and keeps its ⌊R(T)·B⌋ smallest-loss examples;
f then descends the mean cross entropy over the examples *g* kept, and g over those *f* kept
(the cross update). The kept fraction follows the paper's schedule
R(T) = 1 − min(T/T_k · τ, τ), with T the epochs completed before the current one: every example
in the first epoch, then linearly fewer until τ of each batch is dropped from epoch T_k + 1 on.

Departures, each deliberate:

* τ is the ``forget_rate`` parameter; unset, it is the cell's nominal noise rate, as the paper's
  experiments assume the noise rate known and the official code defaults the forget rate to it. That is knowledge other methods do not get; under real noise
  (noise kind ``none``, e.g. Clothing1M) the nominal rate is 0 and nothing is dropped, so give τ.
* Both networks use the task's recipe (optimiser, learning rate, schedule), as every method on a
  board does, not the paper's Adam at 0.001 decayed linearly from epoch 80 of 200.
* The schedule's exponent c (the c of T^c in the code's ``--exponent``) is fixed at 1, the
  code's default and the paper's R(T).
* The first network f (``ctx.model``) is the one evaluated; the code logs both networks'
  accuracies. Per epoch the curves get ``coteach_forget_rate`` and, where the truth is known,
  the label precision of each network's kept examples (the measure of the paper's label-precision
  plots).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchsuite import Method, Param, Preset, StepOutput, hookimpl
from benchsuite.task import Batch

if TYPE_CHECKING:
    import torch

    from benchsuite.engine import TrainContext


def remember_rate(epochs_done: int, forget_rate: float, num_gradual: int) -> float:
    """R(T) = 1 − min(T/T_k · τ, τ): the fraction of each batch kept after T completed epochs."""
    return 1.0 - forget_rate * min(epochs_done / num_gradual, 1.0)


def small_loss_indices(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """Positions of the ``keep`` smallest losses (ties in batch order, so runs are repeatable)."""
    import torch

    return torch.argsort(losses, stable=True)[:keep]


class CoTeaching(Method):
    """Co-teaching (see the module docstring): two networks cross-trained on small-loss examples."""

    name = "coteaching"
    summary = "two networks, each trained on the small-loss examples of its peer (Co-teaching)"
    in_default_grid = False
    state_attributes = ("peer", "peer_optimizer", "peer_schedule", "_sums", "_forget")
    parameters = {
        "forget_rate": Param(
            None,
            "τ: fraction of each batch finally dropped as large-loss; None: the cell's nominal noise rate",
            type=float,
            low=0.0,
            high=1.0,
            high_open=True,
            nullable=True,
        ),
        "num_gradual": Param(10, "T_k: epochs over which the dropped fraction rises linearly from 0 to τ", low=1),
    }
    presets = {
        "paper": Preset(
            {"forget_rate": None, "num_gradual": 10},
            source="Han et al. 2018, Section 4 (T_k = 10, τ = ε, the noise rate); bhanML/Co-teaching main.py",
            doc="the paper's schedule; τ is the cell's noise rate",
        ),
        "tk5": Preset(
            {"num_gradual": 5},
            source="bhanML/Co-teaching main.py (--num_gradual: 'can be 5, 10, 15')",
            doc="a faster ramp of the dropped fraction",
        ),
        "tk15": Preset(
            {"num_gradual": 15},
            source="bhanML/Co-teaching main.py (--num_gradual: 'can be 5, 10, 15')",
            doc="a slower ramp of the dropped fraction",
        ),
    }

    def start(self, ctx: TrainContext) -> None:
        import torch

        self.tau = ctx.data.noise.rate if self.forget_rate is None else self.forget_rate
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"coteaching: forget rate τ = {self.tau} (the cell's noise rate) must be in [0, 1); set forget_rate")
        self.peer = ctx.new_model().train()
        self.peer_optimizer, self.peer_schedule = self.configure_optimizer(self.peer, ctx.recipe, ctx.total_steps)
        device = ctx.device
        self._clean = (ctx.data.truth_known & ~ctx.data.is_noisy).to(device)
        self._known = ctx.data.truth_known.to(device)
        self._sums = torch.zeros(2, 2, device=device)  # per network: truly clean kept, kept with known truth
        self._forget = 0.0

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        import torch
        import torch.nn.functional as F

        with ctx.autocast():
            logits = ctx.model(batch.x).float()
            logits_peer = self.peer(batch.x).float()
        losses = F.cross_entropy(logits, batch.y, reduction="none")
        losses_peer = F.cross_entropy(logits_peer, batch.y, reduction="none")
        rate = remember_rate(ctx.step // ctx.steps_per_epoch, self.tau, self.num_gradual)
        self._forget = 1.0 - rate
        keep = max(1, int(rate * len(batch.y)))
        kept = small_loss_indices(losses.detach(), keep)
        kept_peer = small_loss_indices(losses_peer.detach(), keep)
        loss = losses[kept_peer].mean()  # f learns from what g kept ...
        ctx.optimize(loss)
        ctx.optimize(losses_peer[kept].mean(), self.peer_optimizer)  # ... and g from what f kept
        if self.peer_schedule is not None:
            self.peer_schedule.step()

        chosen = torch.stack([batch.index[kept], batch.index[kept_peer]])
        self._sums += torch.stack([self._clean[chosen].sum(1), self._known[chosen].sum(1)], dim=1)
        # f's weights: the L1 norm 2(1 − p_y) of its cross-entropy gradient where g kept the example, else 0
        weights = torch.zeros_like(losses).index_copy_(0, kept_peer, -2.0 * torch.expm1(-losses.detach()[kept_peer]))
        return StepOutput(loss=loss.detach(), logits=logits.detach(), weights=weights)

    def end_epoch(self, ctx: TrainContext, metrics: dict[str, float]) -> dict[str, float]:
        """The epoch's forget rate and, where the truth is known, the share of truly clean examples
        among those each network kept (f's selection trains g and vice versa); one device read."""
        (clean, known), (clean_peer, known_peer) = self._sums.tolist()
        self._sums.zero_()
        row = {"coteach_forget_rate": self._forget}
        if known:
            row["coteach_precision"] = clean / known
        if known_peer:
            row["coteach_precision_peer"] = clean_peer / known_peer
        return row


@hookimpl
def register_methods(register):
    register(CoTeaching)
