"""Training-step time of every loss method divided by CCE's, on ResNet-20, batch 128, 32×32.

A step is what ``LossMethod.train_step`` does: forward, ``compute`` on the float32 logits, backward,
SGD step. All methods train the same model on the same batch. Each round visits the methods in a
fresh random order and times each one's step right next to a CCE step (in random order within the
pair), so load changes on a shared machine hit both sides of a pair alike; the printed ratio is the
median over rounds of (method step / paired CCE step). Target: <= 1.05.

Step times on a shared machine are noisy, so it also times the method's own work alone — ``compute``
and its backward on the batch's logits, interleaved the same way — and prints its excess over
CCE's as a fraction of CCE's step: the overhead the step ratio estimates, without the model's noise.

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
from benchsuite.method import LossMethod
from benchsuite_plugins.cifar.models.resnet import CifarResNet


def step_time(method: LossMethod, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    tic = time.perf_counter()
    logits = model(x)
    loss = method.compute(logits.float(), y).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - tic


def loss_time(method: LossMethod, logits: torch.Tensor, y: torch.Tensor, repeats: int = 20) -> float:
    """Mean time of ``compute`` plus its backward on fixed logits."""
    tic = time.perf_counter()
    for _ in range(repeats):
        z = logits.detach().requires_grad_(True)
        method.compute(z, y).loss.backward()
    return (time.perf_counter() - tic) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    methods = {}
    for name in benchsuite.list_methods():
        method = benchsuite.load_method(name)
        if isinstance(method, LossMethod):
            methods[name] = method
    model = CifarResNet(20, args.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, args.num_classes, (args.batch_size,))
    for method in methods.values():  # warm-up: allocator, kernels, lazy state
        step_time(method, model, optimizer, x, y)
    rng = random.Random(0)
    others = [name for name in methods if name != "cce"]
    times: dict[str, list[float]] = {name: [] for name in methods}
    ratios: dict[str, list[float]] = {"cce": [1.0], **{name: [] for name in others}}
    for _ in range(args.rounds):
        rng.shuffle(others)
        for name in others:
            pair = [name, "cce"] if rng.random() < 0.5 else ["cce", name]
            timed = {m: step_time(methods[m], model, optimizer, x, y) for m in pair}
            for m in pair:
                times[m].append(timed[m])
            ratios[name].append(timed[name] / timed["cce"])
    logits = model(x).detach()
    order = list(methods)
    loss_times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            loss_times[name].append(loss_time(methods[name], logits, y))
    cce_step = statistics.median(times["cce"])
    cce_loss = statistics.median(loss_times["cce"])
    print(f"model: ResNet-20 (option A), {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
          f"batch {args.batch_size}×3×32×32, {args.num_classes} classes; threads={args.threads}; rounds={args.rounds}")
    print(f"CCE median step time: {cce_step * 1e3:.1f} ms")
    print(f"{'method':<16}{'median step (ms)':>18}{'paired ratio':>14}{'loss fwd+bwd (us)':>19}{'loss excess / CCE step':>24}")
    for name in sorted(methods):
        ratio = statistics.median(ratios[name])
        loss = statistics.median(loss_times[name])
        flag = "" if ratio <= 1.05 else "  > 1.05"
        print(f"{name:<16}{statistics.median(times[name]) * 1e3:>18.1f}{ratio:>14.3f}{loss * 1e6:>19.0f}"
              f"{(loss - cce_loss) / cce_step:>24.4%}{flag}")


if __name__ == "__main__":
    main()
