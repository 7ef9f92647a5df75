"""The training engine shared by every task and method.

One run: seed everything, let the task prepare its data (noise in the training labels only), build
the model and optimiser, then per epoch call the method's ``train_step`` on every batch and
evaluate: the trained weights, or for every method alike an EMA of them when the cell asks
(``benchsuite.averaging``). A run is bit-reproducible under the conditions its provenance records
(``benchsuite.reproducibility``). Per epoch it records the test metrics, how the training predictions fit the noisy and
the true labels (memorisation), the loss and, for methods that weight examples, the statistics of
their weights. The fit is read from the predictions of the training forward passes themselves, so
measuring memorisation costs no extra pass over the training set.

Nothing in the hot loop synchronises with the device: per-step statistics accumulate in device
tensors and are read once per epoch (which is also where a NaN/inf loss is detected).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .averaging import WeightAverage
from .checkpoint import CellCheckpoint, TrainingState
from .method import Method, StepOutput
from .reproducibility import cell_random_state, conditions, kernel_settings, seed_global_rngs
from .spec import CellSpec, RunRecord
from .task import Batch, BatchStream, PreparedData, PrepareRequest, Recipe, Task

EpochCallback = Callable[[int, int, dict[str, float]], None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


#: Seed Python's, NumPy's and torch's global generators (kept under its former name for scripts).
seed_everything = seed_global_rngs


def amp_dtype_for(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """Mixed precision on CUDA by default (bfloat16 where supported, else float16); never on CPU."""
    if amp is False or (amp is None and device.type != "cuda"):
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@dataclass
class TrainContext:
    """What a method's ``train_step`` may use: the model, optimiser, data, device and RNG."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # anything with step(), or None for a constant rate
    device: torch.device
    data: PreparedData
    recipe: Recipe
    generator: torch.Generator
    total_steps: int
    steps_per_epoch: int
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    step: int = 0
    epoch: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    #: The task's model builder (``Task.build_model``), behind ``new_model``.
    model_factory: Callable[[], nn.Module] | None = None
    #: The batch streams handed out by ``trusted_batches``, in order (saved by checkpoints).
    streams: list[BatchStream] = field(default_factory=list)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero the gradients, back-propagate ``loss`` (scaled under float16) and step.

        ``optimizer``: one of the method's own instead of the run's (e.g. that of a second network
        from ``new_model``); it steps with the run's gradient scaler."""
        optimizer = self.optimizer if optimizer is None else optimizer
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def new_model(self) -> nn.Module:
        """A freshly initialised model of the task on the device, for methods that train more
        than one network (Co-teaching, DivideMix).

        Its initial weights are drawn under a seed taken from ``generator``, inside a forked
        global RNG: the cell stays bit-reproducible and the global RNG is left as it was."""
        if self.model_factory is None:
            raise RuntimeError("this context has no model_factory; the engine passes Task.build_model")
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.generator.device).item())
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return self.model_factory().to(self.device)

    def trusted_batches(self) -> Iterator[Batch]:
        """Endless, reshuffled batches of the trusted subset (for methods that need one); the
        context keeps the stream, so checkpoints save where it is in its pass."""
        if self.data.trusted is None:
            raise RuntimeError("this run has no trusted subset; declare requires_trusted_set = True")
        stream = BatchStream(self.data.trusted, self.generator)
        self.streams.append(stream)
        return stream


class LabelMasks:
    """What the memorisation fractions compare the predictions with, fixed for a whole run: the
    labels each fraction's hits are counted against and the examples it counts, before the
    epoch's "seen" mask (row order: ``EpochStats.FRACTIONS``). Built once per run, not per epoch."""

    def __init__(self, data: PreparedData, device: torch.device) -> None:
        noisy, true = data.noisy_labels.to(device), data.true_labels.to(device)
        known = data.truth_known.to(device)
        is_noisy = known & (noisy != true)
        self.labels = torch.stack([noisy, true, noisy, true, noisy])
        self.counted = torch.stack([torch.ones_like(known), known, is_noisy, is_noisy, known & ~is_noisy])


