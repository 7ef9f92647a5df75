"""Run the cells of a grid: skip finished ones, execute the rest, store each result as it lands.

The driver (``run_grid``) is the only writer of the results database; a cell's execution
(``benchsuite.cell.execute_cell``) is a pure function of its spec that returns a ``RunRecord``, so that it can run
in this process or in any worker of an executor (``benchsuite.executors``). The driver claims a
cell before dispatching it, keeps its claims fresh, and saves each record as it arrives. A run
that raises is recorded as ``failed`` with its traceback and the grid goes on; a cell whose worker
dies is retried; Ctrl-C cancels the running cells and releases their claims: every finished cell
is kept and re-running the same command runs only what is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .cell import CELL_FUNCTIONS
from .checkpoint import DEFAULT_EVERY_MINUTES, CheckpointPolicy, checkpoint_dir
from .costs import cell_cost, estimate
from .executors import Executor, LocalExecutor, RunSettings
from .grid import DEFAULT_RETRIES, Expansion
from .models import models_dir
from .progress import GridProgress, cell_label
from .provenance import utc_now
from .spec import CellSpec, RunRecord
from .store import DONE_STATUSES, ResultStore

HEARTBEAT_SECONDS = 30.0
#: How long the driver waits for finished cells before it looks at its queue again.
POLL_SECONDS = 0.5
#: How often a driver with nothing else to do looks again at cells another driver holds.
WAIT_POLL_SECONDS = 5.0


@dataclass
class GridOutcome:
    """What a grid run did, for the summary line and the exit code."""

    cells: int
    already_done: int = 0
    not_applicable: int = 0
    running_elsewhere: int = 0
    retried: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    #: (label, first line of the error) of every cell that ended failed or timed out.
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    #: Wall seconds of the run, from the first look at the store to the last record.
    elapsed: float | None = None
    #: Labels of the cells that, when the run ended, had no stored record (held by another live
    #: driver and not waited for, or left by an interruption).
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        from .costs import format_duration

        ran = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "nothing"
        parts = [f"{self.cells} cells: ran {ran}", f"{self.already_done} already done"]
        if self.not_applicable:
            parts.append(f"{self.not_applicable} not applicable (n/a)")
        if self.running_elsewhere:
            parts.append(f"{self.running_elsewhere} waited for while another driver ran them")
        if self.missing:
            parts.append(f"{len(self.missing)} without a stored record")
        if self.retried:
            parts.append(f"{self.retried} retried after losing their worker")
        if self.interrupted:
            parts.append("interrupted: re-run the same command to run the missing cells")
        if self.elapsed is not None:
            parts.append(f"wall time {format_duration(self.elapsed)}")
        return "; ".join(parts)


class _Heartbeat:
    """Keeps the driver's claims fresh from a thread with its own database connection, so that a
    cell (or one epoch) longer than the stale-claim age is never taken over by another driver."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cells: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="benchsuite-heartbeat", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, cell_hash: str) -> None:
        with self._lock:
            self.cells.add(cell_hash)

    def discard(self, cell_hash: str) -> None:
        with self._lock:
            self.cells.discard(cell_hash)

    def _run(self) -> None:
        with ResultStore(self.path) as store:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                with self._lock:
                    cells = list(self.cells)
                for cell_hash in cells:
                    store.heartbeat(cell_hash)


@contextmanager
def _held_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done (a store write and its bookkeeping), then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)


