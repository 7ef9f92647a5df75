"""IEG training-step time divided by CCE training-step time, on the same model and batch.

Both methods get the task's model, optimiser setup and a batch of the task's prepared data (with
IEG's trusted set held out); each times ``--steps`` consecutive ``train_step`` calls, the two
alternating ``--repeats`` times in this one process so that machine noise hits both alike. The
ratio of the per-step times is printed. Target: <= 6 (the L2R meta step alone costs about
three CCE steps).

Timing: each round times ``--steps`` steps of each method back to back, in alternating order; the
per-round ratio is taken in this thread's CPU time (on one thread: the step's cost on a core of
its own, which other processes' time slices do not inflate) and in wall time, and the median over
the rounds is printed with its interquartile range and extremes.

Why the target of 6 is out of reach without changing IEG's results: its step is compute-bound and
its arithmetic alone is 7.05 CCE steps. Per-pass accounting of one digits step (MLP 64-128-128-10,
batch B = 128, probe batch P = 100: the trusted set's 10 per class), matrix-product FLOPs counted
by torch's profiler (``with_flops``), in MFLOP:

==================================================================  =====  ======
pass                                                                 rows   MFLOP
==================================================================  =====  ======
CCE: forward                                                          128    6.62
CCE: backward (weight and hidden-input gradients)                     128   11.14
**CCE step**                                                                **17.76**
IEG 1: weak-view forward, graph kept (used by the look-ahead, the     128    6.62
supervised losses and the KL target: computed once)
IEG 2: strong-view forward (pseudo labels and KL: computed once)      128    6.62
IEG 3: look-ahead gradient ∇θ Σ ω_i CE_i, ``create_graph``            128   11.14
IEG 4: probe forward at the looked-ahead weights θ'                   100    5.18
IEG 5: ∂probe/∂(ω, λ): probe backward (8.72) and the backward         -     19.86
through pass 3's gradient (11.14)
IEG 6: MixUp forward over the pool [probe; weak; strong]              384   19.86
IEG 7: final backward: MixUp graph 33.42, weak 11.14, strong 11.14    -     55.70
**IEG step** (plus 0.2 of element-wise FLOPs)                               **125.2**
==================================================================  =====  ======

Ratio 125.2 / 17.76 = 7.05. Nothing in passes 1-7 computes the same function of the same inputs
twice: the weak and strong forwards already serve every term that reads them; the final backward
through the weak graph carries a cotangent that depends on ω* and λ* (the meta step's result), so it
cannot reuse pass 3; the MixUp rows are mixtures of pool rows with m in [0.5, 1], equal to 1 with
probability 0, so never the rows themselves. On ResNet-20 (``--task cifar10``, B = P = 32) the same
passes in units of one batch forward F (a backward about 2F; the backward through a gradient about
2F) give 1 + 1 + 2 + 1 + (2 + 2) + 3 + (6 + 2 + 2) = 22F against CCE's 3F: 7.3. Under 6 only with a
change of the algorithm (and of every IEG result), e.g. a B-row MixUp pool instead of 3B (saves 2F
of forward and 4F of backward: 16F, 5.3) or a first-order meta step; the lead's call, not a speed
fix. Measured there: 10.06 in CPU time at load 5, and torch's batch-norm double backward (pass 5
through the 19 BatchNorm layers) took 26 % of an IEG step's CPU time under the profiler.

The network work that goes with each pass (activations and their backward, bias adds) scales with
the passes like the products do; what IEG adds on top is its loss-level arithmetic on (B, 10) and
(3B, 10) tensors (logit normalisation, soft-label cross entropies, sharpening, MixUp of inputs and
targets, each with its backward and the meta step's second-order terms). Under torch's profiler on
an AVX-512 CPU, matrix products took 47 % of an IEG step's CPU time and 42 % of a CCE step's;
torch's 10-class (log-)softmax kernels are slow there (a (1280, 10) softmax: 166 µs, against 27 µs
with ``ATEN_CPU_CAPABILITY=avx2``): on that machine at load 16 the ratio was 9.59 with its own
kernels and 8.90 held to AVX2 ones.

``--task cifar10`` runs the CIFAR task's ResNet-20 (BatchNorm: IEG's extra forwards run through
``functional_call`` with cloned buffers; AutoAugment strong view) on a synthetic release in the
official layout written to a temporary folder, at ``--batch-size`` (default 32 there, so that a CPU
times it in minutes).

``--cells N`` also times N whole runs of each method with the task's default recipe (data
preparation, training and per-epoch evaluation, as a grid cell), alternating, and prints the ratio
of the median run times: the cost of IEG in the default grid.

    python benchmarks/ieg_step.py [--task digits|cifar10] [--steps 50] [--repeats 7] [--threads 1] [--cells 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import benchsuite
from benchsuite.engine import TrainContext, seed_everything, train
from benchsuite.method import Method
from benchsuite.needs import request_needs
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest, Task
from benchsuite_plugins.cifar.fake_release import write_fake_cifar


def make_context(method: Method, task: Task, device: torch.device, batch_size: int | None = None) -> TrainContext:
    seed_everything(0)
    recipe = task.recipe() if batch_size is None else task.recipe().with_budget({"batch_size": batch_size})
    data = task.prepare(PrepareRequest("symmetric", 0.4, 0, device, recipe.batch_size, needs=request_needs(method.needs())))
    model = task.build_model().to(device)
    total = recipe.total_steps(len(data.train))
    optimizer, scheduler = method.configure_optimizer(model, recipe, total)
    generator = torch.Generator(device=device).manual_seed(0)
    ctx = TrainContext(model, optimizer, scheduler, device, data, recipe, generator, total, len(data.train))
    method.start(ctx)
    return ctx


def step_time(method: Method, ctx: TrainContext, steps: int) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per ``train_step`` over ``steps`` steps on fresh batches of the
    training set; CPU is this thread's time, which other processes' time slices do not inflate."""
    batches = []
    while len(batches) < steps:
        batches += list(ctx.data.train.batches(ctx.generator))
    ctx.model.train()
    wall, cpu = time.perf_counter(), time.thread_time()
    for batch in batches[:steps]:
        out = method.train_step(ctx, batch)
        ctx.step += 1
    out.loss.item()  # wait for the device
    return (time.perf_counter() - wall) / steps, (time.thread_time() - cpu) / steps


