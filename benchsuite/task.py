"""What a task plugin provides: data with (possibly noisy) labels, a model, a recipe, evaluation.

A task reads its data set, injects label noise into the training labels only, and hands the
engine a ``PreparedData``: a source of training batches (kept on the device as tensors when the
data fits in memory), the noisy and the true labels, and optionally a trusted subset. The engine
never looks inside the data set; the task evaluates the model and returns named metrics.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal, Mapping, Protocol

from .needs import CLEAN_VALIDATION, STRONG_VIEW, TRUSTED_SET
from .params import Configurable
from .toolkit.labels import NoiseRecord, draw_trusted, split_labels, stratified_holdout  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # torch is imported where tensors are made: loading plugins and expanding grids need none
    import numpy as np
    import torch
    from torch import nn

#: A batched augmentation: (uint8 or float batch on the device, generator) -> augmented batch.
ViewFn = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]


@dataclass(frozen=True)
class Metric:
    """A metric a task reports, and whether higher is better (for ranks and bold)."""

    doc: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule of a task's training run.

    ``milestones`` are fractions of the total number of steps, so a shorter budget keeps the
    shape of the schedule. ``iterations``, when set, overrides ``epochs`` (recipes stated in
    iterations, as the CIFAR papers do).
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Literal["constant", "multistep", "cosine", "inv"] = "constant"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    inv_gamma: float = 1e-5
    inv_power: float = 0.75
    iterations: int | None = None
    eval_batch_size: int = 1024

    #: Budget keys a grid may override, with their types.
    OVERRIDABLE: ClassVar[dict[str, type]] = {
        "epochs": int,
        "iterations": int,
        "batch_size": int,
        "lr": float,
        "weight_decay": float,
    }

    def with_budget(self, budget: Mapping[str, Any]) -> "Recipe":
        changes = dict(budget)
        if "epochs" in changes and "iterations" not in changes:
            changes["iterations"] = None
        return replace(self, **changes)

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.iterations if self.iterations is not None else self.epochs * steps_per_epoch

    def num_epochs(self, steps_per_epoch: int) -> int:
        return math.ceil(self.total_steps(steps_per_epoch) / steps_per_epoch)

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier of the base learning rate at ``step`` (0-based)."""
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "multistep":
            passed = sum(step >= round(m * total_steps) for m in self.milestones)
            return self.gamma**passed
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if self.schedule == "inv":  # Caffe's "inv" policy
            return (1.0 + self.inv_gamma * step) ** (-self.inv_power)
        raise ValueError(f"unknown schedule {self.schedule!r}")


class RecipeSchedule:
    """Per-step learning rate: base rate × ``recipe.lr_factor(step)`` for every parameter group.

    A few lines instead of ``LambdaLR``, whose bookkeeping costs ~250 µs a step: a third of a
    training step of the small digits and text models. Any object with ``step()`` can be a schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int) -> None:
        self.optimizer, self.recipe, self.total_steps = optimizer, recipe, total_steps
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        factor = self.recipe.lr_factor(self.steps, self.total_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def state_dict(self) -> dict[str, Any]:
        """Its position; the rates themselves are in the optimiser's state."""
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


@dataclass
class Batch:
    """One training batch. ``index`` addresses the example in the training set."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


class TrainSource(Protocol):
    """Yields the training batches of one epoch; ``len`` is the number of batches per epoch."""

    def __len__(self) -> int: ...

    def batches(self, generator: torch.Generator) -> Iterator[Batch]: ...

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Every training example once, in order, without augmentation (for evaluation passes)."""
        ...