def run_grid(
    expansion: Expansion,
    store: ResultStore,
    *,
    force: bool = False,
    device: str = "auto",
    amp: bool | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    retries: int = DEFAULT_RETRIES,
    cell_timeout: float | None = None,
    checkpoint_every: float | None = DEFAULT_EVERY_MINUTES * 60,
    wait: bool = True,
    keep_models: bool = False,
) -> GridOutcome:
    """Run every cell of ``expansion`` that ``store`` does not hold yet (all of them with ``force``)
    on ``executor`` (default: in this process, one after the other).

    A cell whose worker is lost (killed, out of memory, node failure) is run again, up to
    ``retries`` more times, then recorded as ``failed`` with the cause; a cell that raises is not
    retried (it would raise again). A cell over ``cell_timeout`` seconds is stopped and recorded
    as ``timeout``. Failed and timed-out cells run again on the next ``run_grid``. With
    ``progress``, the expected duration is printed first and the running cells are shown live
    (``benchsuite.progress``).

    Cells checkpoint at epoch ends, at most every ``checkpoint_every`` seconds (0: every epoch;
    None: never), beside the database, and resume from their checkpoint when run again
    (``benchsuite.checkpoint``); a cell's checkpoint is deleted once its finished record is stored.
    Cells that another live driver holds are waited for (``wait``) and run here if that driver
    lets them go without a record (it dies: its claim goes stale); without ``wait`` they are left
    and listed in ``GridOutcome.missing``. With ``keep_models`` each cell keeps its final (and
    best-on-validation) model beside the database (``benchsuite.models``).
    """
    run = _GridRun(expansion, store, executor or LocalExecutor(), force=force, retries=retries)
    run.wait_for_others = wait
    if checkpoint_every is not None or keep_models:
        models = models_dir(store.path) if keep_models else None
        run.checkpoints = CheckpointPolicy(checkpoint_dir(store.path), checkpoint_every, models=models)
    outcome = run.execute(device, amp, cell_timeout, progress)
    stored = store.statuses()
    outcome.missing = [spec.label() for spec in expansion.cells if spec.cell_hash not in stored]
    return outcome


