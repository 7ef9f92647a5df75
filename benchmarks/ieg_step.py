"""IEG training-step time divided by CCE training-step time, on the same model and batch.

Both methods get the task's model, optimiser setup and a batch of the task's prepared data (with
IEG's trusted set held out); each times ``--steps`` consecutive ``train_step`` calls, the two
alternating ``--repeats`` times in this one process so that machine noise hits both alike. The
ratio of the median per-step times is printed. Target: <= 6 (the L2R meta step alone costs about
three CCE steps).

What to expect on a compute-bound model (the digits MLP on a CPU): counting batch-sized matrix
products, a CCE step is 3 (forward) + 5 (backward). IEG adds to that the strong-view forward (3),
the MixUp forward of 3B rows (9), the meta step (look-ahead backward with graph 5, probe forward
3, second-order backward about 10) and the backward of the strong and MixUp graphs (5 + 15):
about 58 products, 7 CCE steps, before any overhead.

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
import statistics
import tempfile
import time

import torch

import benchsuite
from benchsuite.engine import TrainContext, seed_everything, train
from benchsuite.method import Method
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest, Task
from benchsuite_plugins.cifar.fake_release import write_fake_cifar


def make_context(method: Method, task: Task, device: torch.device, batch_size: int | None = None) -> TrainContext:
    seed_everything(0)
    recipe = task.recipe() if batch_size is None else task.recipe().with_budget({"batch_size": batch_size})
    per_class = method.trusted_per_class() if method.requires_trusted_set else 0
    data = task.prepare(PrepareRequest("symmetric", 0.4, 0, device, recipe.batch_size, trusted_per_class=per_class))
    model = task.build_model().to(device)
    total = recipe.total_steps(len(data.train))
    optimizer, scheduler = method.configure_optimizer(model, recipe, total)
    generator = torch.Generator(device=device).manual_seed(0)
    ctx = TrainContext(model, optimizer, scheduler, device, data, recipe, generator, total, len(data.train))
    method.start(ctx)
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


def step_ratio(task: Task, device: torch.device, steps: int, repeats: int, batch_size: int | None = None) -> tuple[float, float]:
    """(median CCE step seconds, median IEG step seconds), the two alternating ``repeats`` times."""
    methods = {"cce": benchsuite.load_method("cce"), "ieg": benchsuite.load_method("ieg")}
    contexts = {name: make_context(m, task, device, batch_size) for name, m in methods.items()}
    for name, m in methods.items():  # warm-up: first calls allocate and dispatch slowly
        step_time(m, contexts[name], 2)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, m in methods.items():
            times[name].append(step_time(m, contexts[name], steps))
    return statistics.median(times["cce"]), statistics.median(times["ieg"])


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
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_size = args.batch_size if args.batch_size is not None or args.task != "cifar10" else 32
    with tempfile.TemporaryDirectory(prefix="ieg_step_") as root:
        task = load_task(args.task, root, args.train_per_class)
        cce, ieg = step_ratio(task, device, args.steps, args.repeats, batch_size)
        batch = batch_size or task.recipe().batch_size
        print(f"task={args.task} batch={batch} device={device} threads={args.threads} steps={args.steps} repeats={args.repeats}")
        print(f"cce median step time: {cce * 1e3:8.3f} ms")
        print(f"ieg median step time: {ieg * 1e3:8.3f} ms")
        print(f"ratio ieg/cce: {ieg / cce:.2f}  (target <= 6)")
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
