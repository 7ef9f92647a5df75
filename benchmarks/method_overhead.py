"""Training-step time of every method divided by CCE's, on ResNet-20, batch 128, 32×32.

A step is the method's own ``train_step`` as the engine calls it: for a loss method, forward,
``compute`` on the float32 logits, backward and SGD step; for mixup, also the mixing and the
unmixed forward it reports its fit from; for the trusted-set baselines, their trusted batches
(100 trusted examples, 10 per class; 390 steps per epoch, as CIFAR-10 at batch 128). Every method
trains the same model on the same batch, each with its own context (its own state: trusted
stream, transition matrix, λ generator). Forward correction is timed with a given T (symmetric,
ρ = 0.4): its estimated T costs the same per step, plus one pass over the training set per cell.
The other step-level methods have their own benchmarks (``ieg_step.py``, ``step_methods.py``).

Each round visits the methods in a fresh random order and times each one's step right next to a
CCE step (in random order within the pair), so load changes on a shared machine hit both sides
of a pair alike; the printed ratio is the median over rounds of (method step / paired CCE step).

Step times on a shared machine are noisy, so for loss methods it also times the method's own work
alone — ``compute`` and its backward on the batch's logits, interleaved the same way — and prints
its excess over CCE's as a fraction of CCE's step: the overhead the step ratio estimates, without
the model's noise.

    python benchmarks/method_overhead.py [--rounds 15] [--batch-size 128] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import nn

import benchsuite
from benchsuite.engine import TrainContext
from benchsuite.method import LossMethod, Method
from benchsuite.task import Batch, NoiseRecord, PreparedData, Recipe, TensorTrainSource
from benchsuite_plugins.cifar.models.resnet import CifarResNet

#: Settings timed instead of the defaults, and why.
TIMED_AS = {"forward": {"transition": "symmetric", "flip_rate": 0.4}}  # the corrected loss, not its CCE warm-up
#: Step-level methods timed here: CCE steps on other examples. The other step-level methods have
#: their own benchmarks (ieg_step.py; step_methods.py for Co-teaching, ELR and DivideMix).
STEP_METHODS = ("trusted_only", "cce_trusted")
STEPS_PER_EPOCH = 390
TRUSTED_PER_CLASS = 10


def context(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, classes: int) -> TrainContext:
    """What ``train_step`` may use: the shared model and optimiser, a training set made of the
    benchmark's batch, a trusted set of ``TRUSTED_PER_CLASS`` random images per class."""
    g = torch.Generator().manual_seed(1)
    trusted_y = torch.arange(classes).repeat_interleave(TRUSTED_PER_CLASS)
    trusted = TensorTrainSource(torch.randn(len(trusted_y), *batch.x.shape[1:], generator=g), trusted_y, len(batch.y), drop_last=False)
    data = PreparedData(
        train=TensorTrainSource(batch.x, batch.y, len(batch.y)),
        noisy_labels=batch.y,
        true_labels=batch.y,
        truth_known=torch.ones(len(batch.y), dtype=torch.bool),
        noise=NoiseRecord("none", 0.0, 0, 0.0, 0),
        trusted=trusted,
    )
    recipe = Recipe(epochs=1, batch_size=len(batch.y), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    return TrainContext(model, optimizer, None, torch.device("cpu"), data, recipe, generator, 10**6, STEPS_PER_EPOCH)


def step_time(method: Method, ctx: TrainContext, batch: Batch) -> float:
    tic = time.perf_counter()
    method.train_step(ctx, batch)
    ctx.step += 1
    return time.perf_counter() - tic


def loss_time(method: LossMethod, logits: torch.Tensor, y: torch.Tensor, repeats: int = 20) -> float:
    """Mean time of ``compute`` plus its backward on fixed logits."""
    tic = time.perf_counter()
    for _ in range(repeats):
        z = logits.detach().requires_grad_(True)
        method.compute(z, y).loss.backward()
    return (time.perf_counter() - tic) / repeats


def timed_methods() -> dict[str, Method]:
    """Every loss method, and ``STEP_METHODS``."""
    methods = {}
    for name in benchsuite.list_methods():
        method = benchsuite.load_method(name, **TIMED_AS.get(name, {}))
        if isinstance(method, LossMethod) or name in STEP_METHODS:
            methods[name] = method
    return methods


def paired_ratios(
    methods: dict[str, Method], contexts: dict[str, TrainContext], batch: Batch, rounds: int, rng: random.Random
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per method, its step times and its ratios to the CCE step timed beside it."""
    others = [name for name in methods if name != "cce"]
    times: dict[str, list[float]] = {name: [] for name in methods}
    ratios: dict[str, list[float]] = {"cce": [1.0], **{name: [] for name in others}}
    for _ in range(rounds):
        rng.shuffle(others)
        for name in others:
            pair = [name, "cce"] if rng.random() < 0.5 else ["cce", name]
            timed = {m: step_time(methods[m], contexts[m], batch) for m in pair}
            for m in pair:
                times[m].append(timed[m])
            ratios[name].append(timed[name] / timed["cce"])
    return times, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CifarResNet(20, args.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = Batch(torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, args.num_classes, (args.batch_size,)), torch.arange(args.batch_size))
    methods = timed_methods()
    contexts = {name: context(model, optimizer, batch, args.num_classes) for name in methods}
    for name, method in methods.items():  # start, then warm up: allocator, kernels, lazy state
        method.start(contexts[name])
        step_time(method, contexts[name], batch)
    rng = random.Random(0)
    times, ratios = paired_ratios(methods, contexts, batch, args.rounds, rng)
    losses = {name: m for name, m in methods.items() if isinstance(m, LossMethod)}
    logits = model(batch.x).detach()
    order = list(losses)
    loss_times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            loss_times[name].append(loss_time(losses[name], logits, batch.y))
    cce_step = statistics.median(times["cce"])
    cce_loss = statistics.median(loss_times["cce"])
    print(f"model: ResNet-20 (option A), {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
          f"batch {args.batch_size}×3×32×32, {args.num_classes} classes; threads={args.threads}; rounds={args.rounds}")
    print(f"CCE median step time: {cce_step * 1e3:.1f} ms; timed as: {TIMED_AS}")
    print(f"{'method':<16}{'median step (ms)':>18}{'paired ratio':>14}{'loss fwd+bwd (us)':>19}{'loss excess / CCE step':>24}")
    for name in sorted(methods):
        ratio = statistics.median(ratios[name])
        loss_cols = f"{'-':>19}{'-':>24}"
        if name in losses:
            loss = statistics.median(loss_times[name])
            loss_cols = f"{loss * 1e6:>19.0f}{(loss - cce_loss) / cce_step:>24.4%}"
        print(f"{name:<16}{statistics.median(times[name]) * 1e3:>18.1f}{ratio:>14.3f}{loss_cols}")


if __name__ == "__main__":
    main()
