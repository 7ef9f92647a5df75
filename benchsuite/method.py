"""What a method plugin provides: a loss, or, when it needs more, a whole training step.

Two levels, one interface for the engine:

* ``LossMethod``: implement ``compute(logits, targets)``. ``loss()`` is the public scalar whose
  autograd gradient w.r.t. the logits is exactly the method's gradient; ``compute`` may also return
  per-example weights so that the engine can record the method's emphasis.
* ``Method``: implement ``train_step(ctx, batch)`` for methods that need the whole step (a trusted
  set, several forwards, meta-gradients). ``LossMethod`` is just the ``Method`` whose step is
  "forward, loss, backward, optimiser step".

Every method is scored the same way: on its predictor, ``eval_model`` (the trained network, or
e.g. DivideMix's ensemble of its two networks), or, when the grid asks, on an EMA of that
predictor's weights, for every method alike (``benchsuite.averaging``). A method never scores
itself on an average of its weights of its own.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .needs import Need, unmet
from .params import Configurable

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .engine import TrainContext
    from .task import Batch, Recipe, Task


#: How a batch loss combines its examples' losses ℓ_i; the contract checks hold a method to it.
#: ``mean``: batch gradient of example i is ∇ℓ_i / N. ``sum``: ∇ℓ_i. ``weight_sum`` (derivative
#: normalisation): ∇ℓ_i / Σ_j W_j, where W_j is example j's prescribed weight
#: (``LossMethod.normalising_weights``; by default ‖∇ℓ_j‖₁, and then the examples' gradient L1 norms
#: sum to 1). A method whose gradient saturates below its prescribed weight (DM's ε:
#: ‖∇ℓ_j‖₁ = W_j·sat_j) has a batch L1 mass below 1 that vanishes once the batch is fitted.
BatchReduction = Literal["mean", "sum", "weight_sum"]


@dataclass(frozen=True)
class Canonical:
    """What a method trains, canonically: the method class that trains it and that class's full
    identity parameters. Two grid entries with equal canonical forms are one cell, computed
    once and shown as one leaderboard row that names both (e.g. ``dm = gr``)."""

    method: type["Method"]
    params: dict[str, Any]


@dataclass
class LossOutput:
    """A batch loss and, for methods that weight examples, the per-example weights (detached):
    the L1 norm of each example's own logit gradient (``benchsuite_plugins.methods.weighting``), so the engine's
    emphasis statistics compare across methods."""

    loss: torch.Tensor
    weights: torch.Tensor | None = None


@dataclass
class StepOutput:
    """What a training step reports: the loss (detached), the logits of the batch (detached; the
    engine reads the predictions from them to measure memorisation), per-example weights."""

    loss: torch.Tensor
    logits: torch.Tensor
    weights: torch.Tensor | None = None


class Method(Configurable, abc.ABC):
    """Base class of method plugins."""

    kind: ClassVar[str] = "method"
    #: Joins the default grid of ``benchsuite run`` with its default parameters.
    in_default_grid: ClassVar[bool] = True
    #: Attributes that carry training state across steps and epochs, saved in the engine's
    #: checkpoints by the default ``state_dict`` and restored on resume (see there).
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def needs(self) -> tuple[Need, ...]:
        """What this configured method trains on besides the noisy training set, by name
        (``benchsuite.needs``): e.g. ``(trusted_set(self.probe_per_class), strong_view())``. The
        engine asks the task for each (``PrepareRequest.needs``) and hands over what it provides
        (``ctx.provided(name)``); a task that does not provide one makes the cell n/a."""
        return ()

    def applicability(self, task: "Task") -> str | None:
        """``None`` if this method can run on ``task``, else the reason (the cell is reported n/a):
        by default, the needs the task does not provide."""
        return unmet(self.name, self.needs(), task.name, task.provides)

    def canonical(self) -> Canonical:
        """What this method trains: by default itself with its resolved parameters. A method that
        is another method under other parameter names (``gr`` and ``imae`` are ``dm`` with one
        weight family) returns that method and its parameters, promising that training is
        identical; the cell's identity, code fingerprint and declared version are then that
        method's."""
        return Canonical(type(self), self.identity_config())

    def privileged_data(self) -> dict[str, Any]:
        """What the method trains on besides the noisy training set, recorded with each run and
        marked on the boards: the ``privileged`` entries of its needs (``trusted_per_class``,
        ``strong_view``, ``clean_validation_fraction``, or a plugin's own key shown on the boards
        as its text value). A method that uses privileged information the task need not hand over
        (e.g. the clean labels every task gives the engine) adds its own key, e.g.
        ``{"noise_transition": "true T from the clean labels"}``."""
        data: dict[str, Any] = {}
        for need in self.needs():
            data.update(need.privileged)
        return data

    def configure_optimizer(
        self, model: nn.Module, recipe: "Recipe", total_steps: int
    ) -> tuple[torch.optim.Optimizer, Any]:
        """Optimiser and per-step schedule (any object with ``step()``, e.g. a torch LR scheduler;
        ``None``: constant rate); the default follows the recipe."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        if recipe.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params,
                lr=recipe.lr,
                momentum=recipe.momentum,
                nesterov=recipe.nesterov,
                weight_decay=recipe.weight_decay,
            )
        else:
            optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        if recipe.schedule == "constant":
            return optimizer, None
        from .task import RecipeSchedule

        return optimizer, RecipeSchedule(optimizer, recipe, total_steps)

    def start(self, ctx: "TrainContext") -> None:
        """Called once before the first step (allocate state, e.g. per-example buffers, or a
        second network from ``ctx.new_model()`` with its own optimiser)."""

    def start_epoch(self, ctx: "TrainContext") -> None:
        """Called before each epoch's first step, with ``ctx.epoch`` set (1-based), before the
        engine puts ``ctx.model`` in train mode: for per-epoch passes over the training set, e.g.
        DivideMix's per-example losses over ``ctx.data.train.eval_batches``."""

    @abc.abstractmethod
    def train_step(self, ctx: "TrainContext", batch: "Batch") -> StepOutput:
        """One optimisation step on ``batch``. Use ``ctx.autocast()`` and ``ctx.optimize(loss)``."""

    def eval_model(self, ctx: "TrainContext") -> nn.Module:
        """The method's predictor, which the engine evaluates: by default the trained model; a
        method that trains several networks and predicts with them together returns that
        ensemble (DivideMix). The same module throughout the run (the grid's ``eval_ema``
        averages its weights), and never an average of the weights kept by the method itself:
        whether every method is scored on an EMA is the grid's choice."""
        return ctx.model

    def end_epoch(self, ctx: "TrainContext", metrics: dict[str, float]) -> dict[str, float]:
        """Called after each epoch's evaluation with its metrics (``val_acc`` among them when the
        run has a validation split); returns method-specific diagnostics to store in the curves."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The method's own training state, for the engine's checkpoints (``benchsuite.checkpoint``):
        whatever it carries from one step or epoch to the next that ``start`` does not rebuild
        from the context (a second network and its optimiser, per-example buffers, counters).

        The default saves the attributes named in ``state_attributes`` (tensors, modules,
        optimisers, schedules, NumPy generators, plain numbers and strings); a method whose state
        is of another kind overrides this and ``load_state_dict``. Values must be what
        ``torch.load(weights_only=True)`` reads: tensors, numbers, strings, None, and lists,
        tuples and dicts of them. Batches from ``ctx.trusted_batches()`` need nothing: the engine
        saves their position itself."""
        from .checkpoint import pack_attributes

        return pack_attributes(self, self.state_attributes)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved; called on resume after ``start`` has run again on a
        freshly built context, so rebuilt state (derived buffers, module references) is in place
        and only what the run changed since is put back."""
        from .checkpoint import restore_attributes

        restore_attributes(self, state)

    @classmethod
    def _default_needs(cls) -> list[str]:
        """The names of what the method needs with its default parameters."""
        return [need.name for need in cls().needs()]

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "summary": cls.summary,
            "version": cls.version,
            "level": "loss" if issubclass(cls, LossMethod) else "step",
            "needs": cls._default_needs(),
            "in_default_grid": cls.in_default_grid,
            "parameters": {k: p.describe() for k, p in cls.parameters.items()},
            "presets": {k: p.describe() for k, p in cls.presets.items()},
        }


class LossMethod(Method):
    """A method defined by its loss on the logits."""

    #: How the batch loss combines the examples (see ``BatchReduction``); checked by
    #: ``benchsuite.checks``, and it fixes how reported weights relate to the batch gradient.
    batch_reduction: ClassVar[BatchReduction] = "mean"

    @abc.abstractmethod
    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        """Batch loss of ``logits`` (N, C) against integer ``targets`` (N,), and optional weights."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss; its autograd gradient w.r.t. ``logits`` is the method's gradient."""
        return self.compute(logits, targets).loss

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Optional closed form of ∇_z ℓ_i, each example's own loss gradient (N, C), before the batch
        reduction. When given, the contract checks (``benchsuite.checks``) compare it in float64
        with autograd of ``loss`` (scaled as ``batch_reduction`` says), and the reported weights
        with its per-example L1 norms. ``None``: not declared, those checks are skipped."""
        return None

    def normalising_weights(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """Optional closed form of W_i (N,), the weights whose batch sum divides the gradient under
        ``batch_reduction = "weight_sum"``. ``None``: the L1 norms of ``example_gradient``. Declare it
        when the applied gradient saturates below the prescribed weight (DM's ε), so the contract
        checks hold the method to the raw-weight normalisation."""
        return None

    def train_step(self, ctx: "TrainContext", batch: "Batch") -> StepOutput:
        with ctx.autocast():
            logits = ctx.model(batch.x)
        out = self.compute(logits.float(), batch.y)
        ctx.optimize(out.loss)
        return StepOutput(loss=out.loss.detach(), logits=logits.detach(), weights=out.weights)
