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

import ast
import ctypes
import importlib.util
import os
import sys
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
    if not cuda_possible():
        return True
    import torch

    return not torch.cuda.is_available()


#: The NVIDIA driver library the CUDA runtime loads, per platform (elsewhere torch is asked).
CUDA_DRIVER_LIBRARY = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}


def cuda_possible() -> bool:
    """False when ``torch.cuda.is_available()`` is certainly False, found without importing torch
    (seconds, which `run --dry-run` would pay to choose its executor): torch built without CUDA and
    ROCm, or a CUDA build on a machine whose NVIDIA driver library does not load (the CUDA runtime
    then finds no device). True otherwise, and then torch decides."""
    build = torch_build()
    if build is None or build["hip"]:
        return True
    if not build["cuda"]:
        return False
    library = CUDA_DRIVER_LIBRARY.get(sys.platform)
    if library is None:
        return True
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def torch_build() -> dict[str, str | None] | None:
    """The ``cuda`` and ``hip`` versions torch was built with (None: without), read from the
    source of the installed ``torch/version.py`` without importing torch; None when it cannot be read."""
    try:
        spec = importlib.util.find_spec("torch")
        folder = list(spec.submodule_search_locations or [])[0] if spec is not None else None
        with open(os.path.join(folder, "version.py"), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (ImportError, ValueError, TypeError, IndexError, OSError, SyntaxError):
        return None
    found: dict[str, str | None] = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id in ("cuda", "hip") and isinstance(node.value, ast.Constant):
            found[target.id] = node.value.value
    return found if set(found) == {"cuda", "hip"} else None


__all__ = [
    "automatic_executor", "usable_cores", "register_executors", "run_in_worker", "BUILTIN_EXECUTORS", "CellFunctions",
    "CellResult", "Executor", "ExecutorError", "RunSettings", *(c.__name__ for c in BUILTIN_EXECUTORS),
]  # fmt: skip
