"""Epoch time of benchsuite's engine divided by that of a minimal hand-written PyTorch loop.

Both train the same model (the task's), on the same data (the task's prepared tensors), with the
same optimiser and batch size, and both evaluate test accuracy once per epoch, as any training
script does; both apply the task's batched training augmentation. The engine additionally records
memorisation, loss, lr and its schedule per epoch. The two are run alternately, ``--repeats`` times
each, in this one process; the ratio of median epoch times is printed. Target: <= 1.05.

``--task digits`` (the default) is a tiny MLP whose steps take about a millisecond, so per-step
bookkeeping weighs most; ``--task cifar10`` trains the CIFAR task's ResNet-20 with its pad-crop-flip
augmentation on a synthetic release in the official layout (random images, ``--train-per-class``
per class, written to a temporary folder), the size at which a GPU user meets the engine.

    python benchmarks/engine_overhead.py [--task digits|cifar10] [--epochs 20] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import benchsuite
from benchsuite.engine import seed_everything, train
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest
from benchsuite_plugins.cifar.fake_release import write_fake_cifar


def engine_epoch_times(task: benchsuite.Task, epochs: int) -> list[float]:
    method = benchsuite.load_method("cce")
    spec = CellSpec("cce", {}, task.name, task.identity_config(), "symmetric", 0.4, 0, "1", task.version, budget={"epochs": epochs})
    record = train(method, task, spec, torch.device("cpu"))
    return [row["epoch_time"] for row in record.curves]


def minimal_epoch_times(task: benchsuite.Task, epochs: int) -> list[float]:
    seed_everything(0)
    recipe = task.recipe()
    data = task.prepare(PrepareRequest("symmetric", 0.4, 0, torch.device("cpu"), recipe.batch_size))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits", choices=["digits", "cifar10"])
    parser.add_argument("--train-per-class", type=int, default=100, help="cifar10: synthetic training images per class")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.task == "cifar10":
        root = tempfile.mkdtemp(prefix="engine_overhead_")
        write_fake_cifar(root, "cifar10", train_per_class=args.train_per_class, test_per_class=args.train_per_class // 5)
        task = benchsuite.load_task("cifar10", root=root)
    else:
        task = benchsuite.load_task(args.task)
    engine, minimal = [], []
    for _ in range(args.repeats):  # alternate, so that machine noise hits both alike
        engine += engine_epoch_times(task, args.epochs)[1:]
        minimal += minimal_epoch_times(task, args.epochs)[1:]
    e, m = statistics.median(engine), statistics.median(minimal)
    size = sum(p.numel() for p in task.build_model().parameters())
    print(f"task={args.task} parameters={size:,} threads={args.threads} epochs={args.epochs} repeats={args.repeats}")
    print(f"engine  median epoch time: {e * 1e3:8.2f} ms")
    print(f"minimal median epoch time: {m * 1e3:8.2f} ms")
    print(f"ratio engine/minimal: {e / m:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