class EpochStats:
    """Per-epoch statistics of the training steps, by training example: the prediction and, for
    methods that weight examples, the weight and p_y, each from the example's latest step.

    A step only appends references to its outputs; they are folded into per-example arrays in
    chunks of at most ``FOLD_ELEMENTS`` logits (bounded memory) and at the end of the epoch, so the
    hot loop does no tensor work for the bookkeeping.
    """

    FOLD_ELEMENTS = 1 << 24
    #: Row i of ``LabelMasks``: the fraction of the counted examples whose prediction hits the label.
    FRACTIONS = ("train_acc_noisy", "train_acc_true", "noisy_memorised", "noisy_corrected", "clean_fit")

    def __init__(self, data: PreparedData, device: torch.device, masks: LabelMasks | None = None) -> None:
        self.data = data
        self.masks = LabelMasks(data, device) if masks is None else masks
        self.pred = torch.full((data.num_train,), -1, dtype=torch.long, device=device)
        self.weights: torch.Tensor | None = None
        self.p_y: torch.Tensor | None = None
        self.losses: list[torch.Tensor] = []
        self.pending: list[tuple[Batch, StepOutput]] = []
        self.pending_elements = 0

    def update(self, batch: Batch, out: StepOutput) -> None:
        self.losses.append(out.loss)
        self.pending.append((batch, out))
        self.pending_elements += out.logits.numel()
        if self.pending_elements > self.FOLD_ELEMENTS:
            self.fold()

    @torch.no_grad()
    def fold(self) -> None:
        """Write the pending steps into the per-example arrays (later steps win); each array is
        concatenated first and converted to float once (the same values as converting each step's)."""
        if not self.pending:
            return
        index = torch.cat([b.index for b, _ in self.pending])
        logits = torch.cat([o.logits for _, o in self.pending]).float()
        self.pred[index] = logits.argmax(1)
        weighted = [(b, o) for b, o in self.pending if o.weights is not None]
        if weighted:
            if self.weights is None:
                self.weights = torch.full(self.pred.shape, float("nan"), device=self.pred.device)
                self.p_y = torch.empty_like(self.weights)
            if len(weighted) < len(self.pending):  # else the concatenations above are the weighted ones
                index = torch.cat([b.index for b, _ in weighted])
                logits = torch.cat([o.logits for _, o in weighted]).float()
            labels = torch.cat([b.y for b, _ in weighted])
            self.weights[index] = torch.cat([o.weights for _, o in weighted]).float()
            self.p_y[index] = logits.softmax(1).gather(1, labels[:, None]).squeeze(1)
        self.pending, self.pending_elements = [], 0

    def summary(self) -> dict[str, float]:
        """The epoch's memorisation fractions, mean loss and weight statistics, computed with a
        handful of batched tensor ops and read back in one transfer (one sync on a GPU)."""
        self.fold()
        masks = self.masks.counted & (self.pred >= 0)  # counted among the examples the epoch saw
        hits = self.pred == self.masks.labels
        counts = masks.sum(1)
        values = (hits & masks).sum(1) / counts.clamp_min(1)
        loss = torch.stack(self.losses).float().mean() if self.losses else torch.tensor(float("nan"), device=values.device)
        read = [values, counts.to(values.dtype), loss.to(values.dtype)[None]]
        if self.weights is not None:
            weighted = ~self.weights.isnan()
            w, p_y = self.weights[weighted], self.p_y[weighted]
            read.append(torch.stack([w.sum(), (w * p_y).sum(), (w / w.mean()).var(unbiased=False)]))
        numbers = torch.cat(read).tolist()  # float32 holds every count (< 2**24) exactly
        fractions = len(self.FRACTIONS)
        row = {n: v for n, v, c in zip(self.FRACTIONS, numbers, numbers[fractions:]) if c > 0}
        row["loss"] = numbers[2 * fractions]
        if self.weights is not None:
            total, emphasis, spread = numbers[2 * fractions + 1 :]
            if total > 0:  # all-zero weights (everything pruned) have no focus
                row["weight_focus"] = emphasis / total
                row["weight_var"] = spread
        return row


def build_context(
    method: Method, task: Task, spec: CellSpec, device: torch.device, amp: bool | None = None
) -> TrainContext:
    """Everything a run trains with, before the method's ``start``: seeded, the task's data
    prepared for the method's needs, the model built, the method's optimiser and schedule, the
    cell's generator. ``train`` runs from it; benchmarks and tests build single steps on it."""
    seed_everything(spec.seed)
    recipe = task.recipe().with_budget(spec.budget)
    data = task.prepare(
        PrepareRequest(
            noise_kind=spec.noise_kind,
            noise_rate=spec.noise_rate,
            seed=spec.seed,
            device=device,
            batch_size=recipe.batch_size,
            trusted_per_class=method.trusted_per_class() if method.requires_trusted_set else 0,
            val_fraction=max(method.validation_fraction(), spec.val_fraction),
            noise_params=spec.noise_params,
        )
    )
    seed_global_rngs(spec.seed)  # the initial weights never depend on what prepare() drew (a cache miss or hit)
    model = task.build_model().to(device)
    steps_per_epoch = len(data.train)
    total_steps = recipe.total_steps(steps_per_epoch)
    optimizer, scheduler = method.configure_optimizer(model, recipe, total_steps)
    amp_dtype = amp_dtype_for(device, amp)
    return TrainContext(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device,
        data=data,
        recipe=recipe,
        generator=torch.Generator(device=device).manual_seed(spec.seed),
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        amp_dtype=amp_dtype,
        scaler=torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None,
        model_factory=task.build_model,
    )


