"""The main job's cost: each method's cell cost, the engine's and IEG's step ratios, and the wall
time of the README's main command (``benchsuite run``), in one run.

1. Cell cost per method of the main job (``benchsuite.grid.MAIN_GRID``): one whole cell (plugin
   instantiation, data preparation from the per-process cache, training, per-epoch evaluation,
   the record) at 40 % symmetric noise, seed 0, on one torch thread, as a pool worker runs it;
   the methods alternate, ``--repeats`` times, and the medians of CPU and wall time are printed.
   On one thread the CPU time is the cell's time on a core of its own, whatever else loads the
   machine meanwhile: it is the cost the table keeps. A pool worker's start-up (a fresh process
   importing torch and the plugins and loading the digits) is timed too.
2. Engine / minimal loop (``engine_overhead.py``) and IEG step / CCE step (``ieg_step.py``), on
   digits and on ResNet-20 with a synthetic CIFAR-size release (``--no-cifar`` skips it: minutes
   on a CPU), each pair's two sides interleaved in this process, so that load from other
   processes hits both alike.
3. The main command, in a fresh temporary folder, timed from start to exit, next to the duration
   it predicted (``--no-main`` skips it; ``--main-args`` passes options, e.g. ``--epochs 10``).

``--write-costs`` stores the cell costs and the start-up time in ``benchsuite/cell_costs.json``,
the table ``run`` estimates durations from.

    python benchmarks/default_grid.py [--repeats 3] [--no-main] [--no-cifar] [--write-costs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchsuite.executors.pool import limit_threads

limit_threads(1)  # before torch starts its thread pools: every figure here is one thread's

import torch  # noqa: E402

import benchsuite  # noqa: E402
import engine_overhead  # noqa: E402
import ieg_step  # noqa: E402
from benchsuite.costs import COSTS_FILE, estimate, format_duration  # noqa: E402
from benchsuite.grid import MAIN_GRID, expand, grid_from_dict  # noqa: E402
from benchsuite.plugins import get_host  # noqa: E402
from benchsuite.cell import execute_cell  # noqa: E402

#: ResNet-20 on a synthetic CIFAR-10 release: small enough for a CPU to time in minutes.
CIFAR_TRAIN_PER_CLASS, CIFAR_BATCH_SIZE, CIFAR_EPOCHS, CIFAR_STEPS = 32, 32, 3, 2

STARTUP = (
    "import time; tic = time.perf_counter()\n"
    "from benchsuite.executors.pool import limit_threads; limit_threads(1)\n"
    "import torch, torch._dynamo\n"  # the first optimizer a process builds imports torch._dynamo
    "from benchsuite.plugins import get_host; get_host()\n"
    "from benchsuite_plugins.digits.digits import load_split; load_split()\n"
    "print(time.perf_counter() - tic)\n"
)


def method_cells() -> dict[str, object]:
    """One cell per distinct training of the main job (``gr`` and ``dm`` are one) at noise 0.4, seed 0."""
    grid = grid_from_dict({**MAIN_GRID, "noise": {"kind": "symmetric", "rates": [0.4]}, "seeds": [0]})
    return {cell.method: cell for cell in expand(grid, get_host()).cells}


def cell_costs(repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per method: (median wall seconds, median CPU seconds) of a cell. On one thread the CPU
    time is what the cell takes on a core of its own, however loaded the machine is while it is
    measured: the shipped table holds it."""
    cells = method_cells()
    for spec in cells.values():  # warm-up: the data cache, first dispatches
        execute_cell(spec, "cpu")
    wall: dict[str, list[float]] = {name: [] for name in cells}
    cpu: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(repeats):
        for name, spec in cells.items():
            tic, cpu_tic = time.perf_counter(), time.process_time()
            record = execute_cell(spec, "cpu")
            wall[name].append(time.perf_counter() - tic)
            cpu[name].append(time.process_time() - cpu_tic)
            assert record.status == "completed", record.error
    return {n: statistics.median(t) for n, t in wall.items()}, {n: statistics.median(t) for n, t in cpu.items()}


def worker_startup(repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of a fresh worker process's start-up."""
    wall, cpu = [], []
    for _ in range(repeats):
        before = os.times()
        wall.append(float(subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True).stdout))
        after = os.times()
        cpu.append(after.children_user + after.children_system - before.children_user - before.children_system)
    return statistics.median(wall), statistics.median(cpu)