class TensorTrainSource:
    """In-memory training set on the device: shuffling and augmentation are batched tensor ops.

    ``augment`` is the task's ordinary (weak) training augmentation, applied to each batch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        augment: ViewFn | None = None,
        drop_last: bool = True,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} inputs but {len(y)} labels")
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(x))
        self.augment = augment
        self.drop_last = drop_last and len(x) > self.batch_size

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batches(self, generator: torch.Generator) -> Iterator[Batch]:
        order = self.permutation(generator)
        for position in range(len(self)):
            yield self.batch_at(order, position, generator)

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        """The order of one pass, drawn from ``generator`` (what ``batches`` draws first)."""
        import torch

        return torch.randperm(len(self.x), generator=generator, device=generator.device).to(self.x.device)

    def batch_at(self, order: torch.Tensor, position: int, generator: torch.Generator) -> Batch:
        """Batch number ``position`` of the pass in ``order``, its view drawn from ``generator``:
        a pass can be taken up again mid-way (``BatchStream``, checkpoints)."""
        index = order[position * self.batch_size : (position + 1) * self.batch_size].to(self.x.device)
        return Batch(x=self.fresh_view(index, generator), y=self.y[index], index=index)

    def fresh_view(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The training inputs at ``index`` under a new draw of the augmentation (the inputs
        themselves when there is none): what each batch holds, and a second view of the same
        examples for methods that need several (DivideMix). Sources that cannot redraw a view
        (e.g. images augmented in DataLoader workers) do not offer this method."""
        x = self.x[index]
        return x if self.augment is None else self.augment(x, generator)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        import torch

        for start in range(0, len(self.x), batch_size):
            index = torch.arange(start, min(start + batch_size, len(self.x)), device=self.x.device)
            yield Batch(x=self.x[start : start + batch_size], y=self.y[start : start + batch_size], index=index)


