"""Epoch time of benchsuite's engine divided by that of a minimal hand-written PyTorch loop, on the
digits MLP and on ResNet-20 with CIFAR-size data, interleaved in one run.

Both loops train the same model (the task's), on the same data (the task's prepared tensors), with
the same optimiser and batch size, and both evaluate test accuracy once per epoch, as any training
script does; both apply the task's batched training augmentation. The engine additionally records
memorisation, loss, lr and its schedule per epoch. Per round, every task's engine run and minimal
run follow each other, ``--repeats`` rounds in this one process, so that load from other processes
hits both sides alike; the ratio of median epoch times (first epoch of each run left out) is
printed per task. Target: <= 1.05 on both.

``digits`` is a tiny MLP whose steps take about a millisecond, so per-step bookkeeping weighs most;
``cifar10`` trains the CIFAR task's ResNet-20 (BatchNorm, pad-crop-flip augmentation, a multi-step
schedule) on a synthetic release in the official layout (random images, ``--train-per-class`` per
class, written to a temporary folder) at ``--cifar-batch-size``: the size at which a GPU user meets
the engine, at a batch small enough for a CPU to time a few hundred steps.

    python benchmarks/engine_overhead.py [--tasks digits,cifar10] [--epochs 20] [--cifar-epochs 4] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

import benchsuite
from benchsuite.engine import seed_everything, train
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest
from benchsuite_plugins.cifar.fake_release import write_fake_cifar

TASKS = ("digits", "cifar10")


def engine_epoch_times(task: benchsuite.Task, epochs: int, batch_size: int | None = None) -> list[float]:
    """Per-epoch seconds of a CCE cell run by the engine (40% symmetric noise, seed 0)."""
    method = benchsuite.load_method("cce")
    budget: dict[str, Any] = {"epochs": epochs} if batch_size is None else {"epochs": epochs, "batch_size": batch_size}
    spec = CellSpec("cce", {}, task.name, task.identity_config(), "symmetric", 0.4, 0, "1", task.version, budget=budget)
    record = train(method, task, spec, torch.device("cpu"))
    return [row["epoch_time"] for row in record.curves]


def minimal_epoch_times(task: benchsuite.Task, epochs: int, batch_size: int | None = None) -> list[float]:
    """Per-epoch seconds of the loop a user would write by hand over the same prepared data."""
    seed_everything(0)
    recipe = task.recipe()
    batch_size = recipe.batch_size if batch_size is None else batch_size
    data = task.prepare(PrepareRequest("symmetric", 0.4, 0, torch.device("cpu"), batch_size))
    x, y, batch, augment = data.train.x, data.train.y, data.train.batch_size, data.train.augment
    x_test, y_test = data.eval_data.test
    model = task.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        tic = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - batch + 1, batch):
            index = order[start : start + batch]
            inputs = x[index] if augment is None else augment(x[index], generator)
            loss = F.cross_entropy(model(inputs), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            (model(x_test).argmax(1) == y_test).float().mean().item()
        times.append(time.perf_counter() - tic)
    return times


def load_tasks(names: list[str], train_per_class: int, root: str) -> dict[str, benchsuite.Task]:
    """The tasks by name; ``cifar10`` is ResNet-20 on a synthetic release written under ``root``."""
    tasks = {}
    for name in names:
        if name == "cifar10":
            write_fake_cifar(root, "cifar10", train_per_class=train_per_class, test_per_class=max(1, train_per_class // 5))
            tasks[name] = benchsuite.load_task("cifar10", root=root, model="resnet20")
        else:
            tasks[name] = benchsuite.load_task(name)
    return tasks


def interleaved_ratios(tasks: dict[str, benchsuite.Task], plan: dict[str, tuple[int, int | None]], repeats: int) -> dict[str, tuple[float, float]]:
    """Per task: (median engine epoch seconds, median minimal epoch seconds); ``plan`` gives each
    task's (epochs, batch size or None for the recipe's). Each round runs every task's two sides
    back to back, so that machine load drifting over the run hits all of them alike."""
    engine: dict[str, list[float]] = {name: [] for name in tasks}
    minimal: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            epochs, batch_size = plan[name]
            engine[name] += engine_epoch_times(task, epochs, batch_size)[1:]
            minimal[name] += minimal_epoch_times(task, epochs, batch_size)[1:]
    return {name: (statistics.median(engine[name]), statistics.median(minimal[name])) for name in tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--epochs", type=int, default=20, help="digits: epochs per run (9 steps each)")
    parser.add_argument("--cifar-epochs", type=int, default=4, help="cifar10: epochs per run")
    parser.add_argument("--cifar-batch-size", type=int, default=32)
    parser.add_argument("--train-per-class", type=int, default=32, help="cifar10: synthetic training images per class")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a grid cell runs on one)")
    args = parser.parse_args()
    names = [n for n in args.tasks.split(",") if n]
    if not names or any(n not in TASKS for n in names):
        parser.error(f"--tasks: choose among {', '.join(TASKS)}, got {args.tasks!r}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="engine_overhead_") as root:
        report(load_tasks(names, args.train_per_class, root), args)


def report(tasks: dict[str, benchsuite.Task], args: argparse.Namespace) -> None:
    plan = {"digits": (args.epochs, None), "cifar10": (args.cifar_epochs, args.cifar_batch_size)}
    print(f"threads={args.threads} repeats={args.repeats} load average before {os.getloadavg()}")
    for name, (e, m) in interleaved_ratios(tasks, plan, args.repeats).items():
        model = tasks[name].build_model()
        size = sum(p.numel() for p in model.parameters())
        epochs, batch = plan[name]
        print(f"{name}: {type(model).__name__} {size:,} parameters, batch {batch or tasks[name].recipe().batch_size}, "
              f"{epochs} epochs x {args.repeats}: engine {e * 1e3:8.2f} ms, minimal {m * 1e3:8.2f} ms per epoch, "
              f"ratio engine/minimal {e / m:.3f}  (target <= 1.05)")  # fmt: skip
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
