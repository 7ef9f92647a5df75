"""Run the cells of a grid: skip finished ones, execute the rest, store each result as it lands.

The driver (this module) is the only writer of the results database; a cell's execution
(``execute_cell``) is a pure function of its spec that returns a ``RunRecord``, so that it can run
in this process or elsewhere. A run that raises is recorded as ``failed`` with its traceback and
the grid goes on; Ctrl-C stops after releasing the running cell: every finished cell is kept and
re-running the same command runs only what is missing.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from .grid import Expansion
from .plugins import get_host
from .provenance import provenance, utc_now
from .spec import CellSpec, RunRecord
from .store import ResultStore

HEARTBEAT_SECONDS = 30.0


def plugin_versions(spec: CellSpec) -> dict[str, dict[str, Any]]:
    host = get_host()
    out = {}
    for kind, name in (("method", spec.method), ("task", spec.task)):
        info = host.plugin_of(kind, name)
        out[info.name] = {"distribution": info.distribution, "version": info.version}
    return out


def execute_cell(
    spec: CellSpec,
    device: str = "auto",
    amp: bool | None = None,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
) -> RunRecord:
    """Train one cell; never raises for a failure of the run itself (it becomes a ``failed`` record)."""
    from .engine import resolve_device, train

    started, tic = utc_now(), time.perf_counter()
    torch_device = resolve_device(device)
    try:
        host = get_host()
        method = host.method_class(spec.method)(**spec.method_params)
        task_cls = host.task_class(spec.task)
        task = task_cls(**spec.task_params, **spec.task_options)
        record = train(method, task, spec, torch_device, amp=amp, on_epoch=on_epoch)
        record.info.update(
            task_metrics={k: {"higher_is_better": m.higher_is_better, "doc": m.doc} for k, m in task_cls.metrics.items()},
            primary_metric=task_cls.primary_metric,
            leaderboard_metrics=list(task_cls.table_metrics()),
        )
        versions = plugin_versions(spec)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        record = RunRecord(spec=spec, status="failed", error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        versions = {}
    record.started_at, record.finished_at = started, utc_now()
    record.duration_s = time.perf_counter() - tic
    record.provenance = provenance(str(torch_device), versions)
    return record


@dataclass
class GridOutcome:
    """What a grid run did, for the summary line and the exit code."""

    cells: int
    already_done: int = 0
    not_applicable: int = 0
    running_elsewhere: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False

    def summary(self) -> str:
        ran = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "nothing"
        parts = [f"{self.cells} cells: ran {ran}", f"{self.already_done} already done"]
        if self.not_applicable:
            parts.append(f"{self.not_applicable} not applicable (n/a)")
        if self.running_elsewhere:
            parts.append(f"{self.running_elsewhere} being run by another process")
        if self.interrupted:
            parts.append("interrupted: re-run the same command to run the missing cells")
        return "; ".join(parts)


def run_grid(
    expansion: Expansion,
    store: ResultStore,
    *,
    force: bool = False,
    device: str = "auto",
    amp: bool | None = None,
    progress: bool = True,
) -> GridOutcome:
    """Run every cell of ``expansion`` that ``store`` does not hold yet (all of them with ``force``)."""
    from tqdm import tqdm

    outcome = GridOutcome(cells=len(expansion.cells))
    for spec in expansion.cells:  # re-evaluated every time: cheap, and a plugin update may change it
        if spec.cell_hash in expansion.not_applicable:
            store.save(RunRecord(spec, "skipped", error=expansion.not_applicable[spec.cell_hash], finished_at=utc_now()))
            outcome.not_applicable += 1
    done = set() if force else store.done()
    todo = [c for c in expansion.cells if c.cell_hash not in done and c.cell_hash not in expansion.not_applicable]
    outcome.already_done = len(expansion.cells) - outcome.not_applicable - len(todo)

    bar = tqdm(total=len(todo), unit="cell", disable=not progress, dynamic_ncols=True, mininterval=0.5)
    current: CellSpec | None = None
    try:
        for spec in todo:
            if not store.claim(spec, force=force):  # finished or taken by another process meanwhile
                if spec.cell_hash in store.done():
                    outcome.already_done += 1
                else:
                    outcome.running_elsewhere += 1
                bar.update(1)
                continue
            current = spec
            label = spec.label()
            bar.set_postfix_str(label, refresh=False)
            last_beat = time.monotonic()

            def on_epoch(epoch: int, epochs: int, row: dict[str, float], label: str = label) -> None:
                nonlocal last_beat
                bar.set_postfix_str(f"{label} · epoch {epoch}/{epochs}", refresh=False)
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    store.heartbeat(spec.cell_hash)
                    last_beat = time.monotonic()

            record = execute_cell(spec, device=device, amp=amp, on_epoch=on_epoch)
            store.save(record)
            current = None
            outcome.statuses[record.status] += 1
            if record.status == "failed":
                outcome.failures.append((label, (record.error or "").splitlines()[0]))
                bar.write(f"FAILED {label}: {(record.error or '').splitlines()[0]}")
            bar.update(1)
    except KeyboardInterrupt:
        outcome.interrupted = True
        if current is not None:
            store.release([current.cell_hash])
    finally:
        bar.close()
    return outcome
