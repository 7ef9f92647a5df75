"""ray: cells as Ray tasks, on an existing Ray cluster or on a Ray started on this machine.

Each cell is one task that reserves ``cpus_per_cell`` CPUs and ``gpus_per_cell`` GPUs (Ray sets
``CUDA_VISIBLE_DEVICES`` for it, so ``--device auto`` finds its GPU). Ray reuses its worker
processes across tasks, so the task plugins' data caches load each data set once per worker.
Ray's own task retries are off: a task whose worker dies (killed, out of memory, node lost) comes
back as lost and the driver retries it, as with every executor.

The driver keeps at most as many cells in flight as the cluster can run at once, so a submitted
cell starts as soon as Ray has a worker for it. A task is a streaming generator: once its worker
has started and loaded torch and the plugins, it yields ``("started", <the worker's provenance>)``,
then runs the cell and yields ``("done", <record>)``. A cell's timeout alarm starts with the cell
in its worker, and so does the driver's clock: a cell that ignores its alarm is stopped with
``ray.cancel(force=True)`` at ``hard_deadline`` after its "started" (as the pool counts from its
worker's "started"), so a worker however slow to start never costs a cell its run or gets it
recorded as timed out. (On the 2-core development machine at load average 12-15, a Ray driver
took 75 s to start Ray and a worker more than 90 s more to start its first cell.)

A cell that has not started ``startup_timeout`` seconds after its submission (Ray cannot place it,
or its worker hangs while starting) is cancelled and handed back as lost, with those words: the
driver runs it again (``--retries``), and a cell that never starts is recorded as ``failed`` with
that cause and runs again on the next ``benchsuite run``. It never ran, so no result is lost.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from ..params import Param
from ..provenance import provenance, utc_now
from ..spec import CellSpec, RunRecord
from .base import CellFunctions, CellResult, Executor, ExecutorError, RunSettings, hard_deadline, prepare_worker, timeout_record

if TYPE_CHECKING:
    from ..checkpoint import CheckpointPolicy

#: Default seconds from a cell's submission to its start in a Ray worker before the driver gives
#: up on that start: ten times the 90 s a worker took to start a cell at load average 12-15 on the
#: 2-core development machine, so that only a cell Ray cannot place or a hung worker reaches it.
STARTUP_TIMEOUT = 900.0


def run_in_ray_worker(
    cells: CellFunctions,
    spec: CellSpec,
    device: str,
    amp: bool | None,
    timeout: float | None,
    threads: int | None,
    checkpoints: CheckpointPolicy | None = None,
) -> Iterator[tuple[str, Any]]:
    """A cell as a Ray streaming generator: ``("started", provenance)`` once the worker is ready
    and the cell begins (the driver's clock for the cell starts then, as its alarm does), then
    ``("done", record)``."""
    from ..engine import resolve_device  # torch: imported in the worker only

    prepare_worker(cells, threads)
    yield "started", {**provenance(str(resolve_device(device)), {}), "pid": os.getpid()}
    yield "done", cells.execute(spec, device, amp, timeout=timeout, checkpoints=checkpoints)


@dataclass(eq=False)
class _Flight:
    """A submitted cell: when it was submitted (monotonic) and, once its worker says so, when it
    started (monotonic and ISO, UTC) and on which worker."""

    spec: CellSpec
    submitted: float
    started: float | None = None
    started_at: str = ""
    worker: dict[str, Any] = field(default_factory=dict)


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
        "startup_timeout": Param(
            STARTUP_TIMEOUT,
            "seconds a cell may wait from its submission to its start in a Ray worker before it is cancelled and run again "
            "as lost (none: wait for ever)",
            type=float, nullable=True, low=0.0, low_open=True,
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
        self._remote = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=0, num_returns="streaming")(
            run_in_ray_worker
        )
        self._running: dict[Any, _Flight] = {}

    def free_slots(self) -> int:
        return self._capacity - len(self._running)

    def submit(self, specs: list[CellSpec]) -> None:
        s = self.settings
        for spec in specs:
            generator = self._remote.remote(self.cells, spec, s.device, s.amp, s.cell_timeout, self.cpus_per_cell, s.checkpoints)
            self._running[generator] = _Flight(spec, time.monotonic())

    def wait(self, timeout: float) -> list[CellResult]:
        if not self._running:
            return []
        ray = self._ray
        timeout = max(0.0, min(timeout, self._next_deadline() - time.monotonic()))
        generators = list(self._running)
        ready, _ = ray.wait(generators, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(generators, num_returns=len(generators), timeout=0)
        results = [result for generator in ready if (result := self._take(generator)) is not None]
        return results + self._overdue()

    def cancel(self) -> None:
        for generator in self._running:
            self._ray.cancel(generator, force=True)
        self._running.clear()

    def close(self) -> None:
        if getattr(self, "_owns", False):
            self._ray.shutdown()
            self._owns = False

    def _next_deadline(self) -> float:
        """The earliest moment (monotonic) at which a cell in flight is overdue (``_overdue``)."""
        return min((self._deadline(flight) for flight in self._running.values()), default=math.inf)

    def _deadline(self, flight: _Flight) -> float:
        """When (monotonic) ``flight`` is overdue: ``startup_timeout`` after its submission until
        it starts, ``hard_deadline`` after its start once it has (never, without that limit)."""
        if flight.started is None:
            return math.inf if self.startup_timeout is None else flight.submitted + self.startup_timeout
        limit = self.settings.cell_timeout
        return math.inf if limit is None else flight.started + hard_deadline(limit)

    def _overdue(self) -> list[CellResult]:
        """Cancel the cells past their deadline: one that has not started within ``startup_timeout``
        of its submission (lost, run again: it never ran), and one that started more than
        ``hard_deadline`` ago, which has ignored its alarm (timed out)."""
        now, results = time.monotonic(), []
        for generator, flight in list(self._running.items()):
            if now <= self._deadline(flight):
                continue
            if flight.started is None:
                result = CellResult(
                    flight.spec,
                    lost=f"the cell did not start in a Ray worker within {self.startup_timeout:g} s of its submission "
                    "(the ray executor's startup_timeout), so its Ray task was cancelled before the cell ran",
                )
            else:
                record = timeout_record(flight.spec, self.settings.cell_timeout, "it ignored its alarm, so its Ray task was cancelled")
                result = CellResult(
                    flight.spec, record, started_at=flight.started_at, duration_s=now - flight.started, worker=dict(flight.worker)
                )
            self._ray.cancel(generator, force=True)
            del self._running[generator]
            results.append(result)
        return results

    def _take(self, generator: Any) -> CellResult | None:
        """Read the next message of a cell whose generator has one: its start (noted; None) or
        its end (the record, or why there is none)."""
        exceptions, flight = self._ray.exceptions, self._running[generator]
        try:
            kind, payload = self._ray.get(next(generator))
        except StopIteration:
            result = CellResult(flight.spec, lost="the Ray task ended without a record")
        except exceptions.RayTaskError as exc:  # the task itself raised: not a lost worker
            result = CellResult(flight.spec, RunRecord(flight.spec, "failed", error=f"the Ray task raised: {exc}"))
        except exceptions.RayError as exc:  # worker crashed or was killed, out of memory, node died
            result = CellResult(flight.spec, lost=f"Ray lost the cell's worker: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        else:
            if kind == "started":
                flight.started, flight.started_at, flight.worker = time.monotonic(), utc_now(), payload
                return None
            result = CellResult(flight.spec, payload)
        # what the driver saw, for a record the worker did not make (the driver's record keeps its own)
        result.started_at, result.worker = flight.started_at, dict(flight.worker)
        result.duration_s = None if flight.started is None else time.monotonic() - flight.started
        del self._running[generator]
        return result
