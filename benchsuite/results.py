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
        boards = dict(_json_boards(store, wanted))
        for p, key in parsed_later:
            records[p][key] = boards[run_ids[p]][key]
    frame = pd.DataFrame.from_records(records)
    return {key: frame[key] for key in frame}


def _json_boards(store: ResultStore, run_ids: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The parsed JSON boards of ``run_ids``, a chunk of runs per query: where a board value is
    neither number, boolean nor null (kind ``j``), its binary form does not hold it."""
    for start in range(0, len(run_ids), _EXPORT_CHUNK_RUNS):
        chunk = run_ids[start : start + _EXPORT_CHUNK_RUNS]
        query = f"SELECT run_id, board FROM summaries WHERE run_id IN ({','.join('?' * len(chunk))})"
        for run_id, board in store.rows(query, tuple(chunk)):
            yield run_id, json.loads(board)


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
    table. One query sorts the run ids in board order, with each run's board layout and which
    integer columns are null: the header and every column's format are known before the first
    row. Then the runs are read a chunk at a time and written column by column as pandas'
    writer formats and quotes them (``_CsvFields``). The board numbers are read from their
    binary form (``store.board_numbers``; parsing every run's JSON was an eighth of the time),
    the names recorded for cells in one pass. The csv module is not handed the rows: its writer
    is slow on these long JSON texts (12.4 s wall at 10⁵ runs, against 7.5-8.5 s before).
    Returns the number of runs written."""
    with ResultStore(path, "read") as store:
        query = f"SELECT r.id, s.board_layout_id, {', '.join(f'r.{c} IS NULL' for c in _INTEGER_COLUMNS)} FROM runs r JOIN summaries s ON s.run_id = r.id ORDER BY {_RUN_ORDER}"
        sorted_runs = list(store.rows(query))
        order, layout_ids, *nulls = (list(column) for column in zip(*sorted_runs)) if sorted_runs else ([], [])
        del sorted_runs
        board = _BoardColumns(store, order, layout_ids)
        header = RUN_COLUMNS + sorted(set(board.formats) - set(RUN_COLUMNS))
        fields = _CsvFields()
        handle.write(",".join(map(fields.quote, header)) + "\n")
        # pandas holds whole numbers with a gap as floats: they are written as floats ("2.0")
        as_floats = {c for c, null in zip(_INTEGER_COLUMNS, nulls) if 0 < sum(null) < len(order)}
        recorded = _recorded_names(store)
        names_of = _NamesTexts()
        query = f"SELECT r.id, {', '.join(_EXPORT_READ.values())}, s.board_values FROM runs r JOIN summaries s ON s.run_id = r.id WHERE r.id IN "
        for start in range(0, len(order), _EXPORT_CHUNK_RUNS):
            chunk = order[start : start + _EXPORT_CHUNK_RUNS]
            fetched = {row[0]: row[1:] for row in store.rows(query + f"({','.join('?' * len(chunk))})", tuple(chunk))}
            columns = dict(zip([*_EXPORT_READ, "board_values"], zip(*(fetched[run_id] for run_id in chunk))))
            del fetched
            columns["names"] = [names_of(r, recorded.get(h)) for r, h in zip(columns["requested_name"], columns["cell_hash"])]
            columns["error"] = [e.splitlines()[0] if isinstance(e, str) and e else None for e in columns["error"]]
            texts = {c: fields.column(c, values, c in as_floats) for c, values in columns.items() if c in header}
            texts.update(board.chunk(chunk, layout_ids[start : start + _EXPORT_CHUNK_RUNS], columns["board_values"], fields))
            handle.write("\n".join(map(",".join, zip(*(texts[c] for c in header)))) + "\n")
    return len(order)


#: What the runs export reads per run, by column (``to_dataframe``'s columns, the requested name).
_EXPORT_READ = {c.split(".")[-1]: c for c in [*_RUN_COLUMNS_READ, "s.requested_name"]}
#: Run columns whose values are numbers (written as pandas writes numbers: a float by its repr).
_NUMBER_COLUMNS = ("noise_rate", "seed", "diverged_epoch", "epochs", "duration_s")
#: The run columns SQLite holds as integers (or NULL).
_INTEGER_COLUMNS = ("seed", "diverged_epoch", "epochs")


def _recorded_names(store: ResultStore) -> dict[str, str]:
    """Per cell, the names recorded for it, one per line (as ``_RECORDED_NAMES``): one pass over
    the names table instead of a search of its index per run; each distinct text held once."""
    shared: dict[str, str] = {}
    query = "SELECT cell_hash, group_concat(name, char(10)) FROM names GROUP BY cell_hash"
    return {cell_hash: shared.setdefault(text, text) for cell_hash, text in store.rows(query)}


#: What the csv module does not quote: no delimiter, quote or line end (``_CsvFields.quote``).
_PLAIN = re.compile('[^,"\r\n]*').fullmatch


class _CsvFields:
    """Values as the fields pandas' writer (the csv module, minimal quoting) makes of them: a
    missing value or NaN empty, a float by its repr, a text quoted if it holds the delimiter, the
    quote or a line end. Whole number columns are formatted by one ``repr`` of their list; the
    texts that repeat across a chunk's runs are quoted once per chunk (a cache across chunks
    would hold every run's info and provenance where those differ from run to run)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def quote(self, text: str) -> str:
        """``text`` as the csv module writes it: quoted, with its quotes doubled, if it holds a
        delimiter, a quote or a newline (a carriage return: by the csv module itself)."""
        if _PLAIN(text):
            return text
        if "\r" not in text:
            return '"' + text.replace('"', '""') + '"'
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow((text, ""))
        return self._buffer.getvalue()[:-2]

    def column(self, name: str, values: tuple[Any, ...], as_floats: bool = False) -> list[str]:
        """One run column as pandas writes it (``as_floats``: integers with a gap, as floats)."""
        if as_floats:
            values = tuple(None if v is None else float(v) for v in values)
        if name in _NUMBER_COLUMNS:
            return self.numbers(values)
        quote = self.quote
        if name in _SHARED_TEXTS or name == "names":
            shared: dict[Any, str] = {None: ""}
            return [shared[v] if v in shared else shared.setdefault(v, quote(str(v))) for v in values]
        return ["" if v is None else v if type(v) is str and _PLAIN(v) else quote(str(v)) for v in values]

    def numbers(self, values: Iterable[Any]) -> list[str]:
        """Numbers (None or NaN: empty) as pandas writes them: a float by its repr, an integer by
        its str; the repr of the whole list when it holds only those (one call, the same texts)."""
        values = list(values)
        if not set(map(type, values)) <= {float, int, type(None)}:
            return ["" if v is None or v != v else repr(v) if type(v) is float else self.quote(str(v)) for v in values]
        listed = repr(values)
        texts = listed[1:-1].split(", ") if values else []
        if "n" in listed:  # nan or None
            texts = ["" if t in ("nan", "None") else t for t in texts]
        return texts


class _BoardColumns:
    """The runs' board numbers as the runs export writes them, one chunk of runs at a time.

    Each metric's format is that of the pandas column ``to_dataframe`` builds, decided from the
    kinds every run's layout gives it (``store.board_numbers``): ``int`` where every run has an
    integer (or every run a boolean), ``float`` where the values are numbers with a gap or mixed
    (NaN, null and missing values empty), ``text`` otherwise (each value by its ``str``). Values
    of kind ``j`` are read from the JSON boards of the runs that have them, and only those."""

    def __init__(self, store: ResultStore, run_ids: list[int], layout_ids: list[int]) -> None:
        self._store = store
        counts: dict[int, int] = {}
        for layout_id in layout_ids:
            counts[layout_id] = counts.get(layout_id, 0) + 1
        wanted = ",".join(map(str, counts))
        texts = dict(store.rows(f"SELECT id, text FROM texts WHERE id IN ({wanted})")) if counts else {}
        self.layouts = {i: [tuple(pair) for pair in json.loads(texts[i])] for i in counts}
        self.json_layouts = {i for i, keys in self.layouts.items() if any(kind == "j" for _, kind in keys)}
        types: dict[str, set[type]] = {}
        present: dict[str, int] = {}
        for layout_id, keys in self.layouts.items():
            for key, kind in keys:
                present[key] = present.get(key, 0) + (counts[layout_id] if kind != "n" else 0)
                types.setdefault(key, set()).update(_KIND_TYPES.get(kind, ()))
        json_runs = [run_id for run_id, layout_id in zip(run_ids, layout_ids) if layout_id in self.json_layouts]
        for run_id, layout_id, values in self._json_values(json_runs, dict(zip(run_ids, layout_ids))):
            for key, value in values.items():
                types[key].add(type(value))
        self.formats = {key: _format(kinds, present[key] < len(run_ids)) for key, kinds in types.items()}

    def _json_values(self, run_ids: list[int], layout_of: dict[int, int]) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Per run of ``run_ids`` (all with a layout in ``json_layouts``), its values of kind ``j``."""
        for run_id, board in _json_boards(self._store, run_ids):
            layout_id = layout_of[run_id]
            yield run_id, layout_id, {key: board[key] for key, kind in self.layouts[layout_id] if kind == "j"}

    def chunk(self, run_ids: list[int], layout_ids: list[int], blobs: tuple[bytes, ...], fields: _CsvFields) -> dict[str, list[str]]:
        """The metric columns of these runs (in this order) as CSV fields."""
        columns = {key: np.full(len(run_ids), np.nan) for key in self.formats}
        kinds = {key: np.full(len(run_ids), "", dtype="<U1") for key in self.formats}
        layouts = np.asarray(layout_ids)
        for layout_id in dict.fromkeys(layout_ids):
            at = np.flatnonzero(layouts == layout_id)
            keys = self.layouts[layout_id]
            matrix = np.frombuffer(b"".join(blobs[p] for p in at.tolist()), dtype="<f8").reshape(len(at), len(keys))
            for j, (key, kind) in enumerate(keys):
                columns[key][at] = matrix[:, j]
                kinds[key][at] = kind
        json_values: dict[int, dict[str, Any]] = {}
        if self.json_layouts & set(layout_ids):
            position = {run_id: p for p, run_id in enumerate(run_ids)}
            layout_of = dict(zip(run_ids, layout_ids))
            json_runs = [run_id for run_id in run_ids if layout_of[run_id] in self.json_layouts]
            json_values = {position[run_id]: values for run_id, _, values in self._json_values(json_runs, layout_of)}
        return {key: _board_texts(self.formats[key], columns[key], kinds[key], [(p, v[key]) for p, v in json_values.items() if key in v], fields) for key in self.formats}


#: The Python type of a board value of each kind (``n`` and ``j``: none, or found in the JSON).
_KIND_TYPES = {"f": (float,), "i": (int,), "b": (bool,)}


def _format(types: set[type], gaps: bool) -> str:
    """How pandas writes a board column of values of these types (``gaps``: some run has none)."""
    if (types == {int} or types == {bool}) and not gaps:
        return "bool" if types == {bool} else "int"
    return "float" if types and types <= {int, float} else "text"


def _board_texts(form: str, numbers: np.ndarray, kinds: np.ndarray, json_values: list[tuple[int, Any]], fields: _CsvFields) -> list[str]:
    """One board column of a chunk as CSV fields, in ``_BoardColumns``' ``form``: ``numbers`` as
    stored, ``kinds`` each run's kind (empty: the run has no such key), ``json_values`` the values
    of kind ``j`` by position."""
    if form == "bool":
        return [("False", "True")[v] for v in (numbers != 0).tolist()]
    if form == "int":
        texts = fields.numbers(np.where(kinds == "j", 0, numbers).astype(np.int64).tolist())
    elif form == "float":
        texts = fields.numbers(numbers.tolist())
    else:
        convert = {"f": lambda v: "" if v != v else repr(v), "i": lambda v: str(int(v)), "b": lambda v: str(bool(v))}
        texts = [fields.quote(convert[kind](v)) if kind in convert else "" for v, kind in zip(numbers.tolist(), kinds.tolist())]
    for p, value in json_values:
        texts[p] = repr(float(value)) if form == "float" else fields.quote(str(value))
    return texts
