"""How long a grid will take, from measured per-method cell costs.

``cell_costs.json`` (shipped in the package) holds, per task, the wall time of one cell of each
method with its defaults on one torch thread at the task's default number of epochs, and the
start-up time of a pool worker (importing torch and loading the plugins). It is written by
``python benchmarks/default_grid.py --write-costs``, which measures it side by side; the machine
it was measured on is recorded in the file. ``run`` prints ``estimate(...)`` before it starts, and
the progress display's ETA starts from it and is then scaled by how fast the finished cells
actually ran on this machine.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .spec import CellSpec

COSTS_FILE = Path(__file__).with_name("cell_costs.json")


@lru_cache(maxsize=1)
def shipped_costs() -> dict[str, Any]:
    """The shipped table (see the module docstring); empty when the file is missing."""
    if not COSTS_FILE.is_file():
        return {"tasks": {}, "worker_startup_s": 0.0}
    return json.loads(COSTS_FILE.read_text())


def cell_cost(spec: CellSpec, table: dict[str, Any] | None = None) -> float | None:
    """Expected wall seconds of one cell on one thread, or None when its task has no measured cost.

    The cost of the cell's method (by the name asked for, else the method that trains it; a
    method without a measurement costs as the task's median method), scaled by the cell's epochs
    over the epochs it was measured at."""
    table = shipped_costs() if table is None else table
    task = table["tasks"].get(spec.task)
    if task is None:
        return None
    methods: dict[str, float] = task["seconds"]
    seconds = methods.get(spec.method, methods.get(spec.trains or "", None))
    if seconds is None:
        ordered = sorted(methods.values())
        seconds = ordered[len(ordered) // 2]
    epochs = spec.budget.get("epochs", task["epochs"])
    return seconds * epochs / task["epochs"]


@dataclass
class Estimate:
    """The expected wall time of running cells on ``workers`` workers."""

    seconds: float
    cells: int
    #: Cells whose task has no measured cost: not counted in ``seconds``.
    unknown: int
    workers: int

    def describe(self) -> str:
        text = f"expected duration: about {format_duration(self.seconds)} for {self.cells} cells on {self.workers} worker{'s' * (self.workers > 1)}"
        if self.unknown:
            text += f" (+ {self.unknown} cells of tasks without a measured cost)"
        return text + " (from measured per-method cell costs; a loaded machine takes longer)"


def estimate(cells: Iterable[CellSpec], workers: int, table: dict[str, Any] | None = None, startup: bool = True) -> Estimate:
    """Expected wall time of ``cells`` run in order on ``workers`` workers, each taking the next
    cell when it is free (as the executors do), plus a pool worker's start-up when ``startup``."""
    table = shipped_costs() if table is None else table
    free_at = [0.0] * max(1, workers)
    count = unknown = 0
    for spec in cells:
        count += 1
        cost = cell_cost(spec, table)
        if cost is None:
            unknown += 1
            continue
        heapq.heapreplace(free_at, free_at[0] + cost)
    overhead = table.get("worker_startup_s", 0.0) if startup and count > unknown else 0.0
    return Estimate(max(free_at) + overhead, count, unknown, max(1, workers))


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
