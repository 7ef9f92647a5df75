"""One cell, start to end: build its method and task from the plugin host, train, and turn
whatever happens (a result, an exception, a timeout) into a ``RunRecord``.

This is what every executor runs wherever the cell goes (this process, a pool worker, a Ray task,
a Slurm job): the driver hands executors ``CELL_FUNCTIONS`` with the run's settings, so that the
executors need not import the plugin host, and the host can load the executors as an internal
plugin.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .executors.base import CellFunctions
from .plugins import get_host
from .provenance import provenance, utc_now
from .spec import CellSpec, RunRecord

if TYPE_CHECKING:
    from .checkpoint import CheckpointPolicy


def plugin_versions(spec: CellSpec) -> dict[str, dict[str, Any]]:
    host = get_host()
    out = {}
    for kind, name in (("method", spec.method), ("task", spec.task)):
        info = host.plugin_of(kind, name)
        out[info.name] = {"distribution": info.distribution, "version": info.version}
    return out


def privileged_data(method: Any, info: dict[str, Any]) -> dict[str, Any]:
    """What the run trained on besides the noisy training set (``Method.privileged_data``), with
    the realised size of the trusted subset: the boards mark the method with it."""
    data = method.privileged_data()
    if info.get("num_trusted"):
        data.update(trusted_examples=info["num_trusted"], training_examples=info["num_train"] + info["num_trusted"])
    return data


class CellTimeout(BaseException):
    """Raised by a cell's timeout alarm; a ``BaseException`` so that no plugin's ``except
    Exception`` swallows it."""


@contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Raise ``CellTimeout`` in this thread after ``seconds`` of wall time (SIGALRM).

    Python runs the handler between two bytecodes, so a training loop stops within one step; code
    stuck in native calls is stopped from outside by the executors that own the process.
    """
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        raise RuntimeError("a cell timeout needs the cell to run in the main thread of a process on a POSIX system")

    def fire(signum: int, frame: object) -> None:
        raise CellTimeout

    previous = signal.signal(signal.SIGALRM, fire)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # a mask inherited from the parent would mute it
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # an enclosing alarm (pytest-timeout) is put back
    tic = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - tic), 1e-3))


def execute_cell(
    spec: CellSpec,
    device: str = "auto",
    amp: bool | None = None,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
    timeout: float | None = None,
    checkpoints: CheckpointPolicy | None = None,
) -> RunRecord:
    """Train one cell; never raises for a failure of the run itself (it becomes a ``failed``
    record). After ``timeout`` seconds the run is stopped and recorded as ``timeout``, with the
    curves of the epochs it finished. With ``checkpoints`` the cell resumes from its checkpoint
    and writes new ones (``benchsuite.checkpoint``), and keeps its models where the policy says
    (``benchsuite.models``)."""
    from .checkpoint import CellCheckpoint
    from .engine import resolve_device, train
    from .models import ModelKeeper

    started, tic = utc_now(), time.perf_counter()
    torch_device = resolve_device(device)
    checkpoint = None if checkpoints is None else CellCheckpoint(checkpoints, spec)
    rows: list[dict[str, float]] = []

    def collect(epoch: int, epochs: int, row: dict[str, float]) -> None:
        rows.append(row)
        if on_epoch is not None:
            on_epoch(epoch, epochs, row)

    try:
        with _alarm(timeout):
            host = get_host()
            method = host.method_class(spec.method)(**spec.method_params)
            task_cls = host.task_class(spec.task)
            task = task_cls(**spec.task_params, **spec.task_options)
            keeper = None
            if checkpoints is not None and checkpoints.models is not None:
                primary = task_cls.primary_metric
                keeper = ModelKeeper(checkpoints.models, spec, primary, task_cls.metrics[primary].higher_is_better)
            record = train(method, task, spec, torch_device, amp=amp, on_epoch=collect, checkpoint=checkpoint, keeper=keeper)
        record.info.update(
            task_metrics={k: {"higher_is_better": m.higher_is_better, "doc": m.doc} for k, m in task_cls.metrics.items()},
            primary_metric=task_cls.primary_metric,
            leaderboard_metrics=list(task_cls.table_metrics()),
            privileged=privileged_data(method, record.info),
        )
        versions = plugin_versions(spec)
    except KeyboardInterrupt:
        raise
    except CellTimeout:
        curves = ([] if checkpoint is None else checkpoint.restored_curves) + rows
        record = RunRecord(
            spec=spec,
            status="timeout",
            curves=curves,
            error=f"exceeded the cell timeout of {timeout:g} s in epoch {len(curves) + 1}; stopped by its alarm",
        )
        if checkpoint is not None:
            record.provenance["checkpoints"] = checkpoint.provenance()
            if checkpoint.resumed_from is not None:
                record.provenance["resumed_from"] = checkpoint.resumed_from
        versions = {}
    except Exception as exc:
        record = RunRecord(spec=spec, status="failed", error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        versions = {}
    record.started_at, record.finished_at = started, utc_now()
    record.duration_s = time.perf_counter() - tic
    record.provenance = {**provenance(str(torch_device), versions), **record.provenance, "pid": os.getpid()}
    return record


def load_plugins() -> None:
    """Load the plugins in a worker before its first cell, so that loading them is not counted
    in that cell's timeout."""
    get_host()


#: What executors run: module-level functions, which pickle by reference into worker processes.
CELL_FUNCTIONS = CellFunctions(execute=execute_cell, prepare=load_plugins)
