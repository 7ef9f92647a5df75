"""Executors: where the cells of a grid run.

``local`` runs them in the driver process one after the other; ``pool`` in worker processes on
this machine; ``ray`` as Ray tasks; ``slurm`` as a Slurm job array through submitit. Choose one
with ``--executor SPEC`` (``pool``, ``"pool{workers = 4}"``) or the ``executor`` key of a grid
file; without either, ``automatic_executor`` chooses. The interface they share is in ``base``.

This package is an internal plugin of the host: the four executors register through the
``register_executors`` hook as a third-party executor does, and the grid and the CLI look them
up in the host (``PluginHost.executors``).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ..hookspecs import hookimpl
from .base import CellFunctions, CellResult, Executor, ExecutorError, RunSettings, run_in_worker
from .local import LocalExecutor
from .pool import PoolExecutor
from .ray import RayExecutor
from .slurm import SlurmExecutor

BUILTIN_EXECUTORS: tuple[type[Executor], ...] = (LocalExecutor, PoolExecutor, RayExecutor, SlurmExecutor)


@hookimpl
def register_executors(register: Callable[[type[Executor]], None]) -> None:
    for cls in BUILTIN_EXECUTORS:
        register(cls)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def automatic_executor(device: str, cells: int) -> tuple[str, dict[str, Any]]:
    """(name, options) of the executor for a grid that names none.

    On a CPU with more than one core and more than one cell to run: a pool of one worker per core
    (at most one per cell), each with one torch thread. The small models of the default tasks gain
    little from a second thread in one cell, while two cores running cells side by side finish
    about 1.9 times as many (the main job: 108 s of CPU in 58 s of wall time), and one thread per worker keeps the busy compute threads at the number of
    cores, which a loaded machine needs (OpenMP threads competing for a core slow down many-fold).
    Otherwise (one core, one cell, or a GPU): in this process.
    """
    cores = usable_cores()
    if cells > 1 and cores > 1 and _runs_on_cpu(device):
        return "pool", {"workers": min(cores, cells), "threads_per_worker": 1}
    return "local", {}


def _runs_on_cpu(device: str) -> bool:
    if device == "cpu":
        return True
    if device != "auto":
        return False
    import torch

    return not torch.cuda.is_available()


__all__ = [
    "automatic_executor", "usable_cores", "register_executors", "run_in_worker", "BUILTIN_EXECUTORS", "CellFunctions",
    "CellResult", "Executor", "ExecutorError", "RunSettings", *(c.__name__ for c in BUILTIN_EXECUTORS),
]  # fmt: skip
