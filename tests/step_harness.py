"""Helpers of the step-level method tests: a cell spec, and a run's context for single steps."""

from __future__ import annotations

import torch

import benchsuite
from benchsuite import Method, Task
from benchsuite.engine import TrainContext, build_context
from benchsuite.spec import CellSpec

CPU = torch.device("cpu")


def spec_for(method: Method, task: Task, rate: float, seed: int = 0, kind: str = "symmetric", **budget) -> CellSpec:
    """The cell of ``method`` on ``task`` at ``kind`` noise ``rate`` with ``budget`` overrides."""
    return CellSpec(
        method.name, method.identity_config(), task.name, task.identity_config(), kind, rate, seed,
        method.version, task.version, budget=budget,
    )  # fmt: skip


def started_context(method: Method, rate: float = 0.4, task: str = "digits", seed: int = 0) -> TrainContext:
    """A digits run's context at symmetric noise ``rate``, after ``method.start``."""
    task_obj = benchsuite.load_task(task)
    ctx = build_context(method, task_obj, spec_for(method, task_obj, rate, seed), CPU)
    method.start(ctx)
    return ctx


def first_batch(ctx: TrainContext):
    """The run's first training batch (drawn from the run's generator)."""
    return next(iter(ctx.data.train.batches(ctx.generator)))
