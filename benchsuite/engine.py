"""The training engine shared by every task and method.

One run: seed everything, let the task prepare its data (noise in the training labels only), build
the model and optimiser, then per epoch call the method's ``train_step`` on every batch and
evaluate. Per epoch it records the test metrics, how the training predictions fit the noisy and
the true labels (memorisation), the loss and, for methods that weight examples, the statistics of
their weights. The fit is read from the predictions of the training forward passes themselves, so
measuring memorisation costs no extra pass over the training set.

Nothing in the hot loop synchronises with the device: per-step statistics accumulate in device
tensors and are read once per epoch (which is also where a NaN/inf loss is detected).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .method import Method, StepOutput
from .spec import CellSpec, RunRecord
from .task import Batch, PreparedData, PrepareRequest, Recipe, Task

EpochCallback = Callable[[int, int, dict[str, float]], None]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def optimize(self, loss: torch.Tensor) -> None:
        """Zero the gradients, back-propagate ``loss`` (scaled under float16) and step."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def trusted_batches(self) -> Iterator[Batch]:
        """Endless, reshuffled batches of the trusted subset (for methods that need one)."""
        if self.data.trusted is None:
            raise RuntimeError("this run has no trusted subset; declare requires_trusted_set = True")
        while True:
            yield from self.data.trusted.batches(self.generator)


class EpochStats:
    """Per-epoch accumulators on the device: predictions by example, loss, weight moments."""

    def __init__(self, data: PreparedData, device: torch.device) -> None:
        self.data = data
        self.pred = torch.full((data.num_train,), -1, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.steps = 0
        self.weight_moments: torch.Tensor | None = None  # [sum w, sum w*p_y, sum (w/mean w)^2, count]

    def update(self, batch: Batch, out: StepOutput) -> None:
        self.pred[batch.index] = out.logits.argmax(1)
        self.loss_sum += out.loss.float()
        self.steps += 1
        if out.weights is not None:
            w = out.weights.detach().float()
            p_y = out.logits.float().softmax(1).gather(1, batch.y[:, None]).squeeze(1)
            normalised = w / w.mean().clamp_min(1e-12)
            moments = torch.stack([w.sum(), (w * p_y).sum(), normalised.square().sum(), w.new_tensor(len(w))])
            self.weight_moments = moments if self.weight_moments is None else self.weight_moments + moments

    def summary(self) -> dict[str, float]:
        data = self.data
        seen = self.pred >= 0
        noisy_labels = data.noisy_labels.to(self.pred.device)
        true_labels = data.true_labels.to(self.pred.device)
        known = data.truth_known.to(self.pred.device) & seen
        is_noisy = known & (noisy_labels != true_labels)
        hits_noisy = self.pred == noisy_labels
        hits_true = self.pred == true_labels

        def frac(hits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return (hits & mask).sum() / mask.sum().clamp_min(1)

        names = ["train_acc_noisy", "train_acc_true", "noisy_memorised", "noisy_corrected", "clean_fit"]
        values = torch.stack(
            [
                frac(hits_noisy, seen),
                frac(hits_true, known),
                frac(hits_noisy, is_noisy),
                frac(hits_true, is_noisy),
                frac(hits_noisy, known & ~is_noisy),
            ]
        )
        counts = torch.stack([seen.sum(), known.sum(), is_noisy.sum(), is_noisy.sum(), (known & ~is_noisy).sum()])
        row = {n: v for n, v, c in zip(names, values.tolist(), counts.tolist()) if c > 0}
        row["loss"] = self.loss_sum.item() / max(self.steps, 1)
        if self.weight_moments is not None:
            w_sum, wp_sum, sq_sum, count = self.weight_moments.tolist()
            row["weight_focus"] = wp_sum / w_sum if w_sum > 0 else float("nan")
            row["weight_var"] = sq_sum / count - 1.0
        return row


def train(
    method: Method,
    task: Task,
    spec: CellSpec,
    device: torch.device,
    amp: bool | None = None,
    on_epoch: EpochCallback | None = None,
) -> RunRecord:
    """Train ``method`` on ``task`` as ``spec`` says; returns a completed or diverged record."""
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
    model = task.build_model().to(device)
    steps_per_epoch = len(data.train)
    total_steps = recipe.total_steps(steps_per_epoch)
    optimizer, scheduler = method.configure_optimizer(model, recipe, total_steps)
    amp_dtype = amp_dtype_for(device, amp)
    ctx = TrainContext(
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
    )
    record = RunRecord(spec=spec, status="completed", info=_run_info(data, model, recipe, device, amp_dtype))
    method.start(ctx)
    num_epochs = recipe.num_epochs(steps_per_epoch)
    for epoch in range(1, num_epochs + 1):
        ctx.epoch = epoch
        tic = time.perf_counter()
        model.train()
        stats = EpochStats(data, device)
        for batch in data.train.batches(ctx.generator):
            stats.update(batch, method.train_step(ctx, batch))
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
        row.update(task.evaluate(method.eval_model(ctx), data, device))
        row.update(method.end_epoch(ctx, row))
        row.update(epoch=epoch, step=ctx.step, lr=optimizer.param_groups[0]["lr"], epoch_time=time.perf_counter() - tic)
        record.curves.append(row)
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
