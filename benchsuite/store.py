"""The results database: SQLite in WAL mode, one transaction per finished run.

Tables: ``runs`` (one row per cell hash: spec, status, timings, provenance, final metrics),
``curves`` (per-epoch metrics, long format), ``claims`` (cells being computed right now, so that
several ``benchsuite run`` processes on one database share the work instead of duplicating it),
``names`` (every name a cell was asked for under: ``dm`` and ``gr`` with their defaults are one
cell, and the boards say so).

A run is written with its curves in one transaction, so a killed process never leaves half a run.
A claim whose owner has died (same host, pid gone) or has stopped beating (other host) is stale
and is taken over, so restarting an interrupted grid runs exactly the missing cells.
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
from typing import Any, Iterator, Literal
from urllib.parse import quote

from .errors import UsageError
from .spec import CellSpec, RunRecord

SCHEMA_VERSION = "1"
#: Cells with these statuses are finished; ``failed`` and ``timeout`` cells run again on the next run.
DONE_STATUSES = ("completed", "diverged")
#: A claim from another host with no heartbeat for this long is considered abandoned.
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


class StoreError(UsageError, RuntimeError):
    """The results file is not a benchsuite database (or has an incompatible schema), or its path
    cannot be written."""


#: How a store is opened: ``write`` creates the database when it is missing; ``read`` never
#: writes (an SQLite read-only connection), so it works on read-only media and leaves foreign
#: files as they are.
Mode = Literal["read", "write"]


def open_store(path: str | Path, mode: Mode = "write") -> "ResultStore":
    """The results database at ``path``, checked before anything is written to it: a file that is
    not an SQLite database, an SQLite database of another application and a database of another
    schema version are refused (``StoreError`` naming the path), as are paths that cannot hold a
    database (an empty path, a folder that cannot be created or written)."""
    return ResultStore(path, mode)


def _check_path(path: Path, mode: Mode) -> None:
    """Refuse, naming the path, what cannot be a results database before anything touches it.

    The file itself is never opened here, only through SQLite: closing any other descriptor of a
    database file drops the POSIX locks this process's SQLite connections hold on it, after which
    another process would checkpoint and delete the write-ahead log under a running grid."""
    if not str(path) or str(path) == ".":
        raise StoreError("the results path is empty: give a file such as results.sqlite")
    if path.exists() and not path.is_file():
        raise StoreError(f"{path} is not a file")
    if mode == "read" and not path.is_file():
        raise StoreError(f"no results database at {path}; `benchsuite run --results {path}` creates one")
    if mode == "write":
        _check_folder(path)


def _check_folder(path: Path) -> None:
    """The database's folder exists (made here if missing) and is writable (SQLite writes its
    journal beside the database)."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreError(f"cannot create the folder of {path}: a part of {folder} is a file, not a folder") from None
    except OSError as exc:
        raise StoreError(f"cannot create the folder {folder} for {path}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write {path}: the folder {folder} is not writable")
    if path.is_file() and not os.access(path, os.W_OK):
        raise StoreError(f"cannot write {path}: the file is read-only")


def _read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that cannot write and creates no file. Without a ``-wal`` file beside it, no
    process has the database open (the last one to close checkpoints and removes it), so it is
    opened as immutable: SQLite then adds no ``-wal``/``-shm`` files either, and reads work on
    read-only media. With one, a run may be writing: a plain read-only connection sees its
    committed cells (immutable again if the folder is read-only and the shared memory missing)."""
    uri = "file:" + quote(str(path.resolve())) + "?mode=ro"
    if not Path(f"{path}-wal").exists():
        return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn = sqlite3.connect(uri, uri=True, timeout=120, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        if os.access(path.parent, os.W_OK):
            raise
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    return conn


def _schema_version(conn: sqlite3.Connection, path: Path) -> str | None:
    """The schema version of the database behind ``conn`` (None: an empty database); refuses an
    SQLite file of another application, read without writing."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in tables else None
    if row is None:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is not a benchsuite results database: it is an SQLite database of something else "
            f"(tables: {shown}); it is left as it is: choose another --results path"
        )
    return str(row[0])


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

    def __init__(self, path: str | Path, mode: Mode = "write") -> None:
        self.path = Path(path)
        self.mode = mode
        self._host = socket.gethostname()
        _check_path(self.path, mode)
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as exc:
            what = "not an SQLite file" if "file is not a database" in str(exc) else f"unreadable: {exc}"
            raise StoreError(f"{self.path} is not a benchsuite results database ({what}); it is left as it is") from None

    def _connect(self) -> sqlite3.Connection:
        """Check what the file holds through a read-only connection, then (``write``) open it for
        writing: nothing is written to a file that is not a benchsuite database of this schema."""
        existing = self.path.is_file() and self.path.stat().st_size > 0
        if existing or self.mode == "read":
            conn = _read_only_connection(self.path)
            try:
                version = _schema_version(conn, self.path)
            except BaseException:
                conn.close()
                raise
            if version not in (None, SCHEMA_VERSION):
                conn.close()
                raise StoreError(
                    f"{self.path} has schema version {version}; this benchsuite reads version {SCHEMA_VERSION}; "
                    "it is left as it is"
                )
            if self.mode == "read":
                return conn
            conn.close()
        try:
            conn = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot open {self.path} for writing ({exc})") from None
        self._conn = conn
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        with self._transaction() as cur:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                cur.execute(statement)
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        return conn

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
        if host != self._host:
            return now - heartbeat < STALE_CLAIM_SECONDS
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