class _GridRun:
    """The driver's side of one ``run_grid``: the queue of cells, their claims, the records."""

    def __init__(self, expansion: Expansion, store: ResultStore, executor: Executor, force: bool, retries: int) -> None:
        self.expansion, self.store, self.executor = expansion, store, executor
        self.force, self.retries = force, retries
        self.outcome = GridOutcome(cells=len(expansion.cells))
        #: (cell, attempt) not yet submitted; cells running now by hash, with their attempt.
        self.queue: deque[tuple[CellSpec, int]] = deque()
        self.running: dict[str, tuple[CellSpec, int]] = {}
        #: When each running cell was handed to the executor: (ISO time, UTC; monotonic seconds).
        self._handed: dict[str, tuple[str, float]] = {}
        self.display = GridProgress({}, 1, enabled=False)  # the real one once the executor has started
        self._began = time.monotonic()
        self.checkpoints: CheckpointPolicy | None = None
        #: Cells another live driver holds: waited for (``wait_for_others``), and all ever seen so.
        self.wait_for_others = True
        self.held_elsewhere: dict[str, CellSpec] = {}
        self._seen_elsewhere: set[str] = set()

    def execute(self, device: str, amp: bool | None, cell_timeout: float | None, progress: bool) -> GridOutcome:
        todo = self._todo()
        self.queue.extend((spec, 1) for spec in todo)
        settings = RunSettings(
            device, amp, cell_timeout, self.store.path.parent, lambda *epoch: self.display.epoch(*epoch), self.checkpoints,
            CELL_FUNCTIONS,
        )
        self.executor.check(settings)
        finished = False
        try:
            with _Heartbeat(self.store.path) as self.beats:
                self.executor.start(settings)
                self.display = GridProgress({spec.cell_hash: cell_cost(spec) for spec in todo}, self._workers(todo), enabled=progress)
                if progress and todo and self.executor.name in ("local", "pool"):  # the costs are this machine's
                    self.display.message(estimate(todo, self._workers(todo), startup=self.executor.name != "local").describe())
                while self.queue or self.running or self.held_elsewhere:
                    if not self.queue and not self.running:
                        self._wait_for_others()
                    self._dispatch()
                    if self.running:
                        for result in self.executor.wait(POLL_SECONDS):
                            self._receive(result)
            finished = True
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        finally:
            self._shut_down(finished)
        return self.outcome

    def _todo(self) -> list[CellSpec]:
        """Record the cells that cannot run (once), and return those the store does not hold."""
        expansion, store = self.expansion, self.store
        store.add_names(expansion.names)
        stored = store.statuses()
        for spec in expansion.cells:  # re-evaluated every time: cheap, and a plugin update may change it
            if spec.cell_hash in expansion.not_applicable:
                if stored.get(spec.cell_hash) != "skipped":  # recorded once, so a re-run rewrites nothing
                    store.save(RunRecord(spec, "skipped", error=expansion.not_applicable[spec.cell_hash], finished_at=utc_now()))
                self.outcome.not_applicable += 1
        done = set() if self.force else store.done()
        todo = [c for c in expansion.cells if c.cell_hash not in done and c.cell_hash not in expansion.not_applicable]
        self.outcome.already_done = len(expansion.cells) - self.outcome.not_applicable - len(todo)
        return todo

    def _workers(self, todo: list[CellSpec]) -> int:
        """How many cells run at once: the executor's free slots when it starts, at most one per cell."""
        return max(1, min(self.executor.free_slots(), len(todo)))

    def _dispatch(self) -> None:
        """Claim and submit as many queued cells as the executor takes now."""
        batch: list[CellSpec] = []
        while self.queue and self.executor.free_slots() > len(batch):
            with _held_interrupt():  # a claim is never made without being tracked
                spec, attempt = self.queue.popleft()
                claimed = attempt > 1 or self.store.claim(spec, force=self.force)
                if claimed:
                    self.running[spec.cell_hash] = (spec, attempt)
            if not claimed:  # finished or taken by another driver meanwhile
                self._passed_over(spec)
                continue
            batch.append(spec)
            self._handed[spec.cell_hash] = (utc_now(), time.monotonic())
            self.beats.add(spec.cell_hash)
            self.display.started(spec)
        if batch:
            self.executor.submit(batch)

    def _passed_over(self, spec: CellSpec) -> None:
        """A cell whose claim failed: finished meanwhile (counted done), or held by another live
        driver (waited for, or left to it)."""
        if self.store.status(spec.cell_hash) in DONE_STATUSES:
            self.outcome.already_done += 1
        elif self.wait_for_others:
            self.held_elsewhere[spec.cell_hash] = spec
            if spec.cell_hash not in self._seen_elsewhere:
                self._seen_elsewhere.add(spec.cell_hash)
                self.outcome.running_elsewhere += 1
            return
        self.display.skipped(spec)

    def _wait_for_others(self) -> None:
        """Nothing left to run here but cells other drivers hold: sleep, then try them again (a
        finished one is counted as done, a stale or released claim is taken over)."""
        time.sleep(WAIT_POLL_SECONDS)
        self.queue.extend((spec, 1) for spec in self.held_elsewhere.values())
        self.held_elsewhere.clear()

    def _receive(self, result: Any) -> None:
        """Store a cell's record, or queue it again when its worker was lost and retries remain."""
        spec, attempt = self.running[result.spec.cell_hash]
        if result.lost is not None and attempt <= self.retries:
            self.outcome.retried += 1
            self.display.message(f"RETRY {cell_label(spec)}: {result.lost}; attempt {attempt + 1} of {self.retries + 1}")
            with _held_interrupt():
                self.queue.appendleft((spec, attempt + 1))  # keeps its claim
                del self.running[spec.cell_hash]
            return
        record = result.record or RunRecord(spec, "failed", error=f"{result.lost} (attempt {attempt} of {self.retries + 1})")
        handed_at, handed = self._handed.pop(spec.cell_hash)
        if not record.started_at:  # not made by ``execute_cell`` in a worker: the worker was lost or killed
            record.started_at = result.started_at or handed_at
            record.duration_s = time.monotonic() - handed if result.duration_s is None else result.duration_s
            record.provenance = {**result.worker, **record.provenance, "driver_pid": os.getpid(), "driver_hostname": socket.gethostname()}
        record.finished_at = record.finished_at or utc_now()
        record.provenance.update(executor=self.executor.name, attempt=attempt)
        with _held_interrupt():  # a record that has arrived is stored, even on Ctrl-C
            self.store.save(record)
            del self.running[spec.cell_hash]
        if self.checkpoints is not None and record.status in DONE_STATUSES:
            self.checkpoints.remove(spec.cell_hash)  # failed and timed-out cells keep theirs: the next run resumes
        self.beats.discard(spec.cell_hash)
        self.outcome.statuses[record.status] += 1
        if record.status in ("failed", "timeout"):
            first_line = (record.error or "").splitlines()[0] if record.error else record.status
            self.outcome.failures.append((cell_label(spec), first_line))
            self.display.message(f"{record.status.upper()} {cell_label(spec)}: {first_line}")
        self.display.finished(spec, record.status, record.duration_s)

    def _shut_down(self, finished: bool) -> None:
        try:
            if not finished:
                self.executor.cancel()
            self.executor.close()
        finally:
            # Cells still running or waiting for a retry: give them back for a restart or another driver.
            with _held_interrupt():
                self.store.release(list(self.running) + [spec.cell_hash for spec, attempt in self.queue if attempt > 1])
            self.display.close()
            self.outcome.elapsed = time.monotonic() - self._began