class BatchStream:
    """Endless batches of ``source``, reshuffled from ``generator`` at every pass, whose position
    can be saved and restored (``state_dict``), so that a checkpointed run takes up a pass where
    it stopped. It draws exactly what ``while True: yield from source.batches(generator)`` draws.
    Sources that cannot start a pass mid-way (no ``permutation``/``batch_at``) stream through
    ``batches`` and cannot be saved."""

    def __init__(self, source: TrainSource, generator: torch.Generator) -> None:
        self.source, self.generator = source, generator
        self.order: torch.Tensor | None = None
        self.position = 0
        self.resumable = hasattr(source, "permutation") and hasattr(source, "batch_at")
        self._passes: Iterator[Batch] | None = None

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        if not self.resumable:
            if self._passes is None:
                self._passes = self._endless()
            return next(self._passes)
        source: Any = self.source
        if self.order is None or self.position >= len(source):
            self.order, self.position = source.permutation(self.generator), 0
        self.position += 1
        return source.batch_at(self.order, self.position - 1, self.generator)

    def _endless(self) -> Iterator[Batch]:
        while True:
            yield from self.source.batches(self.generator)

    def state_dict(self) -> dict[str, Any]:
        if not self.resumable:
            raise TypeError(f"{type(self.source).__name__} cannot start a pass mid-way (no permutation/batch_at)")
        return {"order": self.order, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order, self.position = state["order"], state["position"]


@dataclass(frozen=True)
class PrepareRequest:
    """What the engine asks of ``Task.prepare`` for one run."""

    noise_kind: str
    noise_rate: float
    seed: int
    device: torch.device
    batch_size: int
    noise_params: Mapping[str, Any] = field(default_factory=dict)
    #: What the method needs, by name, with its parameters (``benchsuite.needs``), e.g.
    #: ``{"trusted_set": {"per_class": 10}}``; only names the task ``provides``.
    needs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def trusted_per_class(self) -> int:
        """Trusted examples per class asked (need ``trusted_set``; 0: none)."""
        return int(self.needs.get(TRUSTED_SET, {}).get("per_class", 0))

    @property
    def val_fraction(self) -> float:
        """Fraction of the clean training set to hold out as a validation split (need
        ``clean_validation``; 0: none)."""
        return float(self.needs.get(CLEAN_VALIDATION, {}).get("fraction", 0.0))


@dataclass
class PreparedData:
    """What the engine needs from a task for one run.

    ``noisy_labels`` are the training labels the method sees. ``true_labels`` are the clean
    labels where known (``truth_known`` marks where; all of them for synthetic noise), so the
    engine can measure memorisation. ``provided`` holds what the task hands over for the method's
    needs, by need name (``benchsuite.needs``): e.g. ``trusted_set``, a ``TrainSource`` of a clean
    subset (removed from the training set before noise was injected), or ``strong_view``, the
    task's strong augmentation (a ``ViewFn``); ``info`` is recorded with the run;
    ``eval_data`` is the task's own payload for ``evaluate`` (e.g. the test tensors).
    """

    train: TrainSource
    noisy_labels: torch.Tensor
    true_labels: torch.Tensor
    truth_known: torch.Tensor
    noise: NoiseRecord
    provided: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    eval_data: Any = None

    @property
    def num_train(self) -> int:
        return len(self.noisy_labels)

    @property
    def is_noisy(self) -> torch.Tensor:
        return self.truth_known & (self.noisy_labels != self.true_labels)


class Task(Configurable, abc.ABC):
    """Base class of task plugins.

    Class attributes declare what the task provides; ``benchsuite tasks`` shows them and the grid
    checks them before anything runs.
    """

    kind: ClassVar[str] = "task"
    num_classes: ClassVar[int]
    evaluation: ClassVar[Literal["classification", "retrieval"]] = "classification"
    input_kind: ClassVar[str] = "image"
    #: The names of the needs ``prepare`` can serve (``benchsuite.needs``): e.g. ``trusted_set``
    #: (a clean subset for methods such as IEG), ``strong_view``, ``clean_validation``, or a name
    #: of a plugin's own. A method that needs a name not listed is n/a on this task.
    provides: ClassVar[frozenset[str]] = frozenset()
    #: Label-noise kinds this task accepts ("none" = the data's own labels).
    noise_kinds: ClassVar[tuple[str, ...]] = ("none", "symmetric")
    #: Noise of a grid that names none: (kind, rates).
    default_noise: ClassVar[tuple[str, tuple[float, ...]]] = ("symmetric", (0.0, 0.2, 0.4, 0.6))
    metrics: ClassVar[Mapping[str, Metric]] = {}
    primary_metric: ClassVar[str] = ""
    #: Metrics that get leaderboard tables (default: the primary metric).
    leaderboard_metrics: ClassVar[tuple[str, ...]] = ()
    #: Joins the default grid of ``benchsuite run`` (when ``available()``).
    in_default_grid: ClassVar[bool] = False

    @classmethod
    def check_class(cls) -> None:
        """Checks of the declaration alone; the host checks ``noise_kinds`` against the kinds
        plugins registered (``register_noise_kinds``)."""
        if not isinstance(getattr(cls, "num_classes", None), int) or cls.num_classes < 1:
            raise ValueError("num_classes must be a positive int")
        if not isinstance(cls.provides, (set, frozenset)) or not all(isinstance(n, str) for n in cls.provides):
            raise ValueError(f"provides must be a set of need names, e.g. frozenset({{'trusted_set'}}), not {cls.provides!r}")
        if cls.primary_metric not in cls.metrics:
            raise ValueError(f"primary_metric {cls.primary_metric!r} is not among metrics {sorted(cls.metrics)}")
        if cls.default_noise[0] not in cls.noise_kinds:
            raise ValueError(f"default_noise kind {cls.default_noise[0]!r} is not in noise_kinds")
        missing = [m for m in cls.leaderboard_metrics if m not in cls.metrics]
        if missing:
            raise ValueError(f"leaderboard_metrics {missing} are not among metrics")

    @classmethod
    def table_metrics(cls) -> tuple[str, ...]:
        return cls.leaderboard_metrics or (cls.primary_metric,)

    @classmethod
    def available(cls) -> str | None:
        """``None`` when the task can run here, else the reason (e.g. an optional data package)."""
        return None

    def check_data(self) -> None:
        """Raise, with a message that says what is missing where and how to get it, when the data
        cannot be read (no root, wrong layout). Called when a grid is validated, before anything
        runs; keep it cheap (look for the files, don't load them)."""

    def check_noise(self, kind: str) -> None:
        """Raise, with a message that says what to set, when this configured task cannot run noise
        ``kind`` (one of its ``noise_kinds``), e.g. because the file of a kind's human annotations
        is not given. Called per noise kind when a grid is validated; keep it cheap."""

    @abc.abstractmethod
    def prepare(self, request: PrepareRequest) -> PreparedData:
        """Load (cached per process), split, inject noise into the training labels only."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (the engine seeds torch before calling this)."""

    @abc.abstractmethod
    def recipe(self) -> Recipe:
        """The default optimiser, schedule and budget."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        """Test metrics (names as declared in ``metrics``) of ``model`` in eval mode."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "summary": cls.summary,
            "version": cls.version,
            "num_classes": cls.num_classes,
            "evaluation": cls.evaluation,
            "input": cls.input_kind,
            "provides": sorted(cls.provides),
            "noise_kinds": list(cls.noise_kinds),
            "metrics": {k: {"doc": m.doc, "higher_is_better": m.higher_is_better} for k, m in cls.metrics.items()},
            "primary_metric": cls.primary_metric,
            "leaderboard_metrics": list(cls.table_metrics()),
            "default_noise": {"kind": cls.default_noise[0], "rates": list(cls.default_noise[1])},
            "in_default_grid": cls.in_default_grid,
            "unavailable": cls.available(),
            "parameters": {k: p.describe() for k, p in cls.parameters.items()},
            "presets": {k: p.describe() for k, p in cls.presets.items()},
        }


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of ``model`` in eval mode over an in-memory tensor, batched."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            chunks = [model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]
            return chunks[0] if len(chunks) == 1 else torch.cat(chunks)  # one chunk: no copy
    finally:
        model.train(was_training)


