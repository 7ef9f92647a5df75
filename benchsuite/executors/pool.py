"""pool: N long-lived worker processes on this machine.

Each worker is a spawned process (no CUDA state or locks inherited from the driver) with its own
torch thread count and, on a GPU machine, its own GPU: worker ``i`` gets ``cuda:i`` round-robin
over the visible devices. A worker runs one cell at a time for as long as the grid lasts, so the
task plugins' module-level data caches make every data set load once per worker, not per cell.

Each worker has its own pipe to the driver, and the driver watches every worker's process
sentinel: a worker that dies (SIGKILL, the out-of-memory killer, a segfault) loses only the cell
it was running — the driver reports that cell as lost with the cause and replaces the worker; the
other workers go on. (``concurrent.futures``' pool, by contrast, breaks as a whole.) Workers
ignore SIGINT, so a Ctrl-C in the terminal reaches only the driver, which then stops them; a
worker whose driver has died (SIGKILL) exits on its own within a second.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from ..params import Param
from ..provenance import provenance, utc_now
from ..spec import CellSpec
from .base import CellFunctions, CellResult, Executor, RunSettings, death_cause, hard_deadline, limit_threads, timeout_record

if TYPE_CHECKING:
    from ..checkpoint import CheckpointPolicy


def worker_devices(device: str) -> list[str]:
    """The devices that worker slots cycle through: every visible GPU for ``auto``/``cuda`` on a
    GPU machine, else the one device asked for."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu" if device == "auto" else device]


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _worker_main(
    pickled_cells: bytes,
    conn: Connection,
    device: str,
    threads: int,
    amp: bool | None,
    timeout: float | None,
    parent: int,
    checkpoints: CheckpointPolicy | None = None,
) -> None:
    """A worker: run the cells the driver sends, one at a time, until it sends None or goes away.

    ``pickled_cells`` are the driver's ``CellFunctions``, unpickled only once the thread limits are
    set: unpickling them imports the plugin host, and torch with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    limit_threads(threads)
    import torch

    cells: CellFunctions = pickle.loads(pickled_cells)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    cells.prepare()  # plugins load with the worker, not inside its first cell's timeout

    def send(message: tuple[object, ...]) -> None:
        """Tell the driver; if it has gone (killed), this orphan has no one to report to and ends
        quietly, without a BrokenPipeError traceback on the terminal."""
        try:
            conn.send(message)
        except (BrokenPipeError, ConnectionResetError):
            os._exit(0)

    def progress(epoch: int, epochs: int, row: dict[str, float]) -> None:
        send(("epoch", epoch, epochs))

    while True:
        try:
            spec = conn.recv()
        except (EOFError, ConnectionResetError):
            return
        if spec is None:
            return
        send(("started", {**provenance(device, {}), "pid": os.getpid()}))
        send(("done", cells.execute(spec, device, amp, on_epoch=progress, timeout=timeout, checkpoints=checkpoints)))


@dataclass(eq=False)
class _Slot:
    """One worker place: its device, and the current process and cell."""

    index: int
    device: str
    process: BaseProcess | None = None
    conn: Connection | None = None
    spec: CellSpec | None = None
    #: When the worker began the cell (its timeout alarm starts then); None until it says so.
    started: float | None = None
    #: When the cell was handed to the worker (monotonic), and when it began (ISO, UTC): handed
    #: over, then the worker's word; what a record of the cell says if the worker dies with it.
    handed: float = 0.0
    started_at: str = ""
    #: The provenance of the worker running the cell: the driver's view of it (host, pid,
    #: device), then what the worker itself sent when it began the cell.
    worker: dict[str, Any] = field(default_factory=dict)


class PoolExecutor(Executor):
    name = "pool"
    summary = "N worker processes on this machine (one GPU each on a GPU machine)"
    parameters = {
        "workers": Param(
            None, "worker processes (default: one per visible GPU with CUDA, else one per CPU core)", type=int, nullable=True, low=1
        ),
        "threads_per_worker": Param(
            None, "torch threads of each worker (default: CPU cores / workers, at least 1)", type=int, nullable=True, low=1
        ),
    }

    def start(self, settings: RunSettings) -> None:
        super().start(settings)
        devices = worker_devices(settings.device)
        from . import usable_cores

        cores = usable_cores()
        count = self.workers or (len(devices) if devices[0].startswith("cuda") else cores)
        self._threads = self.threads_per_worker or max(1, cores // count)
        self._slots = [_Slot(i, devices[i % len(devices)]) for i in range(count)]
        self._context = mp.get_context("spawn")

    def free_slots(self) -> int:
        return sum(slot.spec is None for slot in self._slots)

    def submit(self, specs: list[CellSpec]) -> None:
        idle = [slot for slot in self._slots if slot.spec is None]
        if len(specs) > len(idle):
            raise ValueError(f"{len(specs)} cells submitted to {len(idle)} idle workers")
        for spec, slot in zip(specs, idle):
            for attempt in range(2):  # an idle worker may have died since its last cell
                if slot.process is None or not slot.process.is_alive():
                    self._retire(slot)
                    self._spawn(slot)
                try:
                    slot.conn.send(spec)  # type: ignore[union-attr]
                    break
                except (BrokenPipeError, OSError):
                    self._retire(slot)
                    if attempt:
                        raise
            slot.spec, slot.started, slot.handed, slot.started_at = spec, None, time.monotonic(), utc_now()
            slot.worker = {"hostname": socket.gethostname(), "pid": slot.process.pid, "device": slot.device, "torch_threads": self._threads}  # type: ignore[union-attr]

    def wait(self, timeout: float) -> list[CellResult]:
        busy = [slot for slot in self._slots if slot.spec is not None]
        if not busy:
            return []
        limit = self.settings.cell_timeout
        began = [slot.started for slot in busy if slot.started is not None]
        if limit is not None and began:
            next_kill = min(began) + hard_deadline(limit) - time.monotonic()
            timeout = max(0.0, min(timeout, next_kill))
        handles: dict[object, _Slot] = {}
        for slot in busy:
            handles[slot.conn] = slot
            handles[slot.process.sentinel] = slot  # type: ignore[union-attr]
        ready = wait(list(handles), timeout=timeout)
        results = []
        for slot in dict.fromkeys(handles[h] for h in ready):
            results += self._collect(slot)
        if limit is not None:
            now = time.monotonic()
            for slot in self._slots:
                if slot.spec is not None and slot.started is not None and now - slot.started > hard_deadline(limit):
                    spec, pid, seen = slot.spec, slot.process.pid, self._seen(slot)  # type: ignore[union-attr]
                    self._retire(slot, kill=True)
                    record = timeout_record(spec, limit, f"it ignored its alarm, so its worker process {pid} was killed")
                    results.append(CellResult(spec, record, **seen))
        return results

    def cancel(self) -> None:
        for slot in self._slots:
            if slot.spec is not None:
                self._retire(slot, kill=True)

    def close(self) -> None:
        for slot in self._slots:
            if slot.process is not None:
                try:
                    slot.conn.send(None)  # type: ignore[union-attr]
                except (BrokenPipeError, OSError):
                    pass
        for slot in self._slots:
            self._retire(slot)

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(pickle.dumps(self.cells), child, slot.device, self._threads, self.settings.amp, self.settings.cell_timeout, os.getpid(), self.settings.checkpoints),
            name=f"benchsuite-pool-{slot.index}",
        )
        process.start()
        child.close()
        slot.process, slot.conn = process, parent

    def _collect(self, slot: _Slot) -> list[CellResult]:
        """Read what the worker sent; if it died without finishing its cell, that cell is lost."""
        results = []
        try:
            while slot.spec is not None and slot.conn.poll():  # type: ignore[union-attr]
                kind, *payload = slot.conn.recv()  # type: ignore[union-attr]
                if kind == "done":
                    results.append(CellResult(slot.spec, payload[0]))
                    slot.spec = None
                elif kind == "started":
                    slot.started, slot.started_at, slot.worker = time.monotonic(), utc_now(), payload[0]
                elif self.settings.on_progress is not None:
                    self.settings.on_progress(slot.spec, *payload)
        except (EOFError, OSError):
            pass
        process = slot.process
        if slot.spec is not None and process is not None and not process.is_alive():
            results.append(CellResult(slot.spec, lost=death_cause(process.exitcode, process.pid), **self._seen(slot)))
            self._retire(slot)
        return results

    @staticmethod
    def _seen(slot: _Slot) -> dict[str, Any]:
        """What the driver knows of the slot's cell when its worker ends without a record: when
        it began (the worker's "started", else its hand-over), for how long, and where."""
        began = slot.handed if slot.started is None else slot.started
        return {"started_at": slot.started_at, "duration_s": time.monotonic() - began, "worker": dict(slot.worker)}

    def _retire(self, slot: _Slot, kill: bool = False) -> None:
        """Stop (``kill``) or reap the slot's process; the slot gets a new one when next used."""
        if slot.process is not None:
            if kill:
                slot.process.kill()
            slot.process.join(timeout=10)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
        if slot.conn is not None:
            slot.conn.close()
        slot.process, slot.conn, slot.spec = None, None, None
