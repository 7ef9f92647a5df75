"""The results database: atomic runs, replacement, claims, concurrent writers."""

import multiprocessing as mp
import os
import sqlite3

import pytest

from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import ResultStore, StoreError


def cell(seed=0, method="cce"):
    return CellSpec(method, {}, "digits", {}, "symmetric", 0.2, seed, "v", "v")


def record(seed=0, status="completed", acc=0.9, epochs=2):
    curves = [{"epoch": e, "test_acc": acc - 0.1 * (epochs - e), "loss": 1.0 / e} for e in range(1, epochs + 1)]
    return RunRecord(cell(seed), status, curves=curves, info={"k": 1}, provenance={"torch": "x"})


def test_a_run_is_stored_with_its_curves_and_replaced_by_a_rerun(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.save(record(acc=0.5))
        store.save(record(acc=0.9))
        assert store.statuses() == {cell().cell_hash: "completed"}
        (final,) = store.query("SELECT final FROM runs")
        assert '"test_acc": 0.9' in final["final"]
        assert len(store.query("SELECT * FROM curves")) == 4  # the old curves went with the old run


def test_a_failure_inside_the_transaction_leaves_nothing_behind(tmp_path):
    broken = record()
    broken.curves.append({"test_acc": 1.0})  # no epoch: the insert fails half-way
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(KeyError):
            store.save(broken)
        assert store.statuses() == {} and store.query("SELECT * FROM curves") == []


def test_non_finite_values_are_stored_as_null(tmp_path):
    rec = record()
    rec.curves[0]["loss"] = float("nan")
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.save(rec)
        values = [r["value"] for r in store.query("SELECT value FROM curves WHERE key = 'loss' ORDER BY epoch")]
    assert values == [None, 0.5]


def test_claims_keep_two_processes_off_the_same_cell_and_dead_claims_are_taken_over(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.claim(cell())
        with store._transaction() as cur:  # pretend a live process (our parent) holds another claim
            cur.execute("INSERT INTO claims VALUES (?, ?, ?, 0, 0)", (cell(1).cell_hash, store._host, os.getppid()))
            cur.execute("INSERT INTO claims VALUES (?, ?, ?, 0, 0)", (cell(2).cell_hash, store._host, 2**22 + 12345))
        assert not store.claim(cell(1))  # held by a live process
        assert store.claim(cell(2))  # its owner is dead: stale
        store.save(record(1))
        assert not store.claim(cell(1))  # finished
        assert store.claim(cell(1), force=True)


def _write_many(path, start):
    with ResultStore(path) as store:
        for seed in range(start, start + 40):
            store.save(record(seed))


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path, s)) for s in (0, 40)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with ResultStore(path) as store:
        assert len(store.statuses()) == 80
        assert len(store.query("SELECT * FROM curves")) == 80 * 4


def test_a_foreign_file_is_rejected_with_a_clear_message(tmp_path):
    path = tmp_path / "not.sqlite"
    path.write_text("hello, I am not a database" * 100)
    with pytest.raises(StoreError, match="is not a benchsuite results database"):
        ResultStore(path)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)").connection.execute(
        "INSERT INTO meta VALUES ('schema_version', '99')"
    ).connection.commit()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultStore(other)


def test_opening_the_store_again_in_one_process_keeps_the_first_writers_log(tmp_path):
    """Checking a database never opens its file outside SQLite: closing such a descriptor would drop
    this process's SQLite locks, and another process would then checkpoint and delete the
    write-ahead log under the running writer, whose next runs nobody could see."""
    import subprocess
    import sys

    path = tmp_path / "r.sqlite"

    def seen_elsewhere() -> int:
        code = f"import sqlite3; print(sqlite3.connect({str(path)!r}).execute('SELECT count(*) FROM names').fetchone()[0])"
        return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)

    writer = ResultStore(path)
    writer.add_names({"a": [{"method": "cce"}]})
    ResultStore(path).close()  # the heartbeat thread's store, say
    ResultStore(path, "read").close()
    assert seen_elsewhere() == 1
    writer.add_names({"b": [{"method": "gce"}]})
    assert seen_elsewhere() == 2
    writer.close()
