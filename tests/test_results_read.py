"""Reading runs fast (schema 3): the board numbers from their binary form and ``board_runs``
give exactly the tables, boards and exports of parsing every run's JSON."""

import io
import json
import math

import pandas as pd
import pytest

from benchsuite.leaderboard import render
from benchsuite.publish import read_runs_export
from benchsuite.results import board_runs, to_dataframe, write_runs_csv
from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import BOARD_INFO_KEYS, BOARD_PROVENANCE_KEYS, ResultStore, board_numbers

TASK_METRICS = {"test_acc": {"higher_is_better": True, "doc": "test accuracy"}, "test_err": {"higher_is_better": False}}


def _record(method, params, rate, seed, final, task="digits", status="completed"):
    """A run whose info and provenance differ per run where a real lab's do (realised noise, seed,
    PID, command) and per group where boards read them (recipe, privileged data, plugin versions,
    CPU kernels, host)."""
    spec = CellSpec(method, params, task, {"width": 8 if task == "digits" else 16}, "symmetric", rate, seed, "v", "v")
    curves = [{"epoch": 1, "test_acc": 0.5, "test_err": 0.5}, {"epoch": 2, **final}] if status != "skipped" else []
    info = {
        "task_metrics": TASK_METRICS, "leaderboard_metrics": ["test_acc"], "primary_metric": "test_acc",
        "noise": {"realised_rate": rate + seed / 1000, "seed": seed}, "num_train": 1000 + seed,
        "recipe": {"epochs": 2, "batch_size": 64 if task == "digits" else 32, "lr": 0.1, "iterations": None, "weight_decay": 0.0},
        "privileged": {"trusted_per_class": 10, "trusted_examples": 100, "training_examples": 1000} if method == "trust" else {},
    }  # fmt: skip
    provenance = {
        "benchsuite": "0.1.0", "commit": "0123456789abcdef", "dirty": seed == 2, "torch": "2.1", "python": "3.11",
        "device": "cpu", "device_name": "CPU", "cpu_id": f"gen {seed % 2}", "hostname": f"host{seed % 2}", "pid": 4000 + seed,
        "command": f"benchsuite run --seed {seed}", "plugins": {method: {"version": f"1.{seed % 2}", "distribution": "x", "path": f"/p/{seed}"}},
        "reproducibility": {"cpu_capability": "AVX2" if seed % 2 else "AVX512", "torch_threads": seed},
    }  # fmt: skip
    return RunRecord(
        spec, status, curves=curves, info=info, provenance=provenance, error="no trusted set\nTraceback" if status == "skipped" else None,
        started_at=f"2026-11-2{seed}T10:00:00+00:00", finished_at=f"2026-11-2{seed}T10:01:00+00:00", duration_s=1.5 + seed,
    )  # fmt: skip


@pytest.fixture
def varied_db(tmp_path):
    """Two tasks, three methods (one with privileged data), rates and seeds, a skipped and a
    diverged run, names recorded for some cells; board values of every kind."""
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for task in ("digits", "letters"):
            for method, params in (("cce", {}), ("gce", {"q": 0.7}), ("trust", {})):
                for rate in (0.0, 0.4):
                    for seed in range(3):
                        acc = 0.9 - rate / 2 + seed / 100 + (0.05 if method == "trust" else 0)
                        final = {"test_acc": acc, "test_err": 1 - acc, "steps": 10 * (seed + 1)}
                        if method == "gce":
                            final.update(weight_focus=0.5 + seed / 10, early=seed == 1, maybe=None if seed else 0.25)
                        if seed == 1:
                            final.update(gap=7, huge=2**60)
                        store.save(_record(method, params, rate, seed, final, task))
        store.save(_record("cce", {}, 0.4, 9, {}, status="skipped"))
        diverged = _record("gce", {"q": 0.7}, 0.4, 8, {"test_acc": math.nan, "test_err": 0.9, "steps": 3})
        diverged.status, diverged.diverged_epoch = "diverged", 2
        store.save(diverged)
        cells = {CellSpec("gce", {"q": 0.7}, task, {"width": w}, "symmetric", r, s, "v", "v").cell_hash for task, w in (("digits", 8), ("letters", 16)) for r in (0.0, 0.4) for s in range(3)}
        store.add_names({cell: [{"method": "gce_alias", "params": {}, "preset": ""}] for cell in cells})
    return path


