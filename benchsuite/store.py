"""The results database: SQLite in WAL mode, one transaction per finished run.

Tables: ``runs`` (one row per cell hash: spec, status, timings, provenance, final metrics),
``summaries`` (per run, what the boards read: best epoch, last-k and final of its metrics, the
derived identity columns and the few fields of its info and provenance boards show, computed once
when the run is stored, indexed by task, noise kind and setting), ``curves`` (per-epoch metrics, long format, read only when curves are asked for), ``claims`` (cells being computed right now, so that
several ``benchsuite run`` processes on one database share the work instead of duplicating it),
``names`` (every name a cell was asked for under: ``dm`` and ``gr`` with their defaults are one
cell, and the boards say so).

A run is written with its summary and curves in one transaction, so a killed process never leaves
half a run. A database of an older schema is migrated when opened (after a backup copy of the file);
one written by a newer benchsuite is refused before anything is written to it.
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
import struct
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .errors import UsageError
from .spec import CellSpec, RunRecord

#: 1: runs, curves, names, claims. 2: per-run summaries (``summaries``), computed when a run is stored.
#: 3: the summaries keep what the boards read of a run's info and provenance (``board_fields``, in
#: ``texts``) and its board numbers as binary (``board_numbers``); two covering indexes serve boards.
SCHEMA_VERSION = "3"
#: Epochs averaged by the ``last<k>_<metric>`` columns (all epochs if a run has fewer).
LAST_K = 5
#: Runs whose curves are read (or summarised, when migrating) per query: bounds the memory of a
#: curves export or a migration whatever the size of the database.
CURVE_CHUNK_RUNS = 500
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
CREATE TABLE IF NOT EXISTS summaries (
    run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    noise_kind TEXT NOT NULL,
    setting TEXT NOT NULL,
    params TEXT NOT NULL,
    task_params TEXT NOT NULL,
    requested_name TEXT NOT NULL,
    lineage_hash TEXT NOT NULL,
    board TEXT NOT NULL,
    metrics TEXT NOT NULL,
    board_info_id INTEGER NOT NULL,
    board_provenance_id INTEGER NOT NULL,
    board_identity_id INTEGER NOT NULL,
    board_layout_id INTEGER NOT NULL,
    board_values BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS summaries_by_board ON summaries (task, noise_kind, setting);
CREATE TABLE IF NOT EXISTS texts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS runs_for_boards ON runs (
    id, cell_hash, method, preset, task, noise_kind, noise_rate, seed, status, diverged_epoch, epochs, started_at, finished_at,
    duration_s, error
);
CREATE INDEX IF NOT EXISTS summaries_for_boards ON summaries (
    run_id, board_identity_id, board_info_id, board_provenance_id, board_layout_id, board_values
);
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


#: The columns of a summary, as ``save`` and the migrations write them.
_SUMMARY_INSERT = (
    "INSERT INTO summaries (run_id, task, noise_kind, setting, params, task_params, requested_name, lineage_hash, board, "
    "metrics, board_info_id, board_provenance_id, board_identity_id, board_layout_id, board_values) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The run columns a configuration's runs share (all but seed and noise rate), kept as one text.
BOARD_IDENTITY = ("params", "task_params", "setting", "requested_name", "method", "preset", "task", "noise_kind")
#: What the boards read of a run's ``info``: a section's metrics (``task_metrics``,
#: ``leaderboard_metrics``), the privileged data and the budget (``recipe``).
BOARD_INFO_KEYS = ("leaderboard_metrics", "privileged", "recipe", "task_metrics")
#: What the boards' header reads of a run's ``provenance``; of ``plugins`` only each one's version,
#: of ``reproducibility`` only the CPU kernels (``cpu_capability``).
BOARD_PROVENANCE_KEYS = ("benchsuite", "commit", "cpu_id", "device", "device_name", "dirty", "hostname", "plugins", "python", "reproducibility", "torch")


class StoreError(UsageError, RuntimeError):
    """The results file is not a benchsuite database (or has an incompatible schema), or its path
    cannot be written."""


#: How a store is opened: ``write`` creates the database when it is missing; ``read`` never
#: writes (an SQLite read-only connection), so it works on read-only media and leaves foreign
#: files as they are.
Mode = Literal["read", "write"]


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


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def summarise(
    curves: Iterable[tuple[int, str, float | None]], final: dict[str, Any], task_metrics: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's summary from its stored curves (``(epoch, key, value)``, values as stored: ``None``
    for a non-finite one), its final metrics and its task's declared metrics.

    Returns ``(board, metrics)``. ``board`` is the flat per-run numbers of ``to_dataframe``: the
    final value of every metric and, for the declared metrics, ``best_<m>`` (the best over epochs)
    and ``last<k>_<m>`` (the mean of the last ``LAST_K`` finite values). ``metrics`` keeps, for every
    metric, ``final``, ``last_k`` and, where its direction is known (a declared metric and its
    ``val_`` counterpart, the selection metric), ``best`` and ``best_epoch`` (the first epoch
    reaching it).
    """
    series: dict[str, list[tuple[int, float]]] = {}
    for epoch, key, value in sorted(curves, key=lambda row: row[0]):
        if value is not None:
            series.setdefault(key, []).append((int(epoch), float(value)))
    directions = {m: bool(meta.get("higher_is_better", True)) for m, meta in task_metrics.items()}
    directions.update({"val_" + m.removeprefix("test_"): d for m, d in list(directions.items())})
    board = {k: v for k, v in final.items() if k != "epoch"}
    metrics: dict[str, Any] = {}
    for key, points in sorted(series.items()):
        values = [v for _, v in points]
        entry: dict[str, Any] = {"final": values[-1], "last_k": float(_mean(values[-LAST_K:]))}
        if key in directions:
            pick = max if directions[key] else min
            best = pick(values)
            entry.update(best=best, best_epoch=next(e for e, v in points if v == best))
        metrics[key] = entry
        if key in task_metrics:
            board[f"best_{key}"] = entry["best"]
            board[f"last{LAST_K}_{key}"] = entry["last_k"]
    return board, metrics


