"""Executors: where the cells of a grid run.

``local`` (the default) runs them in the driver process one after the other; ``pool`` in worker
processes on this machine; ``ray`` as Ray tasks; ``slurm`` as a Slurm job array through submitit.
Choose one with ``--executor SPEC`` (``pool``, ``"pool{workers = 4}"``) or the ``executor`` key of a
grid file. The interface they share is in ``base``.
"""

from __future__ import annotations

from .base import CellResult, Executor, ExecutorError, RunSettings
from .local import LocalExecutor
from .pool import PoolExecutor
from .ray import RayExecutor
from .slurm import SlurmExecutor

EXECUTORS: dict[str, type[Executor]] = {
    cls.name: cls for cls in (LocalExecutor, PoolExecutor, RayExecutor, SlurmExecutor)
}

__all__ = ["EXECUTORS", "CellResult", "Executor", "ExecutorError", "RunSettings", *(c.__name__ for c in EXECUTORS.values())]
