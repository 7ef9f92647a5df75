"""Read a results database into pandas: one row per run, or one row per run and epoch.

``to_dataframe(path)`` is the raw-numbers entry point (``benchsuite export`` writes it as CSV).
Per run it holds the identity of the cell, its status and timings, the final value of every
per-epoch metric (plain metric names, e.g. ``test_acc``), and for the task's declared metrics the
best value over epochs (``best_<metric>``) and the mean of the last ``LAST_K`` epochs
(``last5_<metric>``). The JSON columns ``spec``, ``info`` and ``provenance`` keep everything else;
``setting`` is the cell's identity without seed and noise rate (runs with equal settings, and
only they, share a leaderboard row) and ``names`` every name the cell was asked for under
(``[{"method", "preset", "params"}, ...]``: ``dm`` and ``gr`` with their defaults are one cell).

It reads the per-run summaries the store computed when each run was written, never the curves,
so its cost grows with the number of runs, not epochs. ``curves_dataframe`` reads curves: only
for the runs asked for, and ``iter_curves`` a bounded number of runs at a time.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np
import pandas as pd

from .atomic import atomic_open
from .store import BOARD_IDENTITY, CURVE_CHUNK_RUNS, LAST_K, ResultStore

__all__ = ["LAST_K", "RUN_COLUMNS", "board_runs", "curves_dataframe", "iter_curves", "to_dataframe", "write_curves_csv", "write_runs_csv"]

RUN_COLUMNS = [
    "cell_hash", "method", "preset", "params", "names", "setting", "task", "task_params", "noise_kind", "noise_rate",
    "seed", "status", "error", "diverged_epoch", "epochs", "started_at", "finished_at", "duration_s",
    "spec", "info", "provenance",
]  # fmt: skip
_RUN_COLUMNS_READ = [
    "r.cell_hash", "r.method", "r.preset", "r.spec", "r.task", "r.noise_kind", "r.noise_rate", "r.seed", "r.status", "r.error",
    "r.diverged_epoch", "r.epochs", "r.started_at", "r.finished_at", "r.duration_s", "r.info", "r.provenance",
    "s.params", "s.task_params", "s.setting",
]  # fmt: skip


def _wide(long: pd.DataFrame) -> pd.DataFrame:
    """Long (cell_hash, epoch, key, value) rows as one row per (run, epoch), one column per metric."""
    if long.empty:
        return pd.DataFrame(columns=["cell_hash", "epoch"])
    wide = long.pivot_table(index=["cell_hash", "epoch"], columns="key", values="value", aggfunc="first")
    wide.columns.name = None
    return wide.reset_index().sort_values(["cell_hash", "epoch"], kind="stable").reset_index(drop=True)


def iter_curves(path: str | Path, cell_hashes: Iterable[str] | None = None, chunk_runs: int = CURVE_CHUNK_RUNS) -> Iterator[pd.DataFrame]:
    """Per-epoch metrics of the runs asked for (all by default), ``chunk_runs`` runs at a time, in
    cell-hash order: each chunk is ``curves_dataframe``'s table for those runs. Memory is bounded
    by the chunk, whatever the size of the database."""
    with ResultStore(path, "read") as store:
        yield from _curve_chunks(store, cell_hashes, chunk_runs)


def _curve_chunks(store: ResultStore, cell_hashes: Iterable[str] | None, chunk_runs: int) -> Iterator[pd.DataFrame]:
    """``iter_curves`` on an open store."""
    wanted = None if cell_hashes is None else set(cell_hashes)
    runs = [(h, i) for h, i in store.rows("SELECT cell_hash, id FROM runs ORDER BY cell_hash") if wanted is None or h in wanted]
    for start in range(0, len(runs), chunk_runs):
        chunk = {run_id: cell_hash for cell_hash, run_id in runs[start : start + chunk_runs]}
        placeholders = ",".join("?" * len(chunk))
        rows = list(store.rows(f"SELECT run_id, epoch, key, value FROM curves WHERE run_id IN ({placeholders})", tuple(chunk)))
        long = pd.DataFrame(rows, columns=["run_id", "epoch", "key", "value"])
        long.insert(0, "cell_hash", long.pop("run_id").map(chunk))
        yield _wide(long)


def curves_dataframe(path: str | Path, cell_hashes: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-epoch metrics: one row per (run, epoch), one column per metric; only the runs in
    ``cell_hashes`` when given (a plot of one board reads only that board's curves)."""
    chunks = [c for c in iter_curves(path, cell_hashes) if not c.empty]
    if not chunks:
        return pd.DataFrame(columns=["cell_hash", "epoch"])
    wide = pd.concat(chunks, ignore_index=True)
    metrics = sorted(c for c in wide if c not in ("cell_hash", "epoch"))
    return wide[["cell_hash", "epoch", *metrics]]


