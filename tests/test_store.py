"""The results database: atomic runs, replacement, claims, concurrent writers."""

import json
import multiprocessing as mp
import os
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest

from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import SCHEMA_VERSION, STALE_CLAIM_SECONDS, ResultStore, StoreError, board_fields


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
    now = time.time()
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.claim(cell())
        with store._transaction() as cur:  # pretend a live process (our parent) holds another claim
            cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (cell(1).cell_hash, store._host, os.getppid(), now, now))
            cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (cell(2).cell_hash, store._host, 2**22 + 12345, now, now))
        assert not store.claim(cell(1))  # held by a live process
        assert store.claim(cell(2))  # its owner is dead: stale
        store.save(record(1))
        assert not store.claim(cell(1))  # finished
        assert store.claim(cell(1), force=True)


@pytest.mark.parametrize("same_host", [True, False])
def test_a_claim_whose_heartbeat_is_older_than_the_limit_is_stale_even_if_its_pid_lives(tmp_path, same_host):
    """PID reuse: the dead driver's PID now belongs to another live process (here our parent)."""
    now = time.time()
    old = now - STALE_CLAIM_SECONDS - 1
    with ResultStore(tmp_path / "r.sqlite") as store:
        host = store._host if same_host else "elsewhere"
        with store._transaction() as cur:
            cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (cell(1).cell_hash, host, os.getppid(), old - 3 * 86400, old))
            cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (cell(2).cell_hash, host, os.getppid(), now, now - 60))
        assert store.running_elsewhere() == [(cell(2).cell_hash, host, os.getppid())]
        assert store.claim(cell(1))  # 3 days and a bit without a heartbeat: taken over
        assert not store.claim(cell(2))  # beating a minute ago: still its owner's


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


# -- summaries, migration, curves on demand ------------------------------------------------------

TASK_INFO = {"task_metrics": {"test_acc": {"higher_is_better": True}, "test_err": {"higher_is_better": False}}}


def _summary_records():
    """Runs with a non-finite value, a late best, fewer epochs than LAST_K, and a skipped run."""
    out = []
    for seed, accs in enumerate([[0.5, 0.7, 0.6, 0.65, 0.66, 0.64, 0.63], [0.2, float("nan"), 0.4], []]):
        curves = [{"epoch": e + 1, "test_acc": a, "test_err": 1 - a, "val_acc": a / 2, "loss": 1.0 / (e + 1)} for e, a in enumerate(accs)]
        out.append(RunRecord(cell(seed), "completed" if accs else "skipped", curves=curves, info=TASK_INFO, provenance={"torch": "x"}))
    return out


def test_stored_summaries_are_the_numbers_of_the_curves(tmp_path):
    """best_ and last5_ columns equal what pandas computes from the curves themselves (the
    computation earlier versions ran on every read); the full summary keeps the epoch of the best."""
    from benchsuite.results import curves_dataframe, to_dataframe

    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for rec in _summary_records():
            store.save(rec)
        metrics = {r["run_id"]: json.loads(r["metrics"]) for r in store.query("SELECT run_id, metrics FROM summaries")}
    runs = to_dataframe(path).set_index("cell_hash")
    curves = curves_dataframe(path)
    for cell_hash, group in curves.groupby("cell_hash"):
        acc, err = group.test_acc.dropna(), group.test_err.dropna()
        assert runs.loc[cell_hash, "best_test_acc"] == acc.max() and runs.loc[cell_hash, "best_test_err"] == err.min()
        assert runs.loc[cell_hash, "last5_test_acc"] == acc.iloc[-5:].mean()
        assert runs.loc[cell_hash, "last5_test_err"] == err.iloc[-5:].mean()
    assert runs.loc[cell(0).cell_hash, "best_test_acc"] == 0.7 and runs.loc[cell(0).cell_hash, "test_acc"] == 0.63
    assert runs.loc[cell(1).cell_hash, "last5_test_acc"] == pytest.approx(0.3)  # the NaN epoch is left out
    assert runs.loc[cell(2).cell_hash, ["best_test_acc", "last5_test_acc"]].isna().all()  # skipped: no curves
    first = metrics[1]
    assert first["test_acc"]["best_epoch"] == 2 and first["test_err"]["best_epoch"] == 2
    assert first["val_acc"]["best"] == 0.35 and "best" not in first["loss"]  # the selection metric has a direction; loss has none
    assert first["loss"]["last_k"] == pytest.approx(np.mean([1 / 3, 1 / 4, 1 / 5, 1 / 6, 1 / 7]))
    assert "best_val_acc" not in runs  # the exported columns are those of earlier versions


