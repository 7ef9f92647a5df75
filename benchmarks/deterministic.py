"""Cost of deterministic kernels: a cell's epoch time with ``deterministic`` on, divided by off.

The same cell (method, task, noise, seed, budget) is trained alternately without and with
deterministic kernels (``benchsuite.reproducibility``: torch's deterministic algorithms, cuDNN's
deterministic mode, cuBLAS's fixed workspace), ``--repeats`` times each, in this one process; the
ratio of median epoch times is printed, and whether the two settings gave the same numbers. On CUDA
that ratio is the price of ``--deterministic``; on the CPU the built-in kernels are deterministic
already, so it measures the flag's bookkeeping alone.

    python benchmarks/deterministic.py [--method gr] [--task digits] [--epochs 10] [--repeats 5] [--device auto] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

import benchsuite
from benchsuite.engine import resolve_device, train
from benchsuite.reproducibility import CUBLAS_WORKSPACE
from benchsuite.spec import CellSpec


def epoch_times(method: str, task: str, epochs: int, device: torch.device, deterministic: bool) -> tuple[list[float], float]:
    """Per-epoch wall times of one run, and its final test accuracy."""
    instance, task_instance = benchsuite.load_method(method), benchsuite.load_task(task)
    spec = CellSpec(
        method, instance.identity_config(), task, task_instance.identity_config(), "symmetric", 0.4, 0, "1", "1",
        budget={"epochs": epochs}, deterministic=deterministic,
    )  # fmt: skip
    record = train(instance, task_instance, spec, device)
    return [row["epoch_time"] for row in record.curves[1:]], record.final["test_acc"]  # epoch 1 warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="gr")
    parser.add_argument("--task", default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # before the first cuBLAS call, as the CLI does
    device = resolve_device(args.device)
    times: dict[bool, list[float]] = {False: [], True: []}
    finals: dict[bool, set[float]] = {False: set(), True: set()}
    for _ in range(args.repeats):
        for deterministic in (False, True):
            run, final = epoch_times(args.method, args.task, args.epochs, device, deterministic)
            times[deterministic] += run
            finals[deterministic].add(final)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"{args.method} on {args.task}, {device}, {args.threads} thread(s), {args.repeats} runs of {args.epochs} epochs each")
    print(f"median epoch: {off * 1e3:.1f} ms plain, {on * 1e3:.1f} ms deterministic; ratio {on / off:.3f}")
    print(f"final test accuracy: plain {sorted(finals[False])}, deterministic {sorted(finals[True])}")


if __name__ == "__main__":
    main()
