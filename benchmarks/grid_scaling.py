"""Throughput of the executors on one machine: wall time of the same small ``digits`` grid run by
``benchsuite run`` sequentially (``local``), on a worker pool and on a local Ray, in one run.

Each measurement is a fresh ``benchsuite run`` process into an empty results database, timed from
launch to exit: it includes everything a user waits for (interpreter start, imports, the data
set, spawning workers or starting Ray), and every mode starts equally cold. The modes are run
``--repeats`` times in alternating order (A B C, C B A, ...) and each mode's wall times are summed,
so that a load that drifts during the run (a shared machine) weighs on every mode alike.

Threads, for a fair comparison on N cores: ``local`` is timed with torch using 1 thread and with
N threads (intra-op parallelism over all cores, the best a single process can do), set through
``OMP_NUM_THREADS``; ``pool`` runs N workers with 1 thread each (one cell per core); ``ray``
reserves 1 CPU and 1 thread per cell on a Ray started with N CPUs. The printed speed-up is a
local wall time divided by the executor's. Target: pool >= 1.6 x on 2 cores. The pool pays a fixed
start-up per worker (a process importing torch, the plugins and the data) that ``local`` pays once,
so its advantage grows with the cells' length; the default cells (300 epochs, about 8 s each with
one thread on this 2-core machine) are long enough for the start-up to matter little.

    python benchmarks/grid_scaling.py [--cells 8] [--epochs 300] [--width 256] [--workers 2] [--repeats 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(cli: list[str], folder: Path, name: str, threads: int | None) -> float:
    """Wall seconds of one ``benchsuite run`` into a new database; fails loudly if a cell did not complete."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "benchsuite", "run", *cli, "--results", str(folder / f"{name}.sqlite")]
    tic = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - tic
    if result.returncode != 0:
        raise SystemExit(f"{name}: benchsuite run failed ({result.returncode}):\n{result.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8, help="cells in the grid (seeds of cce on digits)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--width", type=int, default=256, help="digits MLP width")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool workers (= cores used)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the modes, in alternating order")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = parser.parse_args()

    grid = [
        "-m", "cce", "-t", f"digits{{width = {args.width}}}", "--noise", "symmetric:0.4",
        "--seeds", ",".join(str(s) for s in range(args.cells)), "--epochs", str(args.epochs),
        "--device", "cpu", "--no-progress", "--no-leaderboard",
    ]  # fmt: skip
    n = args.workers
    modes: list[tuple[str, list[str], int | None]] = [
        ("local, 1 thread", [], 1),
        (f"local, {n} threads", [], n),
        (f"pool, {n} workers x 1 thread", ["--executor", f"pool{{workers = {n}, threads_per_worker = 1}}"], None),
    ]
    if not args.no_ray:
        modes.append((f"ray, {n} CPUs, 1 per cell", ["--executor", f"ray{{num_cpus = {n}, cpus_per_cell = 1}}"], None))

    walls = {label: 0.0 for label, _, _ in modes}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            order = list(enumerate(modes))
            for i, (label, executor, threads) in order if repeat % 2 == 0 else order[::-1]:
                wall = timed_run(grid + executor, Path(folder), f"run{repeat}-{i}", threads)
                walls[label] += wall
                print(f"{label:<30} {wall:8.1f} s", flush=True)

    local_1, local_n = walls[modes[0][0]], walls[modes[1][0]]
    print(f"\n{args.cells} cells of cce on digits (width {args.width}, {args.epochs} epochs), {os.cpu_count()} cores, "
          f"{args.repeats} passes; total wall per mode: " + ", ".join(f"{k} {v:.1f} s" for k, v in walls.items()))
    for label, wall in walls.items():
        if not label.startswith("local"):
            print(f"{label}: {local_1 / wall:.2f}x the throughput of local with 1 thread, {local_n / wall:.2f}x of local with {n} threads")


if __name__ == "__main__":
    main()
