"""What ``run`` shows while a grid runs: one live line per running cell and a header with an ETA.

On a terminal the display is a block redrawn in place: a header (cells done of all, failures,
elapsed time, ETA) and one line per running cell naming what it trains — method, task, noise,
seed and only the parameters that differ from their defaults — with the epoch it is in. Anywhere
else (a log file, CI) it writes one line per finished cell instead. The ETA is the measured cost
of the remaining work (``benchsuite.costs``) spread over the workers, scaled by how fast the
cells that finished ran compared with their measured cost (a loaded machine is slower).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TextIO

from .costs import format_duration
from .spec import CellSpec

#: Shortest interval between two redraws of the live block (a digits epoch takes 0.1 s or less).
REDRAW_SECONDS = 0.2


@lru_cache(maxsize=256)
def _defaults(kind: str, name: str, preset: str | None) -> dict[str, Any]:
    """The identity parameters of a method (under ``preset``) or task as they are by default."""
    from .plugins import get_host

    host = get_host()
    try:
        cls = host.method_class(name) if kind == "method" else host.task_class(name)
        return dict(cls(preset=preset).identity_config())
    except Exception:  # a preset per rate, or a class that cannot be built bare: show every parameter
        return {}


def _changed(values: dict[str, Any], defaults: dict[str, Any]) -> str:
    items = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items() if defaults.get(k, object()) != v]
    return "{" + ", ".join(items) + "}" if items else ""


def cell_label(spec: CellSpec) -> str:
    """A short label naming only what is not a default, e.g. ``gce{q=0.5} · digits · symmetric 0.4 ·
    seed 1`` (``spec.label()`` lists every parameter)."""
    method = spec.method + (f"@{spec.preset}" if spec.preset else "")
    method += _changed(spec.method_params, _defaults("method", spec.method, spec.preset if spec.preset and ":" not in spec.preset else None))
    task = spec.task + _changed(spec.task_params, _defaults("task", spec.task, None))
    noise = "no noise" if spec.noise_kind == "none" else f"{spec.noise_kind} {spec.noise_rate:g}"
    noise += _changed(spec.noise_params, {})
    parts = [method, task, noise, f"seed {spec.seed}"]
    parts += [f"{key}={value}" for key, value in spec.budget.items()]
    if spec.val_fraction:
        parts.append(f"val {spec.val_fraction:g}")
    if spec.eval_ema is not None:
        parts.append(f"EMA {spec.eval_ema:g}")
    return " · ".join(parts)


@dataclass
class _Running:
    label: str
    expected: float | None
    epoch: int = 0
    epochs: int = 0


class GridProgress:
    """The live display of one grid run (see the module docstring).

    ``expected`` maps each cell hash to its measured cost in seconds (None: unknown); ``enabled``
    False shows nothing; ``live`` None redraws in place only when ``stream`` is a terminal.
    """

    def __init__(
        self,
        expected: dict[str, float | None],
        workers: int,
        stream: TextIO | None = None,
        enabled: bool = True,
        live: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and (self.stream.isatty() if live is None else live)
        self.workers = max(1, workers)
        known = [c for c in expected.values() if c is not None]
        self._fallback = sum(known) / len(known) if known else None
        self.expected = {h: (c if c is not None else self._fallback) for h, c in expected.items()}
        self.total = len(expected)
        self.done = 0
        self.failed = 0
        self.running: dict[str, _Running] = {}
        self._measured = self._predicted = 0.0
        self._began = time.monotonic()
        self._drawn_lines = 0
        self._last_draw = 0.0

    # -- events ------------------------------------------------------------------------------

    def started(self, spec: CellSpec) -> None:
        self.running[spec.cell_hash] = _Running(cell_label(spec), self.expected.get(spec.cell_hash))
        self._draw()

    def epoch(self, spec: CellSpec, epoch: int, epochs: int) -> None:
        cell = self.running.get(spec.cell_hash)
        if cell is not None:
            cell.epoch, cell.epochs = epoch, epochs
        self._draw()

    def finished(self, spec: CellSpec, status: str, duration: float | None) -> None:
        """A cell ended with ``status`` after ``duration`` seconds of its own (None: unknown)."""
        cell = self.running.pop(spec.cell_hash, None)
        expected = self.expected.pop(spec.cell_hash, None)
        self.done += 1
        self.failed += status in ("failed", "timeout")
        if duration is not None and expected and status == "completed":
            self._measured += duration
            self._predicted += expected
        if self.enabled and not self.live:
            took = f" in {duration:.1f} s" if duration is not None else ""
            label = cell.label if cell else cell_label(spec)
            self._print(f"[{self.done}/{self.total}] {status} {label}{took}; {self.eta_text()}")
        self._draw(force=True)

    def skipped(self, spec: CellSpec) -> None:
        """A cell that will not run here after all (finished or claimed by another driver)."""
        self.expected.pop(spec.cell_hash, None)
        self.total -= 1
        self._draw(force=True)

    def message(self, text: str) -> None:
        """A line above the live block (a failure, a retry)."""
        self._clear()
        print(text, file=self.stream, flush=True)
        self._draw(force=True)

    def close(self) -> None:
        self._clear()

    # -- the estimate -------------------------------------------------------------------------

    def speed(self) -> float:
        """Measured over expected seconds of the cells completed so far (1 before the first)."""
        return self._measured / self._predicted if self._predicted else 1.0

    def remaining_seconds(self) -> float | None:
        """The expected wall time left: cells not started, and the unfinished epochs of the running."""
        if self._fallback is None:
            return None
        waiting = sum(c for h, c in self.expected.items() if h not in self.running and c is not None)
        running = sum(
            (c.expected or 0.0) * (1 - (c.epoch / c.epochs if c.epochs else 0.0)) for c in self.running.values()
        )
        return (waiting + running) / self.workers * self.speed()

    def eta_text(self) -> str:
        left = self.remaining_seconds()
        return "ETA unknown" if left is None else f"ETA {format_duration(left)}"

    def header(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        elapsed = format_duration(time.monotonic() - self._began)
        return f"{self.done}/{self.total} cells{failed} · {elapsed} elapsed · {self.eta_text()}"

    # -- drawing ------------------------------------------------------------------------------

    def lines(self) -> list[str]:
        """The live block: the header, then one line per running cell."""
        cells = [
            f"  {c.label} · epoch {c.epoch}/{c.epochs}" if c.epochs else f"  {c.label} · starting"
            for c in self.running.values()
        ]
        return [self.header(), *cells]

    def _draw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        block = [line[:width] for line in self.lines()]
        up = f"\x1b[{self._drawn_lines}F" if self._drawn_lines else ""
        self.stream.write(up + "\x1b[J" + "\n".join(block) + "\n")
        self.stream.flush()
        self._drawn_lines = len(block)

    def _clear(self) -> None:
        if self.live and self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self.stream.flush()
            self._drawn_lines = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def headline(runs: Any) -> str:
    """The final summary of a grid's runs (a ``results.to_dataframe`` frame): per task, the mean
    over seeds of its primary metric at the last epoch, one row per setting (named by every name
    it was run under, ``dm = gr``) and one column per noise rate; the leaderboard has the rest."""
    from tabulate import tabulate

    done = runs[runs.status == "completed"]
    blocks = []
    for task, group in done.groupby("task", sort=True):
        metric = json.loads(group["info"].iloc[0]).get("primary_metric", "test_acc")
        if metric not in group:
            continue
        group = group.assign(row=[_row_name(names) for names in group["names"]], noise=[
            "no noise" if kind == "none" else f"{kind} {rate:g}" for kind, rate in zip(group.noise_kind, group.noise_rate)
        ])  # fmt: skip
        table = group.pivot_table(index="row", columns="noise", values=metric, aggfunc="mean", sort=False)
        counts = group.groupby("row").seed.nunique()
        percent = bool(group[metric].dropna().between(0, 1).all())  # as the boards show fractions
        shown = [[f"{100 * v:.2f}" if percent else f"{v:.4g}" for v in table.loc[name]] for name in table.index]
        rows = [[name, *(text if text != "nan" else "–" for text in cells), counts[name]] for name, cells in zip(table.index, shown)]
        unit = " in %" if percent else ""
        title = f"{task}: final {metric}{unit}, mean over seeds (benchsuite leaderboard: intervals, best epochs, memorisation)"
        blocks.append(title + "\n" + tabulate(rows, headers=["method", *table.columns, "seeds"]))
    return "\n\n".join(blocks) or "no completed runs"


def _row_name(names: str) -> str:
    """``dm = gr`` from a run's ``names`` column (every name its cell was asked for under)."""
    labels = sorted({n["method"] + (f"@{n['preset']}" if n.get("preset") else "") for n in json.loads(names)})
    return " = ".join(labels)
