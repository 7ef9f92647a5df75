"""ray: cells as Ray tasks, on an existing Ray cluster or on a Ray started on this machine.

Each cell is one task that reserves ``cpus_per_cell`` CPUs and ``gpus_per_cell`` GPUs (Ray sets
``CUDA_VISIBLE_DEVICES`` for it, so ``--device auto`` finds its GPU). Ray reuses its worker
processes across tasks, so the task plugins' data caches load each data set once per worker.
Ray's own task retries are off: a task whose worker dies (killed, out of memory, node lost) comes
back as lost and the driver retries it, as with every executor.

The driver keeps at most as many cells in flight as the cluster can run at once, so a submitted
cell starts right away. A cell's timeout alarm starts with the cell in its worker; the hard
timeout for a cell that ignores its alarm counts from submission, with ``STARTUP_ALLOWANCE`` for
the worker to import its libraries, and stops the task with ``ray.cancel(force=True)``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..params import Param
from ..spec import CellSpec, RunRecord
from .base import CellResult, Executor, ExecutorError, RunSettings, hard_deadline, run_in_worker, timeout_record

#: Seconds a Ray worker may take to start a cell (import torch and the plugins) before its clock runs.
STARTUP_ALLOWANCE = 60.0


class RayExecutor(Executor):
    name = "ray"
    summary = "cells as Ray tasks on a Ray cluster (or a Ray started on this machine)"
    extra = "ray"
    parameters = {
        "address": Param(
            None, "address of a running Ray cluster ('auto', 'ray://head:10001'); none: start Ray on this machine", type=str, nullable=True
        ),
        "num_cpus": Param(None, "CPUs of the Ray started on this machine (default: all); not with address", type=int, nullable=True, low=1),
        "cpus_per_cell": Param(1, "CPUs reserved for each cell, also its torch threads", low=1),
        "gpus_per_cell": Param(0.0, "GPUs reserved for each cell (a fraction shares a GPU)", low=0.0),
        "max_in_flight": Param(
            None, "cells submitted at once (default: as many as the cluster's CPUs and GPUs can run)", type=int, nullable=True, low=1
        ),
    }

    def check(self, settings: RunSettings) -> None:
        self._require("ray")
        if self.address is not None and self.num_cpus is not None:
            raise ExecutorError("ray: num_cpus sizes a Ray started here; with an address, the cluster's own CPUs are used")

    def start(self, settings: RunSettings) -> None:
        super().start(settings)
        ray = self._require("ray")
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                ray.init(
                    address=self.address,
                    num_cpus=self.num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except Exception as exc:
                raise ExecutorError(f"ray: could not start or reach Ray (address={self.address!r}): {exc}") from None
        resources = ray.cluster_resources()
        capacity = int(resources.get("CPU", 0) // self.cpus_per_cell)
        if self.gpus_per_cell:
            capacity = min(capacity, int(resources.get("GPU", 0) // self.gpus_per_cell))
        if capacity < 1:
            raise ExecutorError(
                f"ray: the cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs, not enough "
                f"for one cell with cpus_per_cell = {self.cpus_per_cell} and gpus_per_cell = {self.gpus_per_cell:g}"
            )
        self._capacity = self.max_in_flight or capacity
        self._remote = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=0)(run_in_worker)
        self._running: dict[Any, tuple[CellSpec, float]] = {}

    def free_slots(self) -> int:
        return self._capacity - len(self._running)

    def submit(self, specs: list[CellSpec]) -> None:
        s = self.settings
        for spec in specs:
            ref = self._remote.remote(self.cells, spec, s.device, s.amp, s.cell_timeout, self.cpus_per_cell, s.checkpoints)
            self._running[ref] = (spec, time.monotonic())

    def wait(self, timeout: float) -> list[CellResult]:
        if not self._running:
            return []
        ray, limit = self._ray, self.settings.cell_timeout
        if limit is not None:
            next_kill = min(t for _, t in self._running.values()) + self._kill_after(limit) - time.monotonic()
            timeout = max(0.0, min(timeout, next_kill))
        refs = list(self._running)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        results = [self._result(ref) for ref in ready]
        if limit is not None:
            now = time.monotonic()
            for ref, (spec, submitted) in list(self._running.items()):
                if now - submitted > self._kill_after(limit):
                    ray.cancel(ref, force=True)
                    del self._running[ref]
                    results.append(CellResult(spec, timeout_record(spec, limit, "it ignored its alarm, so its Ray task was cancelled")))
        return results

    def cancel(self) -> None:
        for ref in self._running:
            self._ray.cancel(ref, force=True)
        self._running.clear()

    def close(self) -> None:
        if getattr(self, "_owns", False):
            self._ray.shutdown()
            self._owns = False

    @staticmethod
    def _kill_after(limit: float) -> float:
        return STARTUP_ALLOWANCE + hard_deadline(limit)

    def _result(self, ref: Any) -> CellResult:
        exceptions = self._ray.exceptions
        spec, _ = self._running.pop(ref)
        try:
            return CellResult(spec, self._ray.get(ref))
        except exceptions.RayTaskError as exc:  # the task itself raised: not a lost worker
            return CellResult(spec, RunRecord(spec, "failed", error=f"the Ray task raised: {exc}"))
        except exceptions.RayError as exc:  # worker crashed or was killed, out of memory, node died
            return CellResult(spec, lost=f"Ray lost the cell's worker: {type(exc).__name__}: {str(exc).splitlines()[0]}")
