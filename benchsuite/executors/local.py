"""local: the cells run in the driver process, one after the other (the default executor)."""

from __future__ import annotations

import threading

from ..spec import CellSpec
from .base import CellResult, Executor, ExecutorError, RunSettings


class LocalExecutor(Executor):
    name = "local"
    summary = "in the driver process, one cell after the other"

    def check(self, settings: RunSettings) -> None:
        if settings.cell_timeout is not None and threading.current_thread() is not threading.main_thread():
            raise ExecutorError("local: a cell timeout needs the grid to run in the main thread (its alarm is a signal)")

    def start(self, settings: RunSettings) -> None:
        super().start(settings)
        self._pending: list[CellSpec] = []

    def free_slots(self) -> int:
        return 0 if self._pending else 1

    def submit(self, specs: list[CellSpec]) -> None:
        self._pending.extend(specs)

    def wait(self, timeout: float) -> list[CellResult]:
        """Runs the submitted cell here and now (Ctrl-C interrupts it)."""
        results = []
        settings = self.settings
        while self._pending:
            spec = self._pending.pop(0)

            def on_epoch(epoch: int, epochs: int, row: dict[str, float], spec: CellSpec = spec) -> None:
                if settings.on_progress is not None:
                    settings.on_progress(spec, epoch, epochs)

            record = self.cells.execute(
                spec, settings.device, settings.amp, on_epoch, timeout=settings.cell_timeout, checkpoints=settings.checkpoints
            )
            results.append(CellResult(spec, record))
        return results