def _mean(values: list[float]) -> float:
    """The mean as pandas computes it (a float64 sum in order), so stored summaries equal the
    numbers earlier versions computed from the curves."""
    import numpy as np

    return float(np.asarray(values, dtype=np.float64).mean())


def board_fields(info: dict[str, Any], provenance: dict[str, Any]) -> tuple[str, str]:
    """The keys of a run's info and provenance that the boards read (``BOARD_INFO_KEYS``,
    ``BOARD_PROVENANCE_KEYS``), as JSON texts written like the whole ones.

    The whole texts differ from run to run (the info holds the realised noise and the seed, the
    provenance the PID and the command line) and make up most of a run's row; these parts are
    the same for every run of one task, recipe, host and code version. A board of 10⁵ runs reads
    them instead: a fraction of the bytes, and few distinct texts to parse."""
    board_info = {key: info[key] for key in BOARD_INFO_KEYS if key in info}
    board_provenance = {key: provenance[key] for key in BOARD_PROVENANCE_KEYS if key in provenance}
    plugins = board_provenance.get("plugins")
    if isinstance(plugins, dict):
        board_provenance["plugins"] = {name: _version_only(meta) for name, meta in plugins.items()}
    reproducibility = board_provenance.get("reproducibility")
    if isinstance(reproducibility, dict):
        board_provenance["reproducibility"] = {key: reproducibility[key] for key in ("cpu_capability",) if key in reproducibility}
    return _json(board_info), _json(board_provenance)


#: Integers up to this magnitude are exact in a float64: ``board_numbers`` holds them (kind ``i``).
_EXACT_INT = 2**53


def _kind(value: Any) -> str:
    """A board value's kind in ``board_numbers``: float, boolean, exact integer, null, or ``j``."""
    if type(value) is float:
        return "f"
    if type(value) is bool:
        return "b"
    if type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
        return "i"
    return "n" if value is None else "j"


def board_numbers(board: dict[str, Any]) -> tuple[str, bytes]:
    """A run's board numbers as ``(layout, values)``: the layout, the JSON list of ``[key, kind]``
    in key order (kinds: ``f`` float, ``i`` integer, ``b`` boolean, ``n`` null, ``j`` any other
    value, read from the board's JSON), and the values as little-endian float64, one per key.

    Parsing 10⁵ boards' JSON (their floats written to 17 digits) is most of the cost of a board
    of 10⁵ runs; these are read as one array per layout, and a grid's runs share few layouts (one
    per method's set of metrics). Every integer kind ``i`` holds is exact in a float64."""
    kinds = [(key, _kind(value)) for key, value in sorted(board.items())]
    values = [float(board[key]) if kind in "fib" else math.nan for key, kind in kinds]
    return _canonical(kinds), struct.pack(f"<{len(values)}d", *values)


