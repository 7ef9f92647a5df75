"""Throughput of the executors on one machine: wall time of the same small ``digits`` grid run
sequentially in this process (``local``) and on a worker pool (and on a local Ray), in one run.

Threads, for a fair comparison on N cores: ``local`` is timed twice, with torch using 1 thread and
with N threads (intra-op parallelism over the cores, the best a single process can do); ``pool``
runs N workers with 1 thread each (one cell per core); ``ray`` reserves 1 CPU and 1 thread per
cell on a Ray started here with N CPUs. Every run starts from an empty results database and its
wall time includes everything a user waits for: spawning workers, their imports and data loading
(``local`` runs in a process whose imports and data are already warm, which favours it). The
printed speed-up is local wall time / executor wall time. Target: pool >= 1.6 x on 2 cores.

    python benchmarks/grid_scaling.py [--cells 8] [--epochs 100] [--width 256] [--workers 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchsuite.executors import Executor, LocalExecutor, PoolExecutor, RayExecutor
from benchsuite.grid import expand, grid_from_dict
from benchsuite.plugins import get_host
from benchsuite.runner import execute_cell, run_grid
from benchsuite.store import ResultStore


def timed_grid(grid: dict, executor: Executor, folder: Path) -> tuple[float, int]:
    """Wall seconds of one grid run on ``executor`` into a new database, and its completed cells."""
    expansion = expand(grid_from_dict(grid), get_host())
    with ResultStore(folder / f"{executor.name}-{time.monotonic_ns()}.sqlite") as store:
        tic = time.perf_counter()
        outcome = run_grid(expansion, store, device="cpu", progress=False, executor=executor)
        return time.perf_counter() - tic, outcome.statuses["completed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8, help="cells in the grid (seeds of cce on digits)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--width", type=int, default=256, help="digits MLP width")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool workers (= cores used)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = parser.parse_args()

    grid = {
        "method": ["cce"],
        "task": [f"digits{{width = {args.width}}}"],
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "seeds": list(range(args.cells)),
        "budget": {"epochs": args.epochs},
    }
    warm = expand(grid_from_dict({**grid, "seeds": [0], "budget": {"epochs": 1}}), get_host()).cells[0]
    execute_cell(warm, "cpu")  # imports and the data set, so that local is timed warm

    runs: list[tuple[str, Executor, int | None]] = [
        ("local, 1 thread", LocalExecutor(), 1),
        (f"local, {args.workers} threads", LocalExecutor(), args.workers),
        (f"pool, {args.workers} workers x 1 thread", PoolExecutor(workers=args.workers, threads_per_worker=1), None),
    ]
    if not args.no_ray:
        runs.append((f"ray, {args.workers} CPUs, 1 per cell", RayExecutor(num_cpus=args.workers, cpus_per_cell=1), None))

    threads = torch.get_num_threads()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, executor, local_threads in runs:
            torch.set_num_threads(local_threads or threads)
            wall, completed = timed_grid(grid, executor, Path(folder))
            assert completed == args.cells, f"{label}: only {completed} of {args.cells} cells completed"
            results[label] = wall
            print(f"{label:<34} {wall:8.1f} s", flush=True)
    torch.set_num_threads(threads)

    local_1, local_n = results[runs[0][0]], results[runs[1][0]]
    print(f"\n{args.cells} cells of cce on digits (width {args.width}, {args.epochs} epochs), {os.cpu_count()} cores")
    for label, wall in results.items():
        if label.startswith("local"):
            continue
        print(f"{label}: {local_1 / wall:.2f}x the throughput of local 1 thread, {local_n / wall:.2f}x of local {args.workers} threads")


if __name__ == "__main__":
    main()