def train(
    method: Method,
    task: Task,
    spec: CellSpec,
    device: torch.device,
    amp: bool | None = None,
    on_epoch: EpochCallback | None = None,
    checkpoint: CellCheckpoint | None = None,
) -> RunRecord:
    """Train ``method`` on ``task`` as ``spec`` says; returns a completed or diverged record.

    With ``checkpoint`` the run resumes from the cell's checkpoint when there is one and writes
    checkpoints at epoch ends as its policy says (``benchsuite.checkpoint``).
    The process-global random state and kernel settings are the cell's own for the duration of the
    run and restored afterwards (``benchsuite.reproducibility``)."""
    with cell_random_state(spec.seed, device), kernel_settings(spec.deterministic, device):
        record = _train(method, task, spec, device, amp, on_epoch, checkpoint)
        record.provenance["reproducibility"] = conditions(spec.deterministic)
    if checkpoint is not None:
        record.provenance["checkpoints"] = checkpoint.provenance()
        if checkpoint.resumed_from is not None:
            record.provenance["resumed_from"] = checkpoint.resumed_from
    return record


def _train(
    method: Method,
    task: Task,
    spec: CellSpec,
    device: torch.device,
    amp: bool | None,
    on_epoch: EpochCallback | None,
    checkpoint: CellCheckpoint | None,
) -> RunRecord:
    ctx = build_context(method, task, spec, device, amp)
    model, optimizer, scheduler, data, recipe = ctx.model, ctx.optimizer, ctx.scheduler, ctx.data, ctx.recipe
    steps_per_epoch, total_steps = ctx.steps_per_epoch, ctx.total_steps
    record = RunRecord(spec=spec, status="completed", info=_run_info(data, model, recipe, device, ctx.amp_dtype))
    method.start(ctx)
    average = WeightAverage(method.eval_model(ctx), spec.eval_ema) if spec.eval_ema is not None else None
    num_epochs = recipe.num_epochs(steps_per_epoch)
    state = TrainingState(ctx, method, average, record.curves)
    masks = LabelMasks(data, device)
    done_epochs = 0 if checkpoint is None else checkpoint.resume(state)
    for epoch in range(done_epochs + 1, num_epochs + 1):
        ctx.epoch = epoch
        tic = time.perf_counter()
        method.start_epoch(ctx)
        model.train()
        stats = EpochStats(data, device, masks)
        for batch in data.train.batches(ctx.generator):
            stats.update(batch, method.train_step(ctx, batch))
            if average is not None:
                average.update()
            if scheduler is not None:
                scheduler.step()
            ctx.step += 1
            if ctx.step >= total_steps:
                break
        row = stats.summary()
        if not math.isfinite(row["loss"]):
            record.status, record.diverged_epoch = "diverged", epoch
            record.error = f"non-finite training loss ({row['loss']}) in epoch {epoch}"
            break
        row.update(task.evaluate(method.eval_model(ctx) if average is None else average.evaluated(), data, device))
        row.update(method.end_epoch(ctx, row))
        row.update(epoch=epoch, step=ctx.step, lr=optimizer.param_groups[0]["lr"], epoch_time=time.perf_counter() - tic)
        record.curves.append(row)
        if checkpoint is not None and epoch < num_epochs and checkpoint.due():
            checkpoint.save(state)
        if on_epoch is not None:
            on_epoch(epoch, num_epochs, row)
    return record


def _run_info(
    data: PreparedData, model: nn.Module, recipe: Recipe, device: torch.device, amp_dtype: torch.dtype | None
) -> dict[str, Any]:
    return {
        "noise": vars(data.noise),
        "num_train": data.num_train,
        "num_trusted": None if data.trusted is None else len(getattr(data.trusted, "y", [])),
        "data": data.info,
        "model": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "recipe": vars(recipe),
        "device": str(device),
        "amp": None if amp_dtype is None else str(amp_dtype),
        "torch_threads": torch.get_num_threads(),
    }
