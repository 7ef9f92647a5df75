"""Training-step time of the step-level baselines (Co-teaching, ELR, DivideMix) divided by a CCE step.

Each method gets the task's model, optimiser setup and batches of the task's prepared data (40%
symmetric noise, seed 0) through the engine's own ``build_context``; each times ``--steps``
consecutive ``train_step`` calls, all methods alternating ``--repeats`` times in this one process
so that machine noise hits them alike. The ratio of the median per-step times is printed.
DivideMix is timed after its warm-up (its semi-supervised step; the warm-up step is two CCE
steps) and its per-epoch pass (two loss passes over the training set and two mixture fits) is
timed separately, as a fraction of one epoch of CCE steps.

What to expect, counting batch-sized forward passes (backward ≈ 2 forwards): CCE 3; ELR 3 plus
a few (N, C) operations; Co-teaching two CCE steps, 6; DivideMix per network 4 forwards without
gradient and a forward and backward of the 2B mixed rows (6), for both networks 2 × 10 = 20,
about 6.7 CCE steps.

``--cells N`` also times N whole runs of each method with the task's default recipe (data
preparation, training, per-epoch evaluation, DivideMix's warm-up and per-epoch passes, as a grid
cell), alternating, and prints the ratio of the median run times.

    python benchmarks/step_methods.py [--task digits] [--steps 50] [--repeats 7] [--threads 1] [--cells 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import benchsuite
from benchsuite.engine import TrainContext, build_context, train
from benchsuite.method import Method
from benchsuite.spec import CellSpec
from benchsuite.task import Task

METHODS = ("cce", "coteaching", "elr", "dividemix")


def spec_for(method: Method, task: Task) -> CellSpec:
    """The cell timed: 40% symmetric noise, seed 0, the task's default budget."""
    return CellSpec(method.name, method.identity_config(), task.name, task.identity_config(), "symmetric", 0.4, 0,
                    method.version, task.version)  # fmt: skip


def started(method: Method, task: Task, device: torch.device) -> TrainContext:
    """The method's context after ``start``; DivideMix moved past its warm-up, with a division."""
    ctx = build_context(method, task, spec_for(method, task), device)
    method.start(ctx)
    warmup = getattr(method, "warmup_epochs", 0)
    ctx.step = warmup * ctx.steps_per_epoch
    ctx.epoch = warmup + 1
    method.start_epoch(ctx)
    return ctx


def step_time(method: Method, ctx: TrainContext, steps: int) -> float:
    """Mean seconds per ``train_step`` over ``steps`` steps on fresh batches of the training set."""
    batches = []
    while len(batches) < steps:
        batches += list(ctx.data.train.batches(ctx.generator))
    ctx.model.train()
    tic = time.perf_counter()
    for batch in batches[:steps]:
        out = method.train_step(ctx, batch)
        ctx.step += 1
    out.loss.item()  # wait for the device
    return (time.perf_counter() - tic) / steps


def epoch_pass_time(method: Method, ctx: TrainContext) -> float:
    """Seconds of one ``start_epoch`` (DivideMix: the loss passes and the mixture fits)."""
    tic = time.perf_counter()
    method.start_epoch(ctx)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cells", type=int, default=0, help="also time this many whole runs of each method")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = benchsuite.load_task(args.task)
    methods = {name: benchsuite.load_method(name) for name in METHODS}
    contexts = {name: started(m, task, device) for name, m in methods.items()}
    for name, m in methods.items():  # warm-up: first calls allocate and dispatch slowly
        step_time(m, contexts[name], 5)
    times: dict[str, list[float]] = {name: [] for name in methods}
    passes: list[float] = []
    for _ in range(args.repeats):
        for name, m in methods.items():
            times[name].append(step_time(m, contexts[name], args.steps))
        passes.append(epoch_pass_time(methods["dividemix"], contexts["dividemix"]))
    median = {name: statistics.median(t) for name, t in times.items()}
    ctx = contexts["cce"]
    print(f"task={args.task} batch={ctx.data.train.batch_size} device={device} threads={args.threads} "
          f"steps={args.steps} repeats={args.repeats}")  # fmt: skip
    for name in methods:
        print(f"{name:>10} median step time: {median[name] * 1e3:8.3f} ms   ratio to cce: {median[name] / median['cce']:.2f}")
    epoch = median["cce"] * ctx.steps_per_epoch
    print(f"dividemix per-epoch pass: {statistics.median(passes) * 1e3:8.3f} ms = "
          f"{statistics.median(passes) / epoch:.2f} epochs of cce steps ({ctx.steps_per_epoch} steps)")  # fmt: skip
    if args.cells:
        runs: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.cells):
            for name in methods:
                method = benchsuite.load_method(name)
                tic = time.perf_counter()
                train(method, task, spec_for(method, task), device)
                runs[name].append(time.perf_counter() - tic)
        cce = statistics.median(runs["cce"])
        for name in methods:
            run = statistics.median(runs[name])
            print(f"{name:>10} median run time: {run:8.2f} s   ratio to cce: {run / cce:.2f}")


if __name__ == "__main__":
    main()
