"""The results database: SQLite in WAL mode, one transaction per finished run.

Tables: ``runs`` (one row per cell hash: spec, status, timings, provenance, final metrics),
``curves`` (per-epoch metrics, long format), ``claims`` (cells being computed right now, so that
several ``benchsuite run`` processes on one database share the work instead of duplicating it),
``names`` (every name a cell was asked for under: ``dm`` and ``gr`` with their defaults are one
cell, and the boards say so).

A run is written with its curves in one transaction, so a killed process never leaves half a run.
A claim whose owner has stopped beating for ``STALE_CLAIM_SECONDS`` is stale on any host, whatever
its PID (a dead driver's PID may have been reused), and on the same host a claim whose process is
gone is stale at once; a stale claim is taken over, so restarting an interrupted grid runs
exactly the missing cells.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .spec import CellSpec, RunRecord

SCHEMA_VERSION = "1"
#: Cells with these statuses are finished; ``failed`` and ``timeout`` cells run again on the next run.
DONE_STATUSES = ("completed", "diverged")
#: A claim with no heartbeat for this long is abandoned, on any host and whatever its PID (drivers
#: beat every ``runner.HEARTBEAT_SECONDS``, 30 s; the margin covers a database busy for minutes).
STALE_CLAIM_SECONDS = 15 * 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    cell_hash TEXT NOT NULL UNIQUE,
    method TEXT NOT NULL,
    preset TEXT,
    task TEXT NOT NULL,
    noise_kind TEXT NOT NULL,
    noise_rate REAL NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    diverged_epoch INTEGER,
    epochs INTEGER NOT NULL,
    spec TEXT NOT NULL,
    final TEXT NOT NULL,
    info TEXT NOT NULL,
    provenance TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    duration_s REAL
);
CREATE INDEX IF NOT EXISTS runs_by_task ON runs (task, noise_kind);
CREATE TABLE IF NOT EXISTS curves (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, epoch, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (
    cell_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (cell_hash, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS claims (
    cell_hash TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""


class StoreError(RuntimeError):
    """The results file is not a benchsuite database (or has an incompatible schema)."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class ResultStore:
    """A results database; safe to share between processes on one machine (and on shared disks
    that support SQLite locking)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._host = socket.gethostname()
        self._conn = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA foreign_keys = ON")
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            with self._transaction() as cur:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    cur.execute(statement)
                cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                (version,) = cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a benchsuite results database ({exc})") from None
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this benchsuite reads version {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    # -- runs --------------------------------------------------------------------------------

    def statuses(self) -> dict[str, str]:
        """Cell hash -> status of every stored run."""
        return dict(self._conn.execute("SELECT cell_hash, status FROM runs"))

    def done(self) -> set[str]:
        return {h for h, s in self.statuses().items() if s in DONE_STATUSES}

    def save(self, record: RunRecord) -> None:
        """Write a run and its curves atomically, replacing an earlier run of the same cell."""
        spec = record.spec
        with self._transaction() as cur:
            cur.execute("DELETE FROM runs WHERE cell_hash = ?", (spec.cell_hash,))
            cur.execute(
                """INSERT INTO runs (cell_hash, method, preset, task, noise_kind, noise_rate, seed, status,
                   error, diverged_epoch, epochs, spec, final, info, provenance, started_at, finished_at,
                   duration_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    spec.cell_hash,
                    spec.method,
                    spec.preset,
                    spec.task,
                    spec.noise_kind,
                    spec.noise_rate,
                    spec.seed,
                    record.status,
                    record.error,
                    record.diverged_epoch,
                    len(record.curves),
                    _json(spec.to_dict()),
                    _json(record.final),
                    _json(record.info),
                    _json(record.provenance),
                    record.started_at,
                    record.finished_at,
                    record.duration_s,
                ),
            )
            run_id = cur.lastrowid
            cur.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?)",
                [
                    (run_id, int(row["epoch"]), key, _finite_or_none(value))
                    for row in record.curves
                    for key, value in row.items()
                    if key != "epoch"
                ],
            )
            cur.execute("DELETE FROM claims WHERE cell_hash = ?", (spec.cell_hash,))

    def add_names(self, names: dict[str, list[dict[str, Any]]]) -> None:
        """Record the names each cell was asked for under (``Expansion.names``); known ones are kept."""
        rows = [(cell_hash, _json(name)) for cell_hash, entries in names.items() for name in entries]
        with self._transaction() as cur:
            cur.executemany("INSERT OR IGNORE INTO names VALUES (?, ?)", rows)

    def names(self) -> dict[str, list[dict[str, Any]]]:
        """Cell hash -> the names recorded for it, in sorted order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for cell_hash, name in self._conn.execute("SELECT cell_hash, name FROM names ORDER BY cell_hash, name"):
            out.setdefault(cell_hash, []).append(json.loads(name))
        return out

    def specs(self) -> dict[str, tuple[str, CellSpec]]:
        """Cell hash -> (status, spec) of every stored run."""
        rows = self._conn.execute("SELECT cell_hash, status, spec FROM runs")
        return {h: (status, CellSpec.from_dict(json.loads(spec))) for h, status, spec in rows}

    def delete(self, cell_hashes: list[str]) -> None:
        with self._transaction() as cur:
            cur.executemany("DELETE FROM runs WHERE cell_hash = ?", [(h,) for h in cell_hashes])

    # -- claims ------------------------------------------------------------------------------

    def claim(self, spec: CellSpec, force: bool = False) -> bool:
        """Take the cell for this process unless it is finished (and not ``force``) or another live
        process is computing it. Returns whether this process should run it."""
        now = time.time()
        with self._transaction() as cur:
            row = cur.execute("SELECT status FROM runs WHERE cell_hash = ?", (spec.cell_hash,)).fetchone()
            if row is not None and row[0] in DONE_STATUSES and not force:
                return False
            claim = cur.execute(
                "SELECT host, pid, heartbeat FROM claims WHERE cell_hash = ?", (spec.cell_hash,)
            ).fetchone()
            if claim is not None and self._alive(*claim, now):
                return False
            cur.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)", (spec.cell_hash, self._host, os.getpid(), now, now)
            )
        return True

    def heartbeat(self, cell_hash: str) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE claims SET heartbeat = ? WHERE cell_hash = ? AND host = ? AND pid = ?",
                (time.time(), cell_hash, self._host, os.getpid()),
            )

    def release(self, cell_hashes: list[str]) -> None:
        """Give up this process's claims (on interruption), so others or a restart can take them."""
        with self._transaction() as cur:
            cur.executemany(
                "DELETE FROM claims WHERE cell_hash = ? AND host = ? AND pid = ?",
                [(h, self._host, os.getpid()) for h in cell_hashes],
            )

    def running_elsewhere(self) -> list[tuple[str, str, int]]:
        """Claims held by other live processes: (cell hash, host, pid)."""
        now = time.time()
        rows = self._conn.execute("SELECT cell_hash, host, pid, heartbeat FROM claims").fetchall()
        return [
            (h, host, pid)
            for h, host, pid, beat in rows
            if (host, pid) != (self._host, os.getpid()) and self._alive(host, pid, beat, now)
        ]

    def _alive(self, host: str, pid: int, heartbeat: float, now: float) -> bool:
        if now - heartbeat >= STALE_CLAIM_SECONDS:
            return False  # whatever the PID: it may belong to another process by now
        if host != self._host:
            return True
        if pid == os.getpid():
            return False  # our own leftover claim: ours to take
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    # -- reading -----------------------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params).fetchall()
