"""CPU (or GPU) training throughput of a CIFAR network, in images per second, with and without
channels_last activations.

One training step is what the CIFAR tasks run: batched pad-crop-flip of a uint8 batch, the
normalising first layer, forward, cross entropy, backward, SGD with momentum and weight decay.
The two memory formats run alternately, ``--repeats`` times each, in this one process, on the
same synthetic images; the median throughput of each and their ratio are printed.

    python benchmarks/cifar_throughput.py [--model resnet20] [--batch-size 128] [--steps 20] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchsuite.toolkit.augment import random_crop_flip
from benchsuite.toolkit.models.normalize import Normalized
from benchsuite_plugins.cifar.base import CIFAR10_STATS
from benchsuite_plugins.cifar.models import CIFAR_MODELS, build_cifar_model


def throughput(model_name: str, channels_last: bool, batch_size: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = Normalized(build_cifar_model(model_name, 10), *CIFAR10_STATS, channels_last=channels_last).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch_size * 4, 3, 32, 32), dtype=torch.uint8, generator=generator, device=device)
    labels = torch.randint(0, 10, (batch_size * 4,), generator=generator, device=device)

    def step(i: int) -> None:
        index = torch.arange(i % 4 * batch_size, (i % 4 + 1) * batch_size, device=device)
        loss = F.cross_entropy(model(random_crop_flip(images[index], generator)), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(2):  # warm-up: kernel selection, allocator
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=CIFAR_MODELS)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):  # alternate, so that machine noise hits both alike
        for channels_last in (False, True):
            runs[channels_last].append(throughput(args.model, channels_last, args.batch_size, args.steps, device))
    plain, nhwc = statistics.median(runs[False]), statistics.median(runs[True])
    print(f"model={args.model} batch={args.batch_size} steps={args.steps} repeats={args.repeats} threads={args.threads} device={device}")
    print(f"contiguous (NCHW): {plain:8.1f} images/s   runs: {', '.join(f'{v:.1f}' for v in runs[False])}")
    print(f"channels_last:     {nhwc:8.1f} images/s   runs: {', '.join(f'{v:.1f}' for v in runs[True])}")
    print(f"ratio channels_last/contiguous: {nhwc / plain:.3f}")


if __name__ == "__main__":
    main()