def _version_only(meta: Any) -> Any:
    """A plugin's provenance as the header reads it: its version only."""
    if not isinstance(meta, dict):
        return meta
    return {"version": meta["version"]} if "version" in meta else {}


def _derived(spec: CellSpec) -> tuple[str, str, str, str, str]:
    """The identity columns boards read, computed once: setting, method and task parameters,
    the requested name (all canonical JSON) and the lineage hash (``run --dry-run``'s staleness)."""
    return (
        _canonical(spec.setting()),
        _canonical(spec.method_params),
        _canonical(spec.task_params),
        _canonical(spec.requested_name()),
        spec.lineage_hash(),
    )


def _finite_or_none(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _text_id(cur: sqlite3.Cursor, text: str) -> int:
    """The id of ``text`` in ``texts`` (added if new): texts that repeat across runs are stored once."""
    cur.execute("INSERT OR IGNORE INTO texts (text) VALUES (?)", (text,))
    (text_id,) = cur.execute("SELECT id FROM texts WHERE text = ?", (text,)).fetchone()
    return int(text_id)


def _board_columns(cur: sqlite3.Cursor, summary: tuple[Any, ...], run: dict[str, Any]) -> tuple[Any, ...]:
    """A summary's schema-3 columns, given its schema-2 ones (``_SUMMARY_INSERT``'s first ten) and
    its run's ``method``, ``preset``, ``info`` and ``provenance``: the ids of its board fields, of
    its identity (``BOARD_IDENTITY``: one text, shared by a configuration's seeds and noise rates)
    and of its board layout, and its board values. Those are taken from the board's JSON text as
    stored, so that they are what a reader of that text gets (a NumPy float or an object written by
    its ``str`` is what JSON made of it)."""
    parts = dict(zip(("task", "noise_kind", "setting", "params", "task_params", "requested_name"), summary[1:7]))
    identity = _canonical([{**parts, **run}[name] for name in BOARD_IDENTITY])
    layout, values = board_numbers(json.loads(summary[8]))
    texts = (*board_fields(run["info"], run["provenance"]), identity, layout)
    return (*(_text_id(cur, text) for text in texts), values)


def _summarise_stored(cur: sqlite3.Cursor, run_ids: list[int]) -> None:
    """Schema 1 to 3: create the summaries and write those of every stored run from its curves."""
    for statement in filter(str.strip, _SCHEMA.split(";")):
        cur.execute(statement)
    for start in range(0, len(run_ids), CURVE_CHUNK_RUNS):
        chunk = run_ids[start : start + CURVE_CHUNK_RUNS]
        curves: dict[int, list[tuple[int, str, float | None]]] = {run_id: [] for run_id in chunk}
        for run_id, epoch, key, value in cur.execute(
            "SELECT run_id, epoch, key, value FROM curves WHERE run_id BETWEEN ? AND ?", (chunk[0], chunk[-1])
        ):
            if run_id in curves:
                curves[run_id].append((epoch, key, value))
        placeholders = ",".join("?" * len(chunk))
        rows = cur.execute(f"SELECT id, spec, final, info, provenance FROM runs WHERE id IN ({placeholders})", chunk).fetchall()
        for run_id, spec_text, final, info_text, provenance in rows:
            spec = CellSpec.from_dict(json.loads(spec_text))
            info = json.loads(info_text)
            board, metrics = summarise(curves[run_id], json.loads(final), info.get("task_metrics", {}))
            derived = (run_id, spec.task, spec.noise_kind, *_derived(spec), _json(board), _json(metrics))
            run = {"method": spec.method, "preset": spec.preset, "info": info, "provenance": json.loads(provenance)}
            cur.execute(_SUMMARY_INSERT, (*derived, *_board_columns(cur, derived, run)))


def _add_board_columns(cur: sqlite3.Cursor, run_ids: list[int]) -> None:
    """Schema 2 to 3: add the summaries' board columns (``_board_columns``), fill them from each
    run's info, provenance and stored board, then create the texts table and the indexes."""
    for column in ("board_info_id", "board_provenance_id", "board_identity_id", "board_layout_id"):
        cur.execute(f"ALTER TABLE summaries ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    cur.execute("ALTER TABLE summaries ADD COLUMN board_values BLOB NOT NULL DEFAULT x''")
    for statement in filter(str.strip, _SCHEMA.split(";")):
        cur.execute(statement)
    fill_board_columns(cur, run_ids)


def fill_board_columns(cur: sqlite3.Cursor, run_ids: list[int]) -> None:
    """(Re)compute the board columns of the summaries of ``run_ids`` from the stored runs, a
    bounded number at a time (a migration, or a benchmark that copies summaries with SQL)."""
    for start in range(0, len(run_ids), CURVE_CHUNK_RUNS):
        chunk = run_ids[start : start + CURVE_CHUNK_RUNS]
        query = (
            "SELECT s.run_id, s.task, s.noise_kind, s.setting, s.params, s.task_params, s.requested_name, s.lineage_hash, s.board, "
            f"s.metrics, r.method, r.preset, r.info, r.provenance FROM runs r JOIN summaries s ON s.run_id = r.id "
            f"WHERE r.id IN ({','.join('?' * len(chunk))})"
        )
        updates = []
        for row in cur.execute(query, chunk).fetchall():
            run = {"method": row[10], "preset": row[11], "info": json.loads(row[12]), "provenance": json.loads(row[13])}
            updates.append((*_board_columns(cur, row[:10], run), row[0]))
        cur.executemany(
            "UPDATE summaries SET board_info_id = ?, board_provenance_id = ?, board_identity_id = ?, board_layout_id = ?, board_values = ? "
            "WHERE run_id = ?",
            updates,
        )


#: Older schema -> (what its migration adds, in words; the step, given the cursor of the
#: migration's transaction and every run id in ascending order).
_MIGRATIONS = {
    "1": ("per-run summaries computed from the stored curves", _summarise_stored),
    "2": ("what boards read of each run's info, provenance and numbers, kept in its summary for fast boards", _add_board_columns),
}


class ResultStore:
    """A results database; safe to share between processes on one machine (and on shared disks
    that support SQLite locking). The file is checked before anything is written to it: a file
    that is not an SQLite database, an SQLite database of another application and a database of
    another schema version are refused (``StoreError`` naming the path), as are paths that cannot
    hold a database (an empty path, a folder that cannot be created or written)."""

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
        writing: nothing is written to a file that is not a benchsuite database of a known schema.
        A database of an older schema (ours) is migrated first, with a backup, even for reading."""
        existing = self.path.is_file() and self.path.stat().st_size > 0
        if existing or self.mode == "read":
            conn = _read_only_connection(self.path)
            try:
                version = _schema_version(conn, self.path)
                self._refuse_unknown_version(version)
            except BaseException:
                conn.close()
                raise
            if self.mode == "read" and version not in _MIGRATIONS:
                return conn
            conn.close()
            if self.mode == "read":
                self._migrate_for_reading(str(version))
                return _read_only_connection(self.path)
        return self._open_for_writing()

    def _open_for_writing(self) -> sqlite3.Connection:
        """Open (or create) the database for writing, migrating a file of an older schema, and create what is missing."""
        try:
            conn = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot open {self.path} for writing ({exc})") from None
        self._conn = conn
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA journal_mode = WAL")
            older = self._stored_version()
            if older in _MIGRATIONS:
                self._migrate(older)
            with self._transaction() as cur:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    cur.execute(statement)
                cur.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate_for_reading(self, version: str) -> None:
        """A read-only command on a database of an older schema: migrate it once (backup first), or say why not."""
        if not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            raise StoreError(
                f"{self.path} has results schema {version} (an older benchsuite) and needs a one-time migration to schema "
                f"{SCHEMA_VERSION}, but it cannot be written here: copy it to a writable folder first"
            )
        self._open_for_writing().close()

    def _stored_version(self) -> str | None:
        """The file's schema version, read without writing anything (None: no benchsuite table yet)."""
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else str(row[0])

    def _refuse_unknown_version(self, version: str | None) -> None:
        """Refuse, before any write, a schema this benchsuite cannot read: a newer one (written by a
        later version, which an older one must not modify) or one it never wrote."""
        if version is None or version in _MIGRATIONS or version == SCHEMA_VERSION:
            return
        newer = version.isdigit() and int(version) > int(SCHEMA_VERSION)
        raise StoreError(
            f"{self.path} has schema version {version}; this benchsuite reads versions 1 to {SCHEMA_VERSION}"
            + ("; it was written by a newer benchsuite: upgrade benchsuite to use it (the file was not modified)" if newer else "")
        )

    def _migrate(self, version: str) -> None:
        """Bring a database of an older schema to ``SCHEMA_VERSION``: copy the file aside first, then
        migrate it in one transaction (``_MIGRATIONS``), a bounded number of runs at a time.
        Another process that migrated meanwhile is noticed inside the transaction, and nothing is redone."""
        backup = self.path.with_name(f"{self.path.name}.schema{version}-backup")
        if backup.exists():
            backup = self.path.with_name(f"{self.path.name}.schema{version}-backup-{int(time.time())}")
        what, step = _MIGRATIONS[version]
        print(
            f"benchsuite: {self.path} has results schema {version}; migrating it to schema {SCHEMA_VERSION} "
            f"({what}); a copy of the file is kept at {backup}",
            file=sys.stderr,
        )
        with sqlite3.connect(backup) as copy:
            self._conn.backup(copy)
        copy.close()
        started = time.perf_counter()
        with self._transaction() as cur:
            if self._stored_version() != version:
                return
            run_ids = [row[0] for row in cur.execute("SELECT id FROM runs ORDER BY id")]
            step(cur, run_ids)
            cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        print(
            f"benchsuite: migrated {len(run_ids)} runs of {self.path} in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
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
        """Write a run, its summary and its curves atomically, replacing an earlier run of the same
        cell. The cost does not depend on the number of stored runs (indexed lookups and appends)."""
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
            curves = [
                (int(row["epoch"]), key, _finite_or_none(value))
                for row in record.curves
                for key, value in row.items()
                if key != "epoch"
            ]
            cur.executemany("INSERT INTO curves VALUES (?, ?, ?, ?)", [(run_id, *row) for row in curves])
            board, metrics = summarise(curves, record.final, record.info.get("task_metrics", {}))
            derived = (run_id, spec.task, spec.noise_kind, *_derived(spec), _json(board), _json(metrics))
            run = {"method": spec.method, "preset": spec.preset, "info": record.info, "provenance": record.provenance}
            cur.execute(_SUMMARY_INSERT, (*derived, *_board_columns(cur, derived, run)))
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

    def states(self, cell_hashes: Iterable[str]) -> dict[str, str]:
        """Cell hash -> status of the stored runs among ``cell_hashes``, by the cell-hash index: what
        ``run --dry-run`` reads, whatever the number of other runs stored."""
        wanted = list(dict.fromkeys(cell_hashes))
        out: dict[str, str] = {}
        for start in range(0, len(wanted), CURVE_CHUNK_RUNS):
            chunk = wanted[start : start + CURVE_CHUNK_RUNS]
            query = f"SELECT cell_hash, status FROM runs WHERE cell_hash IN ({','.join('?' * len(chunk))})"
            out.update(self._conn.execute(query, chunk))
        return out

    def earlier_runs(self, lineage_hashes: Iterable[str]) -> dict[str, str]:
        """Lineage hash -> the cell hash of a finished stored run of that experiment (``stale``
        cells: the same experiment stored under older code or versions), for the lineages asked
        for; one pass over the summaries per chunk of them, none when none is asked for."""
        wanted = list(dict.fromkeys(lineage_hashes))
        out: dict[str, str] = {}
        done = ",".join(f"'{status}'" for status in DONE_STATUSES)
        for start in range(0, len(wanted), CURVE_CHUNK_RUNS):
            chunk = wanted[start : start + CURVE_CHUNK_RUNS]
            query = (
                f"SELECT s.lineage_hash, r.cell_hash FROM summaries s JOIN runs r ON r.id = s.run_id "
                f"WHERE r.status IN ({done}) AND s.lineage_hash IN ({','.join('?' * len(chunk))}) ORDER BY r.id"
            )
            out.update(self._conn.execute(query, chunk))
        return out

    def spec(self, cell_hash: str) -> CellSpec:
        """The stored spec of one run."""
        (text,) = self._conn.execute("SELECT spec FROM runs WHERE cell_hash = ?", (cell_hash,)).fetchone()
        return CellSpec.from_dict(json.loads(text))

    def status(self, cell_hash: str) -> str | None:
        """The stored status of one cell (None: not stored), by its index."""
        row = self._conn.execute("SELECT status FROM runs WHERE cell_hash = ?", (cell_hash,)).fetchone()
        return None if row is None else str(row[0])

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

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a query, one at a time (a large result is never held whole)."""
        yield from self._conn.execute(sql, params)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params).fetchall()
