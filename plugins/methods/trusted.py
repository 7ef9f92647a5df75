"""Trusted-set baselines: what plain cross entropy makes of the clean data a privileged method gets.

A method that draws on a clean trusted subset (IEG's probe set: ``probe_per_class`` examples of
every class, held out of the noisy training set before the noise is injected) has to beat what
cross entropy does with the same examples, or the trusted data, not the method, explains its
numbers. Two baselines, each with IEG's trusted-set parameter (same name, default and draw:
the task draws the subset from the run's seed, so at equal ``probe_per_class`` and seed the three
methods hold out the very same examples):

* ``trusted_only``: CCE on the trusted set alone; the noisy labels are never used.
* ``cce_trusted``: CCE on the noisy set plus the trusted set.

Both train for the cell's budget in steps, as every method does (one step per noisy batch the
engine hands them), and are scored like every other method, on the trained model.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from benchsuite import Method, Param, StepOutput, hookimpl
from benchsuite.needs import TRUSTED_SET, Need, trusted_set
from benchsuite.task import Batch
from benchsuite_plugins.methods.ieg import stateless_forward

if TYPE_CHECKING:
    import torch

    from benchsuite.engine import TrainContext

#: IEG's trusted-set size parameter, declared the same way so a grid varies all three alike.
PROBE_PER_CLASS = Param(
    10, "trusted examples per class, held out of the noisy training set (IEG's probe_per_class)", low=1
)


class TrustedOnly(Method):
    """CCE on the trusted set alone: one trusted batch (min(batch size, trusted size) examples,
    reshuffled every pass) per step, for the cell's number of steps. On ``digits`` with 10 per
    class that is the whole 100-example set every step, 540 times.

    The engine measures memorisation from each step's predictions on the noisy batch it hands the
    method; those come from a forward without a graph that leaves BatchNorm's running statistics
    untouched (IEG's ``stateless_forward``), so the noisy inputs and labels influence nothing that
    is trained or evaluated."""

    name = "trusted_only"
    summary = "cross entropy on the clean trusted set alone (baseline for methods that use one)"
    parameters = {"probe_per_class": PROBE_PER_CLASS}

    def needs(self) -> tuple[Need, ...]:
        return (trusted_set(self.probe_per_class),)

    def start(self, ctx: TrainContext) -> None:
        self._trusted = ctx.trusted_batches()

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        import torch
        import torch.nn.functional as F

        with torch.no_grad(), ctx.autocast():
            fit = stateless_forward(ctx.model, batch.x)
        trusted = next(self._trusted)
        with ctx.autocast():
            logits = ctx.model(trusted.x)
        loss = F.cross_entropy(logits.float(), trusted.y)
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=fit.float())


class UnionChunks(Iterator[Batch]):
    """The trusted batches cut into ``pieces`` near-equal consecutive chunks each. The chunks of
    the current batch not yet handed out are its state: saved with a checkpoint, so a resumed
    run continues mid-batch as the uninterrupted one does."""

    def __init__(self, trusted: Iterator[Batch], pieces: int) -> None:
        self.trusted, self.pieces = trusted, pieces
        self.pending: list[Batch] = []

    def __next__(self) -> Batch:
        if not self.pending:
            batch = next(self.trusted)
            k = min(self.pieces, len(batch.y))
            self.pending = [Batch(x, y, i) for x, y, i in zip(*(t.tensor_split(k) for t in (batch.x, batch.y, batch.index)))]
        return self.pending.pop(0)

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        return {name: [getattr(b, name) for b in self.pending] for name in ("x", "y", "index")}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        self.pending = [Batch(*parts) for parts in zip(state["x"], state["y"], state["index"])]


class CCETrusted(Method):
    """CCE on the noisy set plus the trusted set: each step's noisy batch is concatenated with
    trusted examples and the cross entropy is averaged over all of them.

    ``sampling = "union"`` (default): the trusted examples join the noisy set, each seen about
    once per epoch like a noisy example (a pass over the trusted set is spread over an epoch's
    steps: each trusted batch is cut into round(steps per epoch / trusted batches per pass)
    chunks; on ``digits`` at 10 per class, 11 or 12 trusted examples beside each 128 noisy ones).
    ``sampling = "paired"``: a whole trusted batch beside every noisy batch, the exposure IEG's
    probe batches get (each trusted example is then seen far more often than a noisy one).

    Weights: CCE's, 2(1 − p_y), of the noisy examples (the engine records those per example)."""

    name = "cce_trusted"
    summary = "cross entropy on the noisy training set plus the clean trusted set"
    parameters = {
        "probe_per_class": PROBE_PER_CLASS,
        "sampling": Param(
            "union",
            "union: the trusted examples join the noisy set (each seen about once per epoch); "
            "paired: a whole trusted batch beside every noisy batch, as IEG draws its probe batches",
            choices=("union", "paired"),
        ),
    }

    def needs(self) -> tuple[Need, ...]:
        return (trusted_set(self.probe_per_class),)

    #: Union sampling: the chunks of the current trusted batch still to come.
    state_attributes = ("_trusted",)

    def start(self, ctx: TrainContext) -> None:
        self._trusted = ctx.trusted_batches()
        if self.sampling == "union":
            pieces = max(1, round(ctx.steps_per_epoch / len(ctx.provided(TRUSTED_SET))))
            self._trusted = UnionChunks(self._trusted, pieces)

    def train_step(self, ctx: TrainContext, batch: Batch) -> StepOutput:
        import torch
        import torch.nn.functional as F

        trusted = next(self._trusted)
        with ctx.autocast():
            logits = ctx.model(torch.cat([batch.x, trusted.x])).float()
        loss = F.cross_entropy(logits, torch.cat([batch.y, trusted.y]))
        ctx.optimize(loss)
        own = logits[: len(batch.y)].detach()
        with torch.no_grad():
            weights = -2 * torch.expm1(-F.cross_entropy(own, batch.y, reduction="none"))
        return StepOutput(loss=loss.detach(), logits=own, weights=weights)


@hookimpl
def register_methods(register):
    register(TrustedOnly)
    register(CCETrusted)