def write_curves_csv(path: str | Path, out: str | Path, cell_hashes: Iterable[str] | None = None) -> int:
    """Stream the curves of the runs asked for (all by default) to a CSV file, chunk by chunk, in
    bounded memory; the columns are every metric stored (one pass over the keys first). Returns
    the number of rows written."""
    written = 0
    with ResultStore(path, "read") as store, atomic_open(out, "w", newline="") as handle:
        keys = sorted(key for (key,) in store.rows("SELECT DISTINCT key FROM curves"))
        columns = ["cell_hash", "epoch", *keys]
        handle.write(",".join(columns) + "\n")
        for chunk in _curve_chunks(store, cell_hashes, CURVE_CHUNK_RUNS):
            chunk.reindex(columns=columns).to_csv(handle, header=False, index=False)
            written += len(chunk)
    return written


#: Run columns whose texts repeat across runs (a grid's runs share them): each distinct text is held once.
_SHARED_TEXTS = ("method", "preset", "task", "noise_kind", "status", "info", "provenance", "params", "task_params", "setting")
#: The order of ``to_dataframe``'s rows, as SQL (text compares by code point in both, ties by run id).
_RUN_ORDER = "r.task, r.noise_kind, r.method, s.params, r.noise_rate, r.seed, r.id"


def to_dataframe(path: str | Path, spec: bool = True, cell_hashes: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per run (see the module docstring for the columns); ``spec=False`` leaves out the
    full spec, which no board reads (the largest text of a run, one per run). ``cell_hashes``:
    only those runs, found by the cell-hash index (the board of a grid just run reads its own
    cells, not every run of a lab's database)."""
    columns = [c for c in _RUN_COLUMNS_READ if spec or c != "r.spec"]
    return _runs(path, [*columns, "s.requested_name"], "runs r JOIN summaries s ON s.run_id = r.id", cell_hashes=cell_hashes)


#: What ``board_runs`` reads: columns of the two covering indexes (``store``), the board fields' ids.
_BOARD_COLUMNS = [
    "r.cell_hash", "r.noise_rate", "r.seed", "r.status", "r.error",
    "r.diverged_epoch", "r.epochs", "r.started_at", "r.finished_at", "r.duration_s", "s.board_info_id AS info",
    "s.board_provenance_id AS provenance", "s.board_identity_id AS identity",
]  # fmt: skip
#: Per run, the names recorded for its cell, one per line (a name is one-line JSON), by the names' index.
_RECORDED_NAMES = "(SELECT group_concat(n.name, char(10)) FROM names n WHERE n.cell_hash = r.cell_hash)"
#: Read after the run columns, per run: its recorded names, its board layout's id, values and id.
_RUN_TAIL = f"{_RECORDED_NAMES}, s.board_layout_id, s.board_values, s.run_id"


def board_runs(path: str | Path) -> pd.DataFrame:
    """``to_dataframe(path, spec=False)`` as a board reads it, for ``benchsuite leaderboard``: the
    same rows, columns and numbers, but ``info`` and ``provenance`` hold only the keys boards read
    (``store.BOARD_INFO_KEYS``, ``store.BOARD_PROVENANCE_KEYS``), kept in each run's summary.

    The whole texts are most of a run's bytes and differ from run to run (the realised noise, the
    seed, the PID); the boards' parts repeat across a grid's runs and are stored once. Everything
    else is read from two covering indexes, a fraction of the tables' pages. A board rendered
    from this table is the board of the whole table, and of its CSV export, byte for byte."""
    tables = "runs r INDEXED BY runs_for_boards JOIN summaries s INDEXED BY summaries_for_boards ON s.run_id = r.id"
    return _runs(path, _BOARD_COLUMNS, tables, texts=("info", "provenance"), identity=True)


def _runs(
    path: str | Path, columns: list[str], tables: str, texts: tuple[str, ...] = (), identity: bool = False, cell_hashes: Iterable[str] | None = None
) -> pd.DataFrame:
    """The runs table of ``columns`` (SQL, each named by its last word) read from ``tables``, in
    board order; the columns in ``texts`` hold ids of ``texts`` rows, replaced by the texts, and
    with ``identity`` the ``identity`` column too, replaced by its parts (``BOARD_IDENTITY``).
    ``cell_hashes``: only those runs (passed as one JSON list, any number of them)."""
    where, parameters = "", ()
    if cell_hashes is not None:
        where, parameters = "WHERE r.cell_hash IN (SELECT value FROM json_each(?))", (json.dumps(sorted(set(cell_hashes))),)
    with ResultStore(path, "read") as store:
        rows = list(store.rows(f"SELECT {', '.join(columns)}, {_RUN_TAIL} FROM {tables} {where} ORDER BY r.id", parameters))
        if not rows:
            return pd.DataFrame(columns=RUN_COLUMNS)
        names = [c.split(".")[-1].split()[-1] for c in columns] + ["recorded", "board_layout_id", "board_values", "run_id"]
        data = dict(zip(names, map(list, zip(*rows))))
        id_columns = [*texts, "identity"] if identity else list(texts)
        wanted = {text_id for column in id_columns for text_id in data[column]} | set(data["board_layout_id"])
        text_of = dict(store.rows(f"SELECT id, text FROM texts WHERE id IN ({','.join(map(str, wanted))})"))
        numbers = _board_numbers(store, data["run_id"], [text_of[i] for i in data["board_layout_id"]], data["board_values"])
    for column in texts:
        data[column] = _take(*_distinct(data[column], text_of.__getitem__))
    if identity:
        parts, codes = _distinct(data.pop("identity"), lambda i: json.loads(text_of[i]))
        data.update({name: _take([p[k] for p in parts], codes) for k, name in enumerate(BOARD_IDENTITY)})
    for column in (c for c in _SHARED_TEXTS if c not in texts and not (identity and c in BOARD_IDENTITY)):
        shared: dict[str, str] = {}
        data[column] = [shared.setdefault(v, v) if type(v) is str else v for v in data[column]]
    names_of = _NamesTexts()
    data["names"] = [names_of(requested, recorded) for requested, recorded in zip(data.pop("requested_name"), data.pop("recorded"))]
    data["error"] = [error.splitlines()[0] if isinstance(error, str) and error else None for error in data["error"]]
    del rows, data["board_layout_id"], data["board_values"], data["run_id"]
    first = [c for c in RUN_COLUMNS if c in data or c in numbers]
    rest = sorted(c for c in numbers if c not in first)
    runs = pd.DataFrame({c: numbers[c] if c in numbers else data[c] for c in [*first, *rest]})
    return runs.sort_values(["task", "noise_kind", "method", "params", "noise_rate", "seed"], kind="stable").reset_index(drop=True)


def _distinct(ids: list[int], value_of: Callable[[int], Any]) -> tuple[list[Any], np.ndarray]:
    """The value of each distinct id, and each id's position among them: few distinct ids, many
    runs, and no long text is hashed or parsed once per run."""
    distinct, codes = np.unique(np.asarray(ids), return_inverse=True)
    return [value_of(i) for i in distinct.tolist()], codes


def _take(values: list[Any], codes: np.ndarray) -> list[Any]:
    """``[values[c] for c in codes]`` in NumPy: equal codes give one object."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array[codes].tolist()


def _board_numbers(store: ResultStore, run_ids: list[int], layouts: list[str], values: list[bytes]) -> dict[str, Any]:
    """The columns of the runs' boards (``store.board_numbers``), as ``pd.DataFrame.from_records``
    makes them of the parsed boards: a float64 column where every value is a number (integers
    with a gap among them), an int64 one where every run has an integer; any other column is
    built by ``from_records`` itself from the values (booleans, nulls, texts)."""
    positions: dict[str, list[int]] = {}
    for position, layout in enumerate(layouts):
        positions.setdefault(layout, []).append(position)
    parts: dict[str, list[tuple[list[int], np.ndarray, str]]] = {}
    for layout, at in positions.items():
        keys = json.loads(layout)
        matrix = np.frombuffer(b"".join(values[p] for p in at), dtype="<f8").reshape(len(at), len(keys))
        for j, (key, kind) in enumerate(keys):
            parts.setdefault(key, []).append((at, matrix[:, j], kind))
    columns: dict[str, Any] = {}
    others: dict[str, list[tuple[list[int], np.ndarray, str]]] = {}
    for key, pieces in parts.items():
        kinds = {kind for _, _, kind in pieces}
        if not kinds <= {"f", "i"}:
            others[key] = pieces
            continue
        column = np.full(len(run_ids), np.nan)
        for at, part, _ in pieces:
            column[at] = part
        whole = sum(len(at) for at, _, _ in pieces) == len(run_ids)
        columns[key] = column.astype(np.int64) if kinds == {"i"} and whole else column
    if others:
        columns.update(_other_columns(store, run_ids, others))
    return columns


def _other_columns(store: ResultStore, run_ids: list[int], pieces_of: dict[str, list[tuple[list[int], np.ndarray, str]]]) -> dict[str, Any]:
    """The board columns ``_board_numbers`` does not build from numbers alone, by ``from_records``
    from each run's values; values of kind ``j`` (neither number, boolean nor null) are read
    from the JSON boards of the runs that have them."""
    records: list[dict[str, Any]] = [{} for _ in run_ids]
    parsed_later: list[tuple[int, str]] = []
    convert = {"f": float, "i": int, "b": bool, "n": lambda _: None}
    for key, pieces in pieces_of.items():
        for at, part, kind in pieces:
            if kind == "j":
                parsed_later += [(p, key) for p in at]
                continue
            for p, value in zip(at, part.tolist()):
                records[p][key] = convert[kind](value)
    if parsed_later:
        wanted = sorted({run_ids[p] for p, _ in parsed_later})
        boards: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), _EXPORT_CHUNK_RUNS):
            chunk = wanted[start : start + _EXPORT_CHUNK_RUNS]
            query = f"SELECT run_id, board FROM summaries WHERE run_id IN ({','.join('?' * len(chunk))})"
            boards.update((run_id, json.loads(board)) for run_id, board in store.rows(query, tuple(chunk)))
        for p, key in parsed_later:
            records[p][key] = boards[run_ids[p]][key]
    frame = pd.DataFrame.from_records(records)
    return {key: frame[key] for key in frame}


class _NamesTexts:
    """Per run, the JSON list of every name it was asked for under: the requested one and those
    recorded for its cell (``_RUN_TAIL``), canonical and sorted. Runs of one configuration
    share these (across seeds, noise rates and tasks): each distinct pair is built once."""

    def __init__(self) -> None:
        self._canonical: dict[str, str] = {}
        self._shared: dict[tuple[str, str | None], str] = {}

    def _one(self, text: str) -> str:
        if text not in self._canonical:
            self._canonical[text] = json.dumps(json.loads(text), sort_keys=True)
        return self._canonical[text]

    def __call__(self, requested: str, recorded: str | None) -> str:
        text = self._shared.get((requested, recorded))
        if text is None:
            texts = {requested, *(self._one(t) for t in (recorded.split("\n") if recorded else ()))}
            text = self._shared[requested, recorded] = "[" + ", ".join(sorted(texts)) + "]"
        return text


#: Runs fetched per query when streaming the runs export.
_EXPORT_CHUNK_RUNS = 2000


def write_runs_csv(path: str | Path, handle: IO[str]) -> int:
    """Write ``to_dataframe(path).to_csv(handle, index=False)`` byte for byte without building the
    table: the per-run numbers are parsed first (the header needs every metric), then the runs
    are read in board order a chunk at a time and written column by column, each value formatted
    as pandas formats its column and quoted by the csv module as pandas' writer quotes it (each
    distinct shared text once). Returns the number of runs written."""
    fields = _CsvFields()
    with ResultStore(path, "read") as store:
        ordered = list(store.rows(f"SELECT r.id, s.board FROM runs r JOIN summaries s ON s.run_id = r.id ORDER BY {_RUN_ORDER}"))
        if not ordered:
            handle.write(",".join(RUN_COLUMNS) + "\n")
            return 0
        order = [run_id for run_id, _ in ordered]
        boards = json.loads("[" + ",".join(text for _, text in ordered) + "]")
        del ordered
        names = [c.split(".")[-1] for c in _RUN_COLUMNS_READ] + ["names"]
        metrics = list(dict.fromkeys(k for board in boards for k in board))
        header = [c for c in RUN_COLUMNS if c in names or c in metrics]
        header += sorted(set(names + metrics) - set(header))
        formats = {k: _metric_format([board.get(k, _MISSING) for board in boards], fields) for k in metrics}
        handle.write(",".join(fields.quote(c) for c in header) + "\n")
        query = f"SELECT r.id, {', '.join(_RUN_COLUMNS_READ)}, s.requested_name, {_RECORDED_NAMES} FROM runs r JOIN summaries s ON s.run_id = r.id WHERE r.id IN "
        names_of = _NamesTexts()
        (counts,) = store.query(f"SELECT count(*), {', '.join(f'count(r.{c})' for c in _INTEGER_COLUMNS)} FROM runs r JOIN summaries s ON s.run_id = r.id")
        total, *present = tuple(counts)
        # pandas holds whole numbers with a gap as floats: they are written as floats ("2.0")
        fields.as_floats = {c for c, n in zip(_INTEGER_COLUMNS, present) if 0 < n < total}
        for start in range(0, len(order), _EXPORT_CHUNK_RUNS):
            chunk = order[start : start + _EXPORT_CHUNK_RUNS]
            fetched = {row[0]: row[1:] for row in store.rows(query + f"({','.join('?' * len(chunk))})", tuple(chunk))}
            rows = [fetched[run_id] for run_id in chunk]
            columns = dict(zip(names, map(list, zip(*rows))))
            columns["names"] = [names_of(row[-2], row[-1]) for row in rows]
            columns["error"] = [e.splitlines()[0] if isinstance(e, str) and e else None for e in columns["error"]]
            chunk_boards = boards[start : start + _EXPORT_CHUNK_RUNS]
            texts = [formats[c](chunk_boards, c) if c in formats else fields.column(c, columns[c]) for c in header]
            handle.write("\n".join(map(",".join, zip(*texts))) + "\n")
    return len(order)


#: Run columns whose values are numbers (written as pandas writes numbers: a float by its repr).
_NUMBER_COLUMNS = ("noise_rate", "seed", "diverged_epoch", "epochs", "duration_s")
#: The run columns SQLite holds as integers (or NULL).
_INTEGER_COLUMNS = ("seed", "diverged_epoch", "epochs")
#: Whether the csv module may quote a field: it holds the delimiter, the quote or a line end.
_may_need_quotes = re.compile('[,"\r\n]').search


class _CsvFields:
    """Values as fields of a CSV line: quoted exactly as the csv module quotes them (as pandas'
    writer does), the texts that repeat across runs quoted once."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self._shared: dict[str | None, str] = {None: ""}
        self.as_floats: set[str] = set()

    def quote(self, text: str) -> str:
        if not _may_need_quotes(text):
            return text
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow((text, ""))
        return self._buffer.getvalue()[:-2]

    def shared(self, text: str | None) -> str:
        quoted = self._shared.get(text)
        if quoted is None:
            quoted = self._shared[text] = self.quote(str(text))
        return quoted

    def column(self, name: str, values: list[Any]) -> list[str]:
        """One column of the runs table as pandas writes it: a missing value empty, a float by its
        repr, a text quoted as needed."""
        if name in self.as_floats:
            return ["" if v is None else repr(float(v)) for v in values]
        if name in _NUMBER_COLUMNS:
            return ["" if v is None or v != v else repr(v) if type(v) is float else str(v) for v in values]
        if name in _SHARED_TEXTS or name == "names":
            shared = self._shared
            return [shared[v] if v in shared else self.shared(v) for v in values]
        return ["" if v is None else self.quote(v) for v in values]


_MISSING = object()


def _metric_format(values: list[Any], fields: _CsvFields) -> Callable[[list[dict[str, Any]], str], list[str]]:
    """How pandas writes a metric column built from these values (``_MISSING``: the run lacks the
    key), as a function of a chunk of boards and the key: whole numbers without a gap as integers,
    numbers as floats (a gap or NaN empty), anything else as text."""
    kinds = {type(v) for v in values if v is not _MISSING and v is not None}
    gaps = any(v is _MISSING or v is None for v in values)
    if (kinds == {int} or kinds == {bool}) and not gaps:
        return lambda boards, key: [str(board[key]) for board in boards]
    if kinds and kinds <= {int, float}:
        return lambda boards, key: ["" if (v := board.get(key)) is None or v != v else repr(float(v)) for board in boards]
    return lambda boards, key: ["" if (v := board.get(key)) is None or (type(v) is float and v != v) else fields.quote(str(v)) for board in boards]
