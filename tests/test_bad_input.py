"""A user's mistakes, each refused up front: exit status 2, a message naming the mistake, and every
file involved left byte for byte as it was (nothing created, nothing written, no WAL switch).

Each case runs the command line in a folder holding a results database of ours, SQLite files of
other kinds, non-databases and runs CSVs good and bad; the folder is fingerprinted before and
after. No case trains: validation happens before anything runs.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.results import to_dataframe
from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import SCHEMA_VERSION, ResultStore

INFO = {"task_metrics": {"test_acc": {"higher_is_better": True, "doc": "test accuracy"}}, "leaderboard_metrics": ["test_acc"]}
PROVENANCE = {"benchsuite": "0.1.0", "commit": "0" * 40, "device": "cpu", "device_name": "Test CPU", "hostname": "testhost"}
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _record(method: str, rate: float, seed: int, accuracy: float) -> RunRecord:
    spec = CellSpec(method, {}, "digits", {"width": 128}, "symmetric", rate, seed, "1", "1")
    curves = [{"epoch": 1, "test_acc": accuracy - 0.1}, {"epoch": 2, "test_acc": accuracy}]
    return RunRecord(spec, "completed", curves=curves, info=INFO, provenance=PROVENANCE,
                     started_at="2026-11-20T10:00:00+00:00", finished_at="2026-11-20T10:01:00+00:00")  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with every kind of file a mistake can point at."""
    with ResultStore(tmp_path / "ours.sqlite") as store:
        for seed in (0, 1, 2):
            store.save(_record("cce", 0.2, seed, 0.8 + 0.01 * seed))
            store.save(_record("gce", 0.2, seed, 0.85 + 0.01 * seed))
    foreign = sqlite3.connect(tmp_path / "foreign.sqlite")
    foreign.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    foreign.execute("INSERT INTO contacts VALUES ('Ada', '123')")
    foreign.commit()
    foreign.close()
    newer = sqlite3.connect(tmp_path / "newer.sqlite")
    newer.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    newer.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, cell_hash TEXT)")
    newer.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(int(SCHEMA_VERSION) + 1),))
    newer.commit()
    newer.close()
    (tmp_path / "random.bin").write_bytes(random.Random(0).randbytes(8192))
    ours = (tmp_path / "ours.sqlite").read_bytes()
    (tmp_path / "truncated.sqlite").write_bytes(ours[: len(ours) // 2])
    (tmp_path / "a_file").write_text("a regular file, not a folder\n")
    (tmp_path / "notes.md").write_text("# my notes\nnot a board benchsuite wrote\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "leaderboard.md").write_text("# my own leaderboard, kept by hand\n")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(1024))
    to_dataframe(tmp_path / "ours.sqlite").to_csv(tmp_path / "good.csv", index=False)
    lines = (tmp_path / "good.csv").read_text().splitlines(keepends=True)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "truncated.csv").write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    (tmp_path / "no_columns.csv").write_text("a,b\n1,2\n")
    as_text = pd.read_csv(tmp_path / "good.csv", dtype=str, keep_default_na=False)
    as_text.loc[1, "seed"] = "two"  # the second row: line 3
    as_text.to_csv(tmp_path / "non_numeric.csv", index=False)
    grids = {
        "nan_lr.toml": "method = ['cce']\ntask = ['digits']\n[budget]\nlr = nan\n",
        "no_seeds.toml": "method = ['cce']\ntask = ['digits']\nseeds = []\n",
        "inf_timeout.toml": "method = ['cce']\ntask = ['digits']\ncell_timeout = inf\n",
        "empty_q.toml": "method = ['gce{q = []}']\ntask = ['digits']\n",
    }
    for name, text in grids.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) -> the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


RUN = ["run", "-m", "cce", "-t", "digits", "--epochs", "1", "--seeds", "0", "--no-progress", "--results", "new.sqlite"]

CASES = {
    # option and grid validation: one validator, the option or key path named with the value
    "noise rate above 1": (RUN + ["--noise", "symmetric:1.5"], "--noise 'symmetric:1.5': '1.5' must be a finite number, 0 ≤ x ≤ 1"),
    "negative noise rate": (RUN + ["--noise", "symmetric:-0.1"], "'-0.1' must be a finite number, 0 ≤ x ≤ 1"),
    "infinite noise rate": (RUN + ["--noise", "symmetric:inf"], "'inf' must be a finite number, 0 ≤ x ≤ 1"),
    "nan noise rate": (RUN + ["--noise", "symmetric:0,nan"], "'nan' must be a finite number, 0 ≤ x ≤ 1 (item 2 of '0,nan')"),
    "misspelt noise kind": (RUN + ["--noise", "symetric:0.2"], "unknown noise kind 'symetric'; did you mean 'symmetric'"),
    "nan learning rate": (RUN + ["--lr", "nan"], "Invalid value for '--lr': 'nan' must be a finite number, x > 0"),
    "nan cell timeout": (RUN + ["--cell-timeout", "nan"], "Invalid value for '--cell-timeout': 'nan' must be a finite number of seconds"),
    "infinite cell timeout": (RUN + ["--cell-timeout", "inf"], "'inf' must be a finite number of seconds, x > 0"),
    "empty value list": (["run", "-m", "gce{q = []}", "-t", "digits", "--results", "new.sqlite"], "--method 'gce{q = []}'.params.q: [] expands to no setting"),
    "empty seed": (RUN[:-2] + ["--seeds", "1,,2", "--results", "new.sqlite"], "Invalid value for '--seeds': '' must be an integer, x ≥ 0 (item 2 of '1,,2')"),
    "non-integer seed": (RUN[:-2] + ["--seeds", "0,x", "--results", "new.sqlite"], "Invalid value for '--seeds': 'x' must be an integer"),
    "duplicate seeds": (RUN[:-2] + ["--seeds", "1,1", "--results", "new.sqlite"], "Invalid value for '--seeds': '1,1' has duplicates"),
    "misspelt task": (["run", "-m", "cce", "-t", "digit", "--results", "new.sqlite"], "unknown task 'digit'; did you mean 'digits'?"),
    "grid budget nan": (["run", "nan_lr.toml", "--results", "new.sqlite"], "budget.lr: nan must be a finite number, x > 0"),
    "grid no seeds": (["run", "no_seeds.toml", "--results", "new.sqlite"], "seeds: [] must be a non-empty list"),
    "grid infinite timeout": (["run", "inf_timeout.toml", "--results", "new.sqlite"], "cell_timeout: inf must be a finite number of seconds, x > 0"),
    "grid empty value list": (["run", "empty_q.toml", "--results", "new.sqlite"], "method[0].params.q: [] expands to no setting"),
    # the results store: nothing that is not ours is written, read-only commands write nothing
    "run into a foreign SQLite file": (RUN[:-1] + ["foreign.sqlite"], "foreign.sqlite is not a benchsuite results database: it is an SQLite database of something else (tables: contacts)"),
    "dry run on a foreign SQLite file": (RUN[:-1] + ["foreign.sqlite", "--dry-run"], "foreign.sqlite is not a benchsuite results database"),
    "run into a newer schema": (RUN[:-1] + ["newer.sqlite"], f"newer.sqlite has schema version {int(SCHEMA_VERSION) + 1}"),
    "run into random bytes": (RUN[:-1] + ["random.bin"], "random.bin is not a benchsuite results database (not an SQLite file)"),
    "run under a regular file": (RUN[:-1] + ["a_file/results.sqlite"], "a part of a_file is a file, not a folder"),
    "run with an empty results path": (RUN[:-1] + [""], "--results '': the path is empty"),
    "leaderboard of a foreign SQLite file": (["leaderboard", "--results", "foreign.sqlite"], "foreign.sqlite is not a benchsuite results database"),
    "export of a foreign SQLite file": (["export", "--results", "foreign.sqlite"], "foreign.sqlite is not a benchsuite results database"),
    "leaderboard of a newer schema": (["leaderboard", "--results", "newer.sqlite"], "has schema version"),
    "leaderboard of random bytes": (["leaderboard", "--results", "random.bin"], "random.bin is not a benchsuite results database"),
    "leaderboard of a truncated database": (["leaderboard", "--results", "truncated.sqlite"], "truncated.sqlite is not a benchsuite results database (unreadable: database disk image is malformed)"),
    "export of a truncated database": (["export", "--results", "truncated.sqlite"], "truncated.sqlite is not a benchsuite results database (unreadable: database disk image is malformed)"),
    "leaderboard of a missing database": (["leaderboard", "--results", "missing.sqlite"], "no results database at missing.sqlite"),
    # runs CSV: checked against the export's schema, the file and its first bad line named
    "empty CSV": (["leaderboard", "--from", "empty.csv"], "empty.csv: the file is empty"),
    "CSV of something else": (["leaderboard", "--from", "no_columns.csv"], "no_columns.csv:1: not a benchsuite runs export: the header lacks the columns info, method"),
    "non-numeric CSV value": (["leaderboard", "--from", "non_numeric.csv"], "non_numeric.csv:3: seed = 'two' is not a number"),
    "truncated CSV": (["leaderboard", "--from", "truncated.csv"], "truncated.csv:4: the last line is cut off"),
    # output paths
    "--out into a missing folder": (["leaderboard", "--from", "good.csv", "--out", "missing/board.md"], "--out 'missing/board.md': cannot write there: the folder missing does not exist"),
    "--out under a regular file": (["export", "--results", "ours.sqlite", "--out", "a_file/runs.csv"], "--out 'a_file/runs.csv': cannot write there: the folder a_file does not exist"),
    "--out onto a folder": (["leaderboard", "--from", "good.csv", "--out", "."], "Invalid value for '--out': File '.' is a directory"),
    "--curves into a missing folder": (["export", "--results", "ours.sqlite", "--out", "runs.csv", "--curves", "missing/c.csv"], "--curves 'missing/c.csv'"),
    "plot into a missing folder": (["plot", "weights", "-m", "gce", "--out", "missing/w.png"], "--out 'missing/w.png': cannot write there"),
    # output paths holding a file benchsuite did not write: never overwritten
    "leaderboard --out onto notes": (["leaderboard", "--from", "good.csv", "--out", "notes.md"], "--out 'notes.md': cannot write there: a file benchsuite did not write is there"),
    "export --out onto a text file": (["export", "--results", "ours.sqlite", "--out", "a_file"], "--out 'a_file': cannot write there: a file benchsuite did not write is there"),
    "export --curves onto a CSV of something else": (["export", "--results", "ours.sqlite", "--out", "runs.csv", "--curves", "no_columns.csv"], "--curves 'no_columns.csv': cannot write there: a file benchsuite did not write"),
    "plot weights onto a photo": (["plot", "weights", "-m", "gce", "--out", "photo.png"], "--out 'photo.png': cannot write there: a file benchsuite did not write is there"),
    "plot curves onto a photo": (["plot", "curves", "--results", "ours.sqlite", "--out", "photo.png"], "--out 'photo.png': cannot write there: a file benchsuite did not write"),
    "run whose board would go onto notes": (RUN[:-1] + ["notes/new.sqlite"], "notes/leaderboard.md: this run's board goes there, but it holds a file benchsuite did not write"),
}


@pytest.mark.parametrize("args, message", list(CASES.values()), ids=list(CASES))
def test_a_mistake_exits_2_names_it_once_and_changes_no_file(folder: Path, args: list[str], message: str) -> None:
    before = fingerprint(folder)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in result.output
    assert result.output.count(message) == 1  # printed once, however many tasks or cells share it
    assert "Traceback" not in result.output
    assert fingerprint(folder) == before


def test_leaderboard_export_and_dry_run_write_nothing_to_our_database(folder: Path) -> None:
    """The read commands open the database read-only: no byte of it changes, no -wal or -shm
    file appears, and a dry run on a path with no database creates none."""
    before = fingerprint(folder)
    for args in (["leaderboard", "--results", "ours.sqlite"], ["export", "--results", "ours.sqlite"],
                 ["run", "-m", "cce", "-t", "digits", "--dry-run", "--results", "ours.sqlite"],
                 ["run", "-m", "cce", "-t", "digits", "--dry-run", "--results", "sub/new.sqlite"]):  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
    assert fingerprint(folder) == before
    board = CliRunner().invoke(main, ["leaderboard", "--results", "ours.sqlite"]).output
    assert "| cce |" in board and "| gce |" in board


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only folders: no read-only folder to test with")
def test_a_database_in_a_read_only_folder_is_read_and_refused_for_writing(folder: Path) -> None:
    shelf = folder / "shelf"
    shelf.mkdir()
    os.replace(folder / "ours.sqlite", shelf / "ours.sqlite")
    shelf.chmod(0o555)
    try:
        before = fingerprint(folder)
        assert CliRunner().invoke(main, ["leaderboard", "--results", "shelf/ours.sqlite"]).exit_code == 0
        result = CliRunner().invoke(main, [*RUN[:-1], "shelf/ours.sqlite"])
        assert result.exit_code == 2 and "the folder shelf is not writable" in result.output
        result = CliRunner().invoke(main, [*RUN[:-1], "shelf/sub/new.sqlite"])
        assert result.exit_code == 2 and "shelf/sub" in result.output
        assert fingerprint(folder) == before
    finally:
        shelf.chmod(0o755)


@pytest.mark.parametrize("earlier_board", [False, True], ids=["new-out", "existing-out"])
def test_ctrl_c_while_the_board_renders_exits_130(folder: Path, monkeypatch: pytest.MonkeyPatch, earlier_board: bool) -> None:
    """Ctrl-C after the --out path was checked and the runs read, during rendering: an earlier board
    at --out keeps its bytes (the check neither truncates nor touches it), a new one is not created,
    and nothing else in the folder changes."""
    if earlier_board:
        (folder / "board.md").write_text("# benchsuite leaderboard\n\n<!-- generated by benchsuite from stored results -->\nan earlier board, still wanted\n")
    rendering = []

    def interrupted(*args: object, **kwargs: object) -> str:
        rendering.append(len(args[0]))  # the runs it was handed
        raise KeyboardInterrupt

    monkeypatch.setattr("benchsuite.leaderboard.render", interrupted)
    before = fingerprint(folder)
    result = CliRunner().invoke(main, ["leaderboard", "--from", "good.csv", "--out", "board.md"])
    assert result.exit_code == 130 and rendering == [6]  # interrupted in render, with the 6 runs of good.csv
    assert fingerprint(folder) == before


def test_an_internal_error_keeps_its_traceback(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare ValueError from inside is a bug, not "invalid input": it is not turned into exit 2."""

    def broken(*args: object, **kwargs: object) -> str:
        raise ValueError("an internal inconsistency")

    monkeypatch.setattr("benchsuite.leaderboard.render", broken)
    result = CliRunner().invoke(main, ["leaderboard", "--from", "good.csv"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError) and str(result.exception) == "an internal inconsistency"


def test_the_regenerate_line_is_shell_quoted(folder: Path) -> None:
    odd = folder / "runs $(touch pwned) here.csv"
    odd.write_bytes((folder / "good.csv").read_bytes())
    result = CliRunner().invoke(main, ["leaderboard", "--from", odd.name, "-t", "digits"])
    assert result.exit_code == 0, result.output
    assert "- Regenerate: `benchsuite leaderboard --from 'runs $(touch pwned) here.csv' -t digits`" in result.output


def test_a_good_export_still_renders_the_same_board_as_its_database(folder: Path) -> None:
    from_db = CliRunner().invoke(main, ["leaderboard", "--results", "ours.sqlite"]).output
    from_csv = CliRunner().invoke(main, ["leaderboard", "--from", "good.csv"]).output
    strip = lambda text: [line for line in text.splitlines() if "Regenerate" not in line]  # noqa: E731
    assert strip(from_db) == strip(from_csv)


def test_an_interrupted_export_leaves_the_earlier_one_whole_and_no_temporary_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file the CLI writes goes to a temporary file beside it, renamed when complete: Ctrl-C
    half-way through leaves the earlier export byte for byte, and nothing else behind."""
    from benchsuite import results

    assert CliRunner().invoke(main, ["export", "--results", "ours.sqlite", "--out", "runs.csv"]).exit_code == 0
    before = fingerprint(folder)
    complete = results.write_runs_csv

    def interrupted(path: object, handle: Any) -> None:
        handle.write("cell_hash,method\n0123,half a line")
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "write_runs_csv", interrupted)
    result = CliRunner().invoke(main, ["export", "--results", "ours.sqlite", "--out", "runs.csv"])
    assert result.exit_code == 130
    assert fingerprint(folder) == before
    monkeypatch.setattr(results, "write_runs_csv", complete)
    assert CliRunner().invoke(main, ["export", "--results", "ours.sqlite", "--out", "runs.csv", "--curves", "curves.csv"]).exit_code == 0
    assert pd.read_csv(folder / "runs.csv").shape[0] == 6 and pd.read_csv(folder / "curves.csv").shape[0] == 12  # 6 runs × 2 epochs
    assert sorted(set(fingerprint(folder)) - set(before)) == ["curves.csv"]  # our earlier export was ours to overwrite


def test_the_cli_overwrites_its_own_board_and_figure(folder: Path) -> None:
    for args, out in ((["leaderboard", "--from", "good.csv", "--out", "board.md"], "board.md"), (["plot", "weights", "-m", "gce", "--out", "w.svg"], "w.svg")):
        first = CliRunner().invoke(main, args)
        assert first.exit_code == 0, first.output
        written = (folder / out).read_bytes()
        (folder / out).write_bytes(written + b"\n")  # touched, still ours (an SVG carries no date: the same bytes again)
        again = CliRunner().invoke(main, args)
        assert again.exit_code == 0, again.output
        assert (folder / out).read_bytes() == written
    assert not list(folder.glob(".*.tmp"))
