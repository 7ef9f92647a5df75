"""Results at scale: wall time and peak memory of the commands that read a results database, at
10³, 10⁴ and 10⁵ runs of 60 epochs.

The databases replicate the runs of a real digits database (``--seed-db``; without it a small
digits grid is trained into ``WORK/seed.sqlite`` first) with SQL: copy ``k`` of run ``i`` gets its
own cell hash, a task name out of ``TASK_COPIES`` (``digits``, ``digits_1``, ...: a lab's many tasks),
a seed out of ``SEED_COPIES`` and beyond those a method name of its own (``v3_cce``: a lab's sweeps),
with the run's curves, summary and names. A board then has ``TASK_COPIES`` sections of ten seeds
per cell, whose rows grow with N. Each
command runs in its own process under ``/usr/bin/time``: its wall time and peak RSS include the
interpreter and imports, as a user sees them. Storing a run is timed in process: the median of
``INSERTS`` saves into an empty database and into the full one.

``--before SRC`` also runs the commands with an older benchsuite (the ``benchsuite`` package under
SRC, e.g. ``git archive main benchsuite | tar -x -C SRC``, with its plugins as SRC/benchsuite_plugins
to measure those too) up to ``--before-max`` runs, alternating with this one command by command.
With ``--before-schema 1`` (the default: code that predates the summaries) it reads a schema-1 copy of
the databases (that code reads every curve: 10⁵ runs do not fit in memory); with ``--before-schema 2``
(code that predates the board columns of schema 3) a schema-2 copy, and the board and runs export of
both are compared byte for byte. The migration of that copy to the current schema is timed. ``--layouts`` compares the two curve layouts on the 10⁴-run database.

    nice -n 10 python benchmarks/store_scale.py --work /tmp/scale --seed-db seed.sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import ResultStore, fill_board_columns

TASK_COPIES = 10
SEED_COPIES = 10
INSERTS = 20
SEED_GRID = ["-m", "cce", "-m", "gce", "-m", "mae", "-m", "gr@0:cifar10_clean", "-t", "digits", "--noise", "symmetric:0,0.4", "--seeds", "0,1"]


def sh(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, float, float]:
    """Run ``command`` under /usr/bin/time: (wall seconds, CPU seconds (user + system), peak RSS in
    GB). On a shared machine the CPU time is the steadier of the two times."""
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"store_scale_time_{os.getpid()}"
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(report), *command],
        env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    wall, user, system, kilobytes = report.read_text().split()[-4:]
    return float(wall), float(user) + float(system), int(kilobytes) / 1024**2


def build(seed_db: Path, out: Path, n_runs: int) -> None:
    """A database of ``n_runs`` runs copied from ``seed_db`` (the current schema) with SQL; the
    summaries' board columns (schema 3) are then computed by the store, as a migration does."""
    out.unlink(missing_ok=True)
    ResultStore(out).close()
    conn = sqlite3.connect(out, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")  # a throw-away bulk build; the store itself keeps WAL
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("ATTACH ? AS s", (str(seed_db),))
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE seed_runs AS SELECT row_number() OVER (ORDER BY id) - 1 AS i, id FROM s.runs")
    (per_copy,) = conn.execute("SELECT count(*) FROM seed_runs").fetchone()
    copies = -(-n_runs // per_copy)
    conn.execute(
        f"""CREATE TEMP TABLE copies AS WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM k WHERE k < {copies - 1})
        SELECT k.k * {per_copy} + seed_runs.i + 1 AS new_id, seed_runs.id AS old_id,
               CASE WHEN k.k % {TASK_COPIES} = 0 THEN '' ELSE '_' || (k.k % {TASK_COPIES}) END AS task_suffix,
               k.k / {TASK_COPIES} % {SEED_COPIES} * 100 AS seed_shift,
               CASE WHEN k.k < {TASK_COPIES * SEED_COPIES} THEN '' ELSE 'v' || (k.k / {TASK_COPIES * SEED_COPIES}) || '_' END AS method_prefix
        FROM k CROSS JOIN seed_runs WHERE k.k * {per_copy} + seed_runs.i < {n_runs}"""
    )
    # Text edits keep the JSON exactly as the store writes it (sorted keys, ", " and ": ").
    task = "replace({0}, '\"task\": \"' || r.task || '\"', '\"task\": \"' || r.task || c.task_suffix || '\"')"
    method = "replace({0}, '\"method\": \"', '\"method\": \"' || c.method_prefix)"
    conn.execute(
        f"""INSERT INTO runs SELECT c.new_id, printf('%016x', c.new_id), c.method_prefix || r.method, preset,
           r.task || c.task_suffix, noise_kind, noise_rate, seed + c.seed_shift, status, error, diverged_epoch, epochs,
           json_set({method.format(task.format('spec'))}, '$.seed', seed + c.seed_shift), final, info, provenance,
           started_at, finished_at, duration_s FROM copies c JOIN s.runs r ON r.id = c.old_id ORDER BY c.new_id"""
    )
    conn.execute(
        f"""INSERT INTO summaries SELECT c.new_id, r.task || c.task_suffix, m.noise_kind,
           {method.format(task.format('m.setting'))}, m.params, m.task_params, {method.format('m.requested_name')},
           printf('%016x', c.new_id), m.board, m.metrics, 0, 0, 0, 0, x''
           FROM copies c JOIN s.summaries m ON m.run_id = c.old_id JOIN s.runs r ON r.id = c.old_id ORDER BY c.new_id"""
    )
    conn.execute(
        f"""INSERT INTO names SELECT printf('%016x', c.new_id), {method.format('n.name')} FROM copies c
           JOIN s.runs r ON r.id = c.old_id JOIN s.names n ON n.cell_hash = r.cell_hash"""
    )
    conn.execute(
        "INSERT INTO curves SELECT c.new_id, v.epoch, v.key, v.value FROM copies c JOIN s.curves v ON v.run_id = c.old_id ORDER BY c.new_id, v.epoch, v.key"
    )
    fill_board_columns(conn.cursor(), [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY id")])
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def as_schema_2(db: Path, out: Path) -> None:
    """A copy of ``db`` as benchsuite wrote schema 2: no board columns, texts or covering indexes."""
    shutil.copy(db, out)
    conn = sqlite3.connect(out, isolation_level=None)
    for statement in ("DROP INDEX runs_for_boards", "DROP INDEX summaries_for_boards", "DROP TABLE texts"):
        conn.execute(statement)
    for column in ("board_info_id", "board_provenance_id", "board_identity_id", "board_layout_id", "board_values"):
        conn.execute(f"ALTER TABLE summaries DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.execute("VACUUM")
    conn.close()


def as_schema_1(db: Path, out: Path) -> None:
    """A copy of ``db`` as an older benchsuite wrote it: no summaries, schema version 1."""
    shutil.copy(db, out)
    conn = sqlite3.connect(out, isolation_level=None)
    conn.execute("DROP TABLE summaries")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.execute("VACUUM")
    conn.close()


def insert_seconds(seed_db: Path, db: Path) -> float:
    """Median wall time of saving one more run (a seed run under a new seed) into ``db``."""
    with ResultStore(seed_db) as seed:
        (row,) = seed.query("SELECT id, spec, info, status FROM runs WHERE status = 'completed' LIMIT 1")
        curves: dict[int, dict[str, float]] = {}
        for r in seed.query("SELECT epoch, key, value FROM curves WHERE run_id = ?", (row["id"],)):
            curves.setdefault(r["epoch"], {"epoch": r["epoch"]})[r["key"]] = r["value"]
    spec = CellSpec.from_dict(json.loads(row["spec"]))
    times = []
    with ResultStore(db) as store:
        for i in range(INSERTS):
            moved = CellSpec.from_dict({**spec.to_dict(), "seed": 10**7 + i})
            record = RunRecord(moved, "completed", curves=list(curves.values()), info=json.loads(row["info"]))
            start = time.perf_counter()
            store.save(record)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def commands(db: Path, work: Path, curves: bool = True) -> dict[str, list[str]]:
    """The commands measured on ``db`` (arguments after ``python -m benchsuite``)."""
    out = {
        "leaderboard": ["leaderboard", "--results", str(db), "--out", str(work / "board.md")],
        "export runs": ["export", "--results", str(db), "--out", str(work / "runs.csv")],
        "export curves": ["export", "--results", str(db), "--out", os.devnull, "--curves", str(work / "curves.csv")],
        "dry-run": ["run", *SEED_GRID, "--epochs", "60", "--results", str(db), "--dry-run"],
    }
    if not curves:
        del out["export curves"]
    return out


def measure(
    db: Path, work: Path, source: Path | None = None, old_db: Path | None = None, curves: bool = True, same_runs: bool = False
) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[float, float, float]]]:
    """Wall time, CPU time and peak RSS of each command on ``db`` run by this benchsuite and, with
    ``source``, on ``old_db`` by the benchsuite under ``source`` (its directory is the working
    directory, which ``python -m`` puts first on the path), the two alternating command by
    command so that both see the same load; with ``same_runs`` (``old_db`` holds the runs of
    ``db``) their boards and runs exports are compared byte for byte."""
    cli = [sys.executable, "-m", "benchsuite"]
    after: dict[str, tuple[float, float, float]] = {}
    before: dict[str, tuple[float, float, float]] = {}
    old_commands = commands(old_db, work, curves) if source and old_db else {}
    outputs = {"leaderboard": work / "board.md", "export runs": work / "runs.csv"}
    for name, command in commands(db, work, curves).items():
        after[name] = sh([*cli, *command])
        if name in old_commands:
            kept = outputs[name].with_suffix(".after") if name in outputs else None
            if kept:
                outputs[name].replace(kept)
            before[name] = sh([*cli, *old_commands[name]], {"PYTHONPATH": str(source)}, source)
            if kept and same_runs:  # the same runs and command: the outputs must be equal (the board quotes the path)
                same = kept.read_bytes() == outputs[name].read_bytes().replace(str(old_db).encode(), str(db).encode())
                print(f"{name} on {db.name}: {'byte for byte the older code' if same else 'DIFFERS from the older code'}", file=sys.stderr, flush=True)
    return after, before


def compare_layouts(db: Path) -> None:
    """The curves as stored (long table, primary key (run, epoch, key)) against one zlib-compressed
    float64 array per run and metric: size, writing them all, reading one chunk of runs."""
    conn = sqlite3.connect(db)
    (pages,) = conn.execute("SELECT count(*) FROM dbstat WHERE name = 'curves'").fetchone() if _has_dbstat(conn) else (None,)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    run_ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id")]
    chunk = run_ids[len(run_ids) // 2 : len(run_ids) // 2 + 500]
    start = time.perf_counter()
    long_rows = conn.execute(f"SELECT run_id, epoch, key, value FROM curves WHERE run_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    long_read = time.perf_counter() - start
    arrays = Path(str(db) + ".arrays")
    arrays.unlink(missing_ok=True)
    out = sqlite3.connect(arrays, isolation_level=None)
    out.execute("CREATE TABLE curve_arrays (run_id INTEGER NOT NULL, key TEXT NOT NULL, epochs BLOB NOT NULL, values_ BLOB NOT NULL, PRIMARY KEY (run_id, key)) WITHOUT ROWID")
    series: dict[tuple[int, str], list[tuple[int, float]]] = {}
    for run_id, epoch, key, value in conn.execute("SELECT run_id, epoch, key, value FROM curves ORDER BY run_id, key, epoch"):
        series.setdefault((run_id, key), []).append((epoch, np.nan if value is None else value))
    start = time.perf_counter()
    out.execute("BEGIN")
    out.executemany(
        "INSERT INTO curve_arrays VALUES (?, ?, ?, ?)",
        (
            (run_id, key, zlib.compress(np.array([e for e, _ in points], np.int16).tobytes()), zlib.compress(np.array([v for _, v in points]).tobytes()))
            for (run_id, key), points in series.items()
        ),
    )
    out.execute("COMMIT")
    array_write = time.perf_counter() - start
    start = time.perf_counter()
    decoded = 0
    for _, _, epochs, values in out.execute(f"SELECT * FROM curve_arrays WHERE run_id IN ({','.join('?' * len(chunk))})", chunk):
        decoded += len(np.frombuffer(zlib.decompress(values)))
        np.frombuffer(zlib.decompress(epochs), np.int16)
    array_read = time.perf_counter() - start
    out.close()
    long_mb = pages * page_size / 1e6 if pages else float("nan")
    print(f"\ncurve layouts on {len(run_ids)} runs ({len(long_rows)} values in a chunk of {len(chunk)} runs):")
    print(f"  long table : {long_mb:8.1f} MB; read a chunk {long_read * 1e3:7.1f} ms")
    print(f"  zlib arrays: {arrays.stat().st_size / 1e6:8.1f} MB; read a chunk {array_read * 1e3:7.1f} ms ({decoded} values); write all {array_write:.1f} s")
    arrays.unlink()


def _has_dbstat(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1")
    except sqlite3.OperationalError:
        return False
    return True


def seed_database(work: Path, given: str | None) -> Path:
    """The real runs to replicate, in the current schema (an older file is migrated in a copy)."""
    seed = work / "seed.sqlite"
    if given:
        source = sqlite3.connect(given)
        with sqlite3.connect(seed) as copy:
            source.backup(copy)
        source.close()
    elif not seed.is_file():
        subprocess.run([sys.executable, "-m", "benchsuite", "run", *SEED_GRID, "--results", str(seed), "--no-progress", "--no-leaderboard"], check=True)
    ResultStore(seed).close()
    return seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Directory for the databases and exports (several GB at 10⁵ runs).")
    parser.add_argument("--seed-db", help="A real results database whose runs are replicated.")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--before", type=Path, help="Source root of an older benchsuite to measure side by side.")
    parser.add_argument("--before-max", type=int, default=10000)
    parser.add_argument(
        "--before-schema", type=int, choices=(1, 2), default=1,
        help="The results schema the older benchsuite reads: it runs on a copy of the databases in that schema, whose migration is timed.",
    )  # fmt: skip
    parser.add_argument("--no-curves", action="store_true", help="Leave out the curves export (minutes at 10⁵ runs).")
    parser.add_argument("--layouts", action="store_true", help="Compare the curve layouts on the 10⁴-run database.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seed = seed_database(args.work, args.seed_db)
    empty = args.work / "empty.sqlite"
    empty.unlink(missing_ok=True)
    first_insert = insert_seconds(seed, empty)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        db = args.work / f"runs_{n}.sqlite"
        start = time.perf_counter()
        build(seed, db, n)
        print(f"built {db} ({n} runs) in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        before: dict[str, tuple[float, float, float]] = {}
        migration = None
        if args.before and n <= args.before_max:
            old = args.work / f"runs_{n}.schema{args.before_schema}.sqlite"
            (as_schema_1 if args.before_schema == 1 else as_schema_2)(db, old)
            after, before = measure(db, args.work, args.before.resolve(), old, curves=not args.no_curves, same_runs=args.before_schema == 2)
            backup = Path(f"{old}.schema{args.before_schema}-backup")
            if backup.exists():
                raise RuntimeError(f"{args.before} migrated {old}: it does not read schema {args.before_schema}")
            start = time.perf_counter()
            ResultStore(old).close()
            migration = time.perf_counter() - start
            for leftover in (old, backup):
                leftover.unlink(missing_ok=True)
        else:
            after, _ = measure(db, args.work, curves=not args.no_curves)
        if args.layouts and n == 10000:
            compare_layouts(db)
        rows.append((n, db.stat().st_size / 1e6, after, before, insert_seconds(seed, db), migration))
        (args.work / "curves.csv").unlink(missing_ok=True)
        print_table(rows, first_insert)


def print_table(rows: list[tuple], first_insert: float) -> None:
    """The measurements so far, as a markdown table (printed after each size: 10⁵ takes long)."""
    print(f"\nfirst insert (empty database): {first_insert * 1e3:.1f} ms (median of {INSERTS})")
    print("| N runs | DB size | leaderboard wall (CPU) / peak RSS | export runs | export runs + curves (streamed) | run --dry-run | insert at N | migration to the current schema (with its backup copy) |")
    print("|---|---|---|---|---|---|---|---|")
    for n, size, after, before, insert, migration in rows:
        def cell(name: str, rss: bool = False, after: dict = after, before: dict = before) -> str:
            def one(wall: float, cpu: float, gb: float) -> str:
                return f"{wall:.1f} s ({cpu:.1f} s CPU)" + (f" / {gb:.2f} GB" if rss else "")

            if name not in after:
                return "not measured"
            return one(*after[name]) + (f"; before: {one(*before[name])}" if name in before else "")

        print(
            f"| {n:,} | {size:,.0f} MB | {cell('leaderboard', True)} | {cell('export runs', True)} | {cell('export curves', True)} "
            f"| {cell('dry-run')} | {insert * 1e3:.1f} ms | {'–' if migration is None else f'{migration:.1f} s'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