def cell_time(method: Method, task: Task, device: torch.device) -> float:
    """Seconds for one run with the task's default recipe at 40% symmetric noise, seed 0."""
    spec = CellSpec(method.name, method.identity_config(), task.name, task.identity_config(), "symmetric", 0.4, 0,
                    method.version, task.version)  # fmt: skip
    tic = time.perf_counter()
    train(method, task, spec, device)
    return time.perf_counter() - tic


def load_task(name: str, root: str, train_per_class: int) -> Task:
    """``digits``, or ``cifar10`` as ResNet-20 on a synthetic release written under ``root``."""
    if name != "cifar10":
        return benchsuite.load_task(name)
    write_fake_cifar(root, "cifar10", train_per_class=train_per_class, test_per_class=2)
    return benchsuite.load_task("cifar10", root=root, model="resnet20")


def step_times(task: Task, device: torch.device, steps: int, repeats: int, batch_size: int | None = None) -> dict[str, list[tuple[float, float]]]:
    """Per method (``cce``, ``ieg``), ``repeats`` rounds of (wall, CPU) seconds per step; within a
    round the two run back to back, in alternating order, so that both see the same load."""
    methods = {"cce": benchsuite.load_method("cce"), "ieg": benchsuite.load_method("ieg")}
    contexts = {name: make_context(m, task, device, batch_size) for name, m in methods.items()}
    for name, m in methods.items():  # warm-up: first calls allocate and dispatch slowly
        step_time(m, contexts[name], 2)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    order = list(methods)
    for round_ in range(repeats):
        for name in order if round_ % 2 == 0 else order[::-1]:
            times[name].append(step_time(methods[name], contexts[name], steps))
    return times


def step_ratio(task: Task, device: torch.device, steps: int, repeats: int, batch_size: int | None = None) -> tuple[float, float]:
    """(median CCE step seconds, median IEG step seconds), in CPU time on a CPU device (wall time
    on a GPU, where the host thread waits), the two interleaved ``repeats`` times."""
    which = 1 if device.type == "cpu" else 0
    times = step_times(task, device, steps, repeats, batch_size)
    return statistics.median(t[which] for t in times["cce"]), statistics.median(t[which] for t in times["ieg"])


def describe_ratios(times: dict[str, list[tuple[float, float]]], which: int) -> str:
    """Median of the per-round IEG / CCE ratios, with their interquartile range and extremes."""
    ratios = sorted(i[which] / c[which] for i, c in zip(times["ieg"], times["cce"]))
    if len(ratios) < 2:
        return f"{ratios[0]:.2f}"
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{statistics.median(ratios):.2f} (IQR {q1:.2f}-{q3:.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits", choices=["digits", "cifar10"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (digits), 32 (cifar10)")
    parser.add_argument("--train-per-class", type=int, default=32, help="cifar10: synthetic training images per class")
    parser.add_argument("--cells", type=int, default=0, help="also time this many whole runs of each method")
    args = parser.parse_args()
    for option in ("steps", "repeats", "threads"):
        if getattr(args, option) < 1:
            parser.error(f"--{option}: at least 1, got {getattr(args, option)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_size = args.batch_size if args.batch_size is not None or args.task != "cifar10" else 32
    with tempfile.TemporaryDirectory(prefix="ieg_step_") as root:
        task = load_task(args.task, root, args.train_per_class)
        times = step_times(task, device, args.steps, args.repeats, batch_size)
        batch = batch_size or task.recipe().batch_size
        print(f"task={args.task} batch={batch} device={device} threads={args.threads} steps={args.steps} "
              f"repeats={args.repeats} load average {os.getloadavg()}")  # fmt: skip
        for which, clock in ((1, "CPU"), (0, "wall")):
            cce, ieg = (statistics.median(t[which] for t in times[name]) for name in ("cce", "ieg"))
            print(f"{clock:4}: cce {cce * 1e3:8.3f} ms, ieg {ieg * 1e3:8.3f} ms per step (medians); "
                  f"ieg/cce {describe_ratios(times, which)}  (target <= 6)")  # fmt: skip
        if args.cells:
            run_ratio(task, device, args.cells)


def run_ratio(task: Task, device: torch.device, cells: int) -> None:
    """Times ``cells`` whole runs of each method, alternating, and prints the median ratio."""
    methods = ("cce", "ieg")
    runs: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(cells):
        for name in methods:
            runs[name].append(cell_time(benchsuite.load_method(name), task, device))
    cce, ieg = statistics.median(runs["cce"]), statistics.median(runs["ieg"])
    print(f"cce median run time: {cce:8.2f} s")
    print(f"ieg median run time: {ieg:8.2f} s")
    print(f"run ratio ieg/cce: {ieg / cce:.2f}  (target <= 6)")


if __name__ == "__main__":
    main()
