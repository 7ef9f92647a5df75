"""The executor interface: the driver hands cells to an executor and gets their records back.

The driver (``benchsuite.runner.run_grid``) claims each cell in the results store, submits it,
and stores every record that comes back; an executor never touches the database, so one SQLite
file serves a laptop, a worker pool, a Ray cluster and a Slurm cluster alike. A worker receives
only the cell's ``CellSpec`` (a few hundred bytes) and prepares the data itself: the driver never
loads a data set for a remote cell, and a long-lived worker (a pool process, a Ray worker) keeps
the task plugins' module-level data caches across the cells it runs.

The life of an executor, all calls from the driver's main thread::

    check(settings)   raise ExecutorError when it cannot run here (missing extra, bad setting)
    start(settings)   bring up workers, connect to the cluster
    free_slots()      how many more cells it takes now
    submit(specs)     start these cells
    wait(timeout)     the cells that ended since the last call (possibly none)
    cancel()          stop every running cell now (Ctrl-C)
    close()           shut down after the last cell

A worker runs a cell through ``settings.cells`` (``CellFunctions``: ``benchsuite.cell``'s
functions, given by the driver), so executors import neither the runner nor the plugin host,
and the host loads them as an internal plugin (hook ``register_executors``).
"""

from __future__ import annotations

import os

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..errors import UsageError
from ..params import Configurable
from ..spec import CellSpec, RunRecord

if TYPE_CHECKING:
    from ..checkpoint import CheckpointPolicy

#: Called with (cell, epoch, epochs) when a worker reports a finished epoch.
ProgressCallback = Callable[[CellSpec, int, int], None]


class ExecutorError(UsageError, RuntimeError):
    """The executor cannot run here: a missing extra, an unreachable cluster, a bad setting."""


@dataclass
class RunSettings:
    """What every executor needs to know about the run, besides its own options."""

    device: str = "auto"
    amp: bool | None = None
    #: Wall-clock budget of one cell in seconds (None: unlimited).
    cell_timeout: float | None = None
    #: Where executors may write files (job scripts, logs): the results database's folder.
    workdir: Path = field(default_factory=Path.cwd)
    on_progress: ProgressCallback | None = None
    #: Where and how often cells checkpoint (None: never; ``benchsuite.checkpoint``).
    checkpoints: CheckpointPolicy | None = None
    #: How a cell runs (``benchsuite.cell.CELL_FUNCTIONS``, given by the driver); None only to
    #: ``check`` an executor.
    cells: CellFunctions | None = None


@dataclass(frozen=True)
class CellFunctions:
    """What an executor calls to run cells, handed over by the driver so that executors need not
    import the plugin host (which loads them as a plugin). Both are module-level functions: they
    pickle by reference into worker processes, Ray tasks and Slurm jobs."""

    #: ``execute(spec, device, amp, on_epoch, timeout=, checkpoints=) -> RunRecord``; never raises
    #: for a failure of the run itself.
    execute: Callable[..., RunRecord]
    #: Called once in a worker before its first cell: loads the plugins outside any cell's timeout.
    prepare: Callable[[], None]


@dataclass
class CellResult:
    """A cell that ended: its record, or ``lost`` = why its worker vanished without one (the
    worker was killed, ran out of memory, its node failed); lost cells are retried."""

    spec: CellSpec
    record: RunRecord | None = None
    lost: str | None = None
    #: For a cell that ended without a record from its worker (lost, or killed from outside at
    #: its hard deadline), what the executor saw, so that the driver's record of it says when and
    #: where it ran like a worker's record does: when the worker began the cell (ISO time, UTC;
    #: "" when unknown), how long it ran (None when unknown) and the worker's provenance (its
    #: host, pid and device; empty when the executor cannot know them).
    started_at: str = ""
    duration_s: float | None = None
    worker: dict[str, Any] = field(default_factory=dict)


class Executor(Configurable):
    """Base class of executors; ``parameters`` are its options in grid files and ``--executor``."""

    kind: ClassVar[str] = "executor"
    #: The ``pip install benchsuite[...]`` extra that provides the executor's dependencies.
    extra: ClassVar[str | None] = None

    def check(self, settings: RunSettings) -> None:
        """Raise ``ExecutorError`` when the executor cannot run with ``settings`` here."""

    def start(self, settings: RunSettings) -> None:
        self.settings = settings

    @property
    def cells(self) -> CellFunctions:
        """The functions that run a cell, from the settings the executor was started with."""
        if self.settings.cells is None:
            raise ExecutorError(f"the {self.name} executor was started without RunSettings.cells, the functions that run a cell")
        return self.settings.cells

    def free_slots(self) -> int:
        raise NotImplementedError

    def submit(self, specs: list[CellSpec]) -> None:
        raise NotImplementedError

    def wait(self, timeout: float) -> list[CellResult]:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop every running cell now; their results are dropped."""

    def close(self) -> None:
        """Release workers and connections after the last cell."""

    def _require(self, module: str) -> Any:
        """Import ``module`` or say which extra to install."""
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError:
            raise ExecutorError(
                f"the {self.name} executor needs {module}, which is not installed: "
                f"pip install 'benchsuite[{self.extra}]'"
            ) from None


def hard_deadline(timeout: float) -> float:
    """When a cell that ignores its timeout alarm (stuck in native code) is killed from outside."""
    return timeout + max(5.0, 0.1 * timeout)


def timeout_record(spec: CellSpec, timeout: float, how: str) -> RunRecord:
    return RunRecord(spec, "timeout", error=f"exceeded the cell timeout of {timeout:g} s; {how}")


def death_cause(exitcode: int | None, pid: int | None) -> str:
    """Words for a worker process's end: 'killed by SIGKILL (...)', 'exited with status 3'."""
    who = f"worker process {pid}" if pid else "worker process"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"{who} was killed by {name}{hint} while running this cell"
    return f"{who} exited with status {exitcode} while running this cell"


#: The environment variables that size the thread pools of the numeric libraries a worker may load
#: (OpenMP, MKL, OpenBLAS, NumExpr): set to the worker's thread count before any of them starts.
THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Size every compute thread pool of this process to ``threads``: the environment for libraries
    not yet loaded, torch's intra-op pool, and its inter-op pool where torch still allows it (only
    before its first parallel work; a worker calls this first thing, so it does)."""
    for name in THREAD_ENVIRONMENT:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # the inter-op pool has started already: its size is fixed for the process
        pass


def run_in_worker(
    cells: CellFunctions,
    spec: CellSpec,
    device: str,
    amp: bool | None,
    timeout: float | None,
    threads: int | None,
    checkpoints: CheckpointPolicy | None = None,
) -> RunRecord:
    """A cell's entry point in a remote worker (an executor plugin's task): prepare the worker
    (``prepare_worker``), run, return the record. With ``checkpoints`` a retried or requeued cell
    resumes from its checkpoint. (The Ray and Slurm executors do the same and also tell the driver
    when the cell starts.)"""
    prepare_worker(cells, threads)
    return cells.execute(spec, device, amp, timeout=timeout, checkpoints=checkpoints)


def prepare_worker(cells: CellFunctions, threads: int | None) -> None:
    """What a Ray task or a Slurm job does before its cell: size the compute threads as a pool
    worker does (``limit_threads``) and load the plugins, so that neither counts against the
    cell's timeout (a fresh worker process may take minutes over it on a loaded machine)."""
    if threads:
        limit_threads(threads)
    cells.prepare()