def _parsed_boards(path):
    """Every run's board numbers parsed from its JSON text, by cell hash, as earlier versions read them."""
    with ResultStore(path, "read") as store:
        rows = list(store.rows("SELECT r.cell_hash, s.board FROM runs r JOIN summaries s ON s.run_id = r.id ORDER BY r.id"))
    frame = pd.DataFrame.from_records([json.loads(board) for _, board in rows])
    return frame.set_axis([cell for cell, _ in rows])


def test_board_numbers_read_from_binary_are_what_parsing_the_json_gives(varied_db):
    """int64 where every run has an integer, float64 where numbers have a gap or mix, bool, and
    from_records' own columns for booleans with a gap, nulls, texts and integers beyond 2**53."""
    with ResultStore(varied_db) as store:  # a text (a runs export refuses one: here only)
        store.save(_record("cce", {}, 0.0, 5, {"test_acc": 0.5, "note": 'a "note", here'}))
    runs = to_dataframe(varied_db)
    expected = _parsed_boards(varied_db).loc[runs.cell_hash].reset_index(drop=True)
    for key in expected:
        pd.testing.assert_series_equal(runs[key], expected[key], check_names=False, check_exact=True)
    assert runs.steps.dtype == "float64" and runs.gap.dtype == "float64"  # the skipped run has none; gap only on seed 1
    assert runs.early.dtype == object and runs.huge.dtype == "float64" and runs.note.notna().sum() == 1
    assert runs.maybe.isna().sum() == len(runs) - 4 and runs.huge.dropna().eq(2**60).all()
    assert runs.test_acc.isna().sum() == 2  # the diverged run's NaN and the skipped run
    csv = io.StringIO()
    write_runs_csv(varied_db, csv)
    assert csv.getvalue() == runs.to_csv(index=False)


def test_board_numbers_layout_and_values():
    layout, values = board_numbers({"b": True, "a": 0.1, "c": 3, "d": None, "e": "x", "f": 2**60, "g": float("nan")})
    assert json.loads(layout) == [["a", "f"], ["b", "b"], ["c", "i"], ["d", "n"], ["e", "j"], ["f", "j"], ["g", "f"]]
    numbers = list(memoryview(values).cast("d"))
    assert numbers[:3] == [0.1, 1.0, 3.0] and all(math.isnan(v) for v in numbers[3:])


def test_board_runs_renders_the_board_of_the_whole_table_and_of_its_export(varied_db, tmp_path):
    """``board_runs`` differs from ``to_dataframe(spec=False)`` only in info and provenance, which
    hold what boards read; the boards from the table, from it and from the CSV export are equal."""
    full, board = to_dataframe(varied_db, spec=False), board_runs(varied_db)
    assert list(board.columns) == list(full.columns) and list(board.dtypes) == list(full.dtypes)
    pd.testing.assert_frame_equal(board.drop(columns=["info", "provenance"]), full.drop(columns=["info", "provenance"]), check_exact=True)
    for whole, part in zip(full["info"].tolist(), board["info"].tolist()):
        assert json.loads(part) == {k: v for k, v in json.loads(whole).items() if k in BOARD_INFO_KEYS}
    for whole, part in zip(full.provenance.tolist(), board.provenance.tolist()):
        assert set(json.loads(part)) == set(json.loads(whole)) & set(BOARD_PROVENANCE_KEYS)
        assert json.loads(part)["reproducibility"] == {"cpu_capability": json.loads(whole)["reproducibility"]["cpu_capability"]}
    assert full["info"].nunique() == 26 and board["info"].nunique() == 4  # per rate and seed vs per (task, privileged)
    assert full.provenance.nunique() == 11 and board.provenance.nunique() == 9  # the PID and command are not read
    csv = io.StringIO()
    write_runs_csv(varied_db, csv)
    (tmp_path / "runs.csv").write_text(csv.getvalue())
    text = render(full)
    assert render(board) == text == render(read_runs_export(tmp_path / "runs.csv"))
    assert "gce_alias" in text and "trusted 10/class" in text and "AVX2, AVX512" in text and "trust 1.1" in text