def classification_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    return (predict_logits(model, x, batch_size).argmax(1) == y).float().mean().item()


@dataclass
class ClassificationEval:
    """Held-out splits of an in-memory classification task: test, and optionally a clean
    validation split carved from the training set (for model and hyper-parameter selection)."""

    test: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None = None


def prepare_in_memory(
    request: PrepareRequest,
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_test: torch.Tensor,
    y_test: np.ndarray,
    num_classes: int,
    augment: ViewFn | None = None,
    strong_view: ViewFn | None = None,
    info: dict[str, Any] | None = None,
    noise_inputs: Mapping[str, Any] | None = None,
    provided: Mapping[str, Any] | None = None,
) -> PreparedData:
    """The common ``prepare`` of classification tasks whose data fits in memory.

    Runs the label pipeline (``benchsuite.toolkit.labels.split_labels``) on the clean training
    labels — clean validation split (need ``clean_validation``), class-balanced trusted subset
    (need ``trusted_set``), label noise on the rest, noise record — and puts the splits on the
    device; ``eval_data`` is a ``ClassificationEval`` for ``evaluate_classification``. What the run
    gets by need name (``PreparedData.provided``): the trusted subset when asked, ``strong_view``
    when given, and ``provided``, what the task serves for needs of its own.

    ``noise_inputs`` is what the task knows about its label set that some noise kinds need (e.g.
    ``coarse_of``, the superclass of every class, or a file's human annotations); to them the
    pipeline adds ``train_index``, the position in ``y_train`` of every label left to corrupt. Each kind
    receives only the inputs it declares, and they are not recorded (they are a property of the
    data set, not of the run; the kind records what it decided).
    """
    import torch

    split = split_labels(request, y_train, num_classes, noise_inputs=noise_inputs)
    info = {**dict(info or {}), **split.info}
    device = request.device
    val = None
    if split.val is not None:
        val = (x_train[torch.as_tensor(split.val)].to(device), torch.as_tensor(y_train[split.val]).to(device))
    served = dict(provided or {})
    if strong_view is not None:
        served[STRONG_VIEW] = strong_view
    if split.trusted is not None:
        served[TRUSTED_SET] = TensorTrainSource(
            x_train[torch.as_tensor(split.trusted)].to(device),
            torch.as_tensor(y_train[split.trusted]).to(device),
            batch_size=min(request.batch_size, len(split.trusted)),
            augment=augment,
            drop_last=False,
        )
    noisy_t = torch.as_tensor(split.noisy, dtype=torch.long)
    return PreparedData(
        train=TensorTrainSource(
            x_train[torch.as_tensor(split.train)].to(device), noisy_t.to(device), batch_size=request.batch_size, augment=augment
        ),
        noisy_labels=noisy_t,
        true_labels=torch.as_tensor(split.clean, dtype=torch.long),
        truth_known=torch.ones(len(split.clean), dtype=torch.bool),
        noise=split.noise,
        provided=served,
        info=info,
        eval_data=ClassificationEval(test=(x_test.to(device), torch.as_tensor(y_test, dtype=torch.long).to(device)), val=val),
    )


def evaluate_classification(model: nn.Module, data: PreparedData, batch_size: int) -> dict[str, float]:
    """``test_acc`` (and ``val_acc`` when the run has a validation split) of ``model``."""
    splits: ClassificationEval = data.eval_data
    metrics = {"test_acc": classification_accuracy(model, *splits.test, batch_size=batch_size)}
    if splits.val is not None:
        metrics["val_acc"] = classification_accuracy(model, *splits.val, batch_size=batch_size)
    return metrics