def step_ratios(repeats: int, cifar: bool) -> dict[str, float]:
    """Engine / minimal epoch time and IEG / CCE step time, on digits and (``cifar``) on ResNet-20
    with a synthetic CIFAR-size release, each pair interleaved (``engine_overhead.py``,
    ``ieg_step.py``); keyed ``"engine/minimal digits"`` etc."""
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory(prefix="default_grid_cifar_") as root:
        names = ["digits", "cifar10"] if cifar else ["digits"]
        tasks = engine_overhead.load_tasks(names, CIFAR_TRAIN_PER_CLASS, root)
        plan = {"digits": (20, None, max(repeats, 9)), "cifar10": (CIFAR_EPOCHS, CIFAR_BATCH_SIZE, repeats)}
        ratios = {}
        for name, paired in engine_overhead.interleaved_ratios(tasks, plan).items():
            ratios[f"engine/minimal {name} (CPU, median of rounds)"] = paired.median_ratio()
            ratios[f"engine/minimal logging loss and accuracy {name}"] = paired.median_ratio(baseline="logged")
        for name, task in tasks.items():
            steps, batch_size = (50, None) if name == "digits" else (CIFAR_STEPS, CIFAR_BATCH_SIZE)
            cce, ieg = ieg_step.step_ratio(task, device, steps, max(repeats, 5) if name == "digits" else repeats, batch_size)
            ratios[f"ieg/cce step {name}"] = ieg / cce
    return ratios


def main_job(extra: list[str]) -> float:
    """Wall seconds of ``benchsuite run`` (with ``extra``) in a fresh folder; its output streams through."""
    command = [str(Path(sys.executable).with_name("benchsuite")), "run", *extra]
    with tempfile.TemporaryDirectory(prefix="benchsuite-main-job-") as folder:
        tic = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - tic


def describe_machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-main", action="store_true", help="do not time the main command")
    parser.add_argument("--no-cifar", action="store_true", help="ratios on digits only (ResNet-20 takes minutes on a CPU)")
    parser.add_argument("--main-args", default="", help="options for the main command, e.g. '--epochs 10'")
    parser.add_argument("--write-costs", action="store_true", help=f"store the cell costs in {COSTS_FILE.name}")
    args = parser.parse_args()
    machine = describe_machine()
    print(f"machine: {machine}")
    walls, costs = cell_costs(args.repeats)
    startup_wall, startup = worker_startup(args.repeats)
    epochs = benchsuite.load_task("digits").recipe().epochs
    print(f"cell cost on one thread (digits, {epochs} epochs, median of {args.repeats}): CPU seconds (wall seconds)")
    print(f"  {'worker start-up':<15} {startup:6.2f} s  ({startup_wall:6.2f} s)")
    for name, seconds in costs.items():
        print(f"  {name:<15} {seconds:6.2f} s  ({walls[name]:6.2f} s)  {seconds / costs['cce']:.1f} × cce")
    table = {"unit": "CPU seconds of one cell on one torch thread: its wall time on a core of its own",
             "tasks": {"digits": {"epochs": epochs, "seconds": {k: round(v, 3) for k, v in costs.items()}}},
             "worker_startup_s": round(startup, 2), "measured_on": machine,
             "measured_by": "python benchmarks/default_grid.py --write-costs"}  # fmt: skip
    for label, ratio in step_ratios(args.repeats, not args.no_cifar).items():
        target = "1.05" if label.startswith("engine") else "6"
        print(f"{label}: {ratio:.3f}  (target <= {target})")
    if args.write_costs:
        COSTS_FILE.write_text(json.dumps(table, indent=2) + "\n")
        print(f"wrote {COSTS_FILE}")
    if not args.no_main:
        cells = expand(grid_from_dict(MAIN_GRID), get_host()).cells
        cores = len(os.sched_getaffinity(0))
        expected = estimate(cells, min(cores, len(cells)), table)
        wall = main_job(args.main_args.split())
        print(f"main job `benchsuite run {args.main_args}`: {format_duration(wall)} wall ({wall:.0f} s) on {cores} cores, "
              f"load average before {machine['load_average']}, after {[round(x, 2) for x in os.getloadavg()]}; "
              f"predicted {format_duration(expected.seconds)} for the full main job")  # fmt: skip


if __name__ == "__main__":
    main()