def test_a_database_without_runs_reads_as_an_empty_table(tmp_path):
    ResultStore(tmp_path / "e.sqlite").close()
    assert board_runs(tmp_path / "e.sqlite").empty and list(to_dataframe(tmp_path / "e.sqlite").columns)[:3] == ["cell_hash", "method", "preset"]


def test_the_runs_of_given_cells_are_read_by_their_hashes(varied_db):
    """A grid's board (``run``, ``publish``) reads its own cells, not the whole database: the same
    rows and values as filtering the whole table, whatever other runs the database holds."""
    full = to_dataframe(varied_db, spec=False)
    wanted = set(full.cell_hash[(full.method == "gce") & (full.task == "digits")])
    part = to_dataframe(varied_db, spec=False, cell_hashes=[*wanted, "0" * 16])  # a hash not stored is no row
    expected = full[full.cell_hash.isin(wanted)].reset_index(drop=True)
    assert len(part) == len(wanted) == 7 and set(part.columns) == set(expected.columns)
    pd.testing.assert_frame_equal(part, expected[part.columns], check_exact=True, check_dtype=False)
    # a column's dtype follows the runs read, not the others stored: every one of these has whole
    # steps (the whole table's skipped run has none, making it float), and none has an error
    assert part.steps.dtype == "int64" and expected.steps.dtype == "float64"
    assert part.error.isna().all() and part.error.dtype == object
    assert to_dataframe(varied_db, cell_hashes=[]).empty


def test_the_runs_export_is_the_pandas_export_across_chunks_and_kinds(tmp_path, monkeypatch):
    """``write_runs_csv`` reads runs a chunk at a time and formats each board column by the kinds
    of all runs: integers beyond 2**53 (read from the JSON) in every run are an integer column,
    booleans in every run a boolean one, texts with quotes, commas and line ends, lists, a float
    with an integer in one run, NaN and nulls: the same bytes as pandas' export of the table."""
    from benchsuite import results

    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        for method, params in (("cce", {}), ("gce", {"q": 0.7})):
            for seed in range(4):
                final = {"test_acc": 0.5 + seed / 7, "big": 2**60 + seed if seed % 2 else 2**70, "ok": seed % 2 == 0, "mixed": seed if seed == 2 else seed / 3}
                final.update({"label": 'a,"b"\r\nc' if seed == 1 else "plain", "nums": [seed, None]} if method == "gce" else {"nan": math.nan, "none": None})
                store.save(_record(method, params, 0.2, seed, final))
    monkeypatch.setattr(results, "_EXPORT_CHUNK_RUNS", 3)
    streamed = io.StringIO()
    assert write_runs_csv(path, streamed) == 8
    runs = to_dataframe(path)
    assert runs.big.dtype == object and runs.ok.dtype == bool and runs.mixed.dtype == "float64"
    assert streamed.getvalue() == runs.to_csv(index=False)
    text = streamed.getvalue()
    assert text.startswith(",".join(runs.columns) + "\n") and {"big", "label", "mixed", "nan", "none", "nums", "ok"} <= set(runs.columns)
    assert f",{2**70},plain," in text and f',{2**60 + 1},"a,""b""\r\nc",' in text and ',"[0, None]",True,' in text