def _as_schema_1(path):
    """Rewrite a database as benchsuite wrote it before summaries existed."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE summaries")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()


def test_a_schema_1_database_is_backed_up_then_migrated_to_the_same_numbers(tmp_path, capsys):
    from benchsuite.results import to_dataframe

    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for rec in _summary_records():
            store.save(rec)
        store.add_names({cell(0).cell_hash: [{"method": "alias", "preset": "", "params": {}}]})
    expected = to_dataframe(path)
    _as_schema_1(path)
    capsys.readouterr()
    with ResultStore(path) as store:
        assert store.query("SELECT value FROM meta")[0][0] == SCHEMA_VERSION == "3"
        assert len(store.query("SELECT * FROM summaries")) == 3
        assert '"task_metrics"' in store.query("SELECT t.text FROM summaries s JOIN texts t ON t.id = s.board_info_id")[0][0]
    message = capsys.readouterr().err
    assert "schema 1; migrating it to schema 3" in message and "migrated 3 runs" in message
    backup = tmp_path / "r.sqlite.schema1-backup"
    assert str(backup) in message
    old = sqlite3.connect(backup)
    assert old.execute("SELECT value FROM meta").fetchone() == ("1",) and old.execute("SELECT count(*) FROM runs").fetchone() == (3,)
    old.close()
    pd.testing.assert_frame_equal(to_dataframe(path), expected)
    ResultStore(path).close()  # opening again migrates nothing
    assert "migrat" not in capsys.readouterr().err


def _as_schema_2(path):
    """Rewrite a database as benchsuite 2's schema wrote it: summaries without the board fields
    (the schema-3 table's columns are the schema-2 ones and the board's, appended)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP INDEX runs_for_boards")
    conn.execute("DROP INDEX summaries_for_boards")
    conn.execute("DROP TABLE texts")
    for column in ("board_info_id", "board_provenance_id", "board_identity_id", "board_layout_id", "board_values"):
        conn.execute(f"ALTER TABLE summaries DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()


def _varied_records():
    """Runs whose info and provenance differ in what boards do not read (realised noise, seed, PID,
    command) and in what they do (privileged data, a plugin's version, the CPU kernels)."""
    out = _summary_records()
    for i, rec in enumerate(out):
        rec.info = {**TASK_INFO, "noise": {"realised_rate": 0.19 + i / 100, "seed": i}, "privileged": {"trusted_per_class": i} if i else {}}
        rec.provenance = {
            "torch": "2.1", "pid": 1000 + i, "command": f"run --seed {i}", "hostname": "h", "plugins": {"p": {"version": f"1.{i % 2}", "path": f"/x/{i}"}},
            "reproducibility": {"cpu_capability": "AVX2", "torch_threads": i},
        }  # fmt: skip
    return out


BOARD_COLUMNS = (
    "SELECT s.run_id, i.text AS board_info, p.text AS board_provenance, d.text AS identity, l.text AS layout, s.board_values FROM summaries s "
    "JOIN texts i ON i.id = s.board_info_id JOIN texts p ON p.id = s.board_provenance_id JOIN texts d ON d.id = s.board_identity_id "
    "JOIN texts l ON l.id = s.board_layout_id ORDER BY s.run_id"
)


def test_a_schema_2_database_is_backed_up_then_given_the_board_fields(tmp_path, capsys):
    """Schema 2 -> 3 adds to each summary what the boards read of its run's info and provenance,
    computed from the stored texts: equal to what ``save`` writes for a new run."""
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for rec in _varied_records():
            store.save(rec)
        saved = store.query(BOARD_COLUMNS)
    _as_schema_2(path)
    capsys.readouterr()
    with ResultStore(path, "read") as store:  # a reading command migrates it too
        assert store.query("SELECT value FROM meta")[0][0] == "3"
        assert store.query(BOARD_COLUMNS) == saved
    message = capsys.readouterr().err
    assert "schema 2; migrating it to schema 3" in message and "migrated 3 runs" in message
    old = sqlite3.connect(tmp_path / "r.sqlite.schema2-backup")
    assert old.execute("SELECT value FROM meta").fetchone() == ("2",)
    assert "board_values" not in {row[1] for row in old.execute("PRAGMA table_info(summaries)")}
    old.close()
    info, provenance = json.loads(saved[1]["board_info"]), json.loads(saved[1]["board_provenance"])
    assert info == {"privileged": {"trusted_per_class": 1}, "task_metrics": TASK_INFO["task_metrics"]}
    assert provenance == {"hostname": "h", "plugins": {"p": {"version": "1.1"}}, "reproducibility": {"cpu_capability": "AVX2"}, "torch": "2.1"}
    ResultStore(path).close()
    assert "migrat" not in capsys.readouterr().err


def test_board_fields_keep_only_what_boards_read_and_repeat_across_seeds():
    base = {"noise": {"realised_rate": 0.2}, "recipe": {"lr": 0.1}, "task_metrics": {"test_acc": {}}, "leaderboard_metrics": ["test_acc"]}
    prov = {"pid": 1, "commit": "c", "dirty": False, "plugins": {"a": "odd", "b": {"distribution": "d"}}, "reproducibility": None}
    first = board_fields(base, prov)
    assert first == board_fields({**base, "noise": {"realised_rate": 0.21}}, {**prov, "pid": 2})
    assert json.loads(first[0]) == {"leaderboard_metrics": ["test_acc"], "recipe": {"lr": 0.1}, "task_metrics": {"test_acc": {}}}
    assert json.loads(first[1]) == {"commit": "c", "dirty": False, "plugins": {"a": "odd", "b": {}}, "reproducibility": None}


def test_a_database_of_a_newer_schema_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "newer.sqlite"
    with ResultStore(path) as store:
        store.save(record())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = path.read_bytes()
    for mode in ("write", "read"):
        with pytest.raises(StoreError, match="schema version 4; this benchsuite reads versions 1 to 3.*written by a newer benchsuite"):
            ResultStore(path, mode)
    assert path.read_bytes() == before and not (tmp_path / "newer.sqlite-wal").exists()


def test_curves_are_read_only_for_the_runs_asked_and_exported_in_chunks(tmp_path):
    from benchsuite.results import curves_dataframe, iter_curves, write_curves_csv

    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for seed in range(5):
            store.save(record(seed, epochs=3))
    everything = curves_dataframe(path)
    assert len(everything) == 15 and list(everything.columns) == ["cell_hash", "epoch", "loss", "test_acc"]
    one = curves_dataframe(path, [cell(3).cell_hash])
    assert set(one.cell_hash) == {cell(3).cell_hash} and one.epoch.tolist() == [1, 2, 3]
    chunks = list(iter_curves(path, chunk_runs=2))
    assert [c.cell_hash.nunique() for c in chunks] == [2, 2, 1]
    assert write_curves_csv(path, tmp_path / "c.csv") == 15
    assert (tmp_path / "c.csv").read_text() == everything.to_csv(index=False)


def test_dry_run_reads_only_the_cells_asked_for(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.save(record(0))
        store.save(RunRecord(cell(1), "failed", error="boom"))
        assert store.states([cell(0).cell_hash, cell(1).cell_hash, cell(2).cell_hash]) == {cell(0).cell_hash: "completed", cell(1).cell_hash: "failed"}
        assert store.states([cell(1).cell_hash]) == {cell(1).cell_hash: "failed"}
        # only finished runs are earlier runs of an experiment; lineages not stored are absent
        assert store.earlier_runs([cell(0).lineage_hash(), cell(1).lineage_hash(), cell(2).lineage_hash()]) == {
            cell(0).lineage_hash(): cell(0).cell_hash
        }
        assert store.spec(cell(1).cell_hash) == cell(1) and store.status(cell(0).cell_hash) == "completed"
        assert store.status("0" * 16) is None


def test_the_streamed_runs_export_is_the_pandas_export_byte_for_byte(tmp_path):
    """``write_runs_csv`` formats and quotes every kind of value as ``to_dataframe(...).to_csv``:
    texts with commas, quotes and line ends, missing values, whole and fractional numbers, a
    metric some runs lack, a NaN, integers and booleans in the final metrics."""
    import io

    from benchsuite.results import to_dataframe, write_runs_csv

    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.save(record(0, acc=0.75))
        store.save(RunRecord(cell(1), "failed", error='Traceback, "quoted"\nValueError: boom', info={"k": "a,b"}, provenance={"torch": "x\ny"}))
        diverged = record(2, status="diverged")
        diverged.diverged_epoch = 2
        diverged.curves[-1].update({"test_acc": float("nan"), "steps": 7, "early": True, "note": 'say "hi", twice'})
        store.save(diverged)
        for seed in (3, 4):
            done = record(seed, acc=0.5 + seed / 10)
            done.curves[-1].update({"steps": 9, "early": False})
            done.duration_s = 12.0
            store.save(done)
        store.add_names({cell(3).cell_hash: [{"method": "alias", "params": {}, "preset": ""}]})
    streamed = io.StringIO()
    assert write_runs_csv(path, streamed) == 5
    expected = to_dataframe(path).to_csv(index=False)
    assert streamed.getvalue() == expected
    assert '"Traceback, ""quoted"""' in expected and "alias" in expected  # the cases above are in the export
    empty = io.StringIO()
    ResultStore(tmp_path / "e.sqlite").close()
    assert write_runs_csv(tmp_path / "e.sqlite", empty) == 0 and empty.getvalue() == to_dataframe(tmp_path / "e.sqlite").to_csv(index=False)
