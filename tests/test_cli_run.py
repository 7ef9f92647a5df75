"""`benchsuite run` end to end: storing, resuming after SIGKILL and Ctrl-C, concurrent drivers, bad input."""

import json
import os
import signal
import sqlite3
import time

import pytest

from benchsuite.results import to_dataframe

from conftest import run_cli, start_cli

SMALL = ["-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--epochs", "2", "--no-progress"]


def runs_in(path):
    if not os.path.exists(path):
        return []
    try:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT cell_hash, status, finished_at FROM runs WHERE status != 'skipped'").fetchall()
    except sqlite3.OperationalError:  # the driver has not created the schema yet
        return []


def test_run_stores_every_cell_and_writes_the_leaderboard(tmp_path):
    results = tmp_path / "res" / "results.sqlite"
    result = run_cli("run", *SMALL, "--seeds", "0,1", "--results", str(results))
    assert result.returncode == 0, result.stderr
    assert "2 cells: ran 2 completed; 0 already done" in result.stderr
    runs = to_dataframe(results)
    assert list(runs.status) == ["completed", "completed"] and list(runs.seed) == [0, 1]
    assert set(runs.epochs) == {2}
    board = (tmp_path / "res" / "leaderboard.md").read_text()
    assert "## digits — symmetric noise" in board and "| cce |" in board
    assert board in result.stdout + "\n" or board.strip() in result.stdout

    again = run_cli("run", *SMALL, "--seeds", "0,1", "--results", str(results))
    assert "ran nothing; 2 already done" in again.stderr
    forced = run_cli("run", *SMALL, "--seeds", "0", "--results", str(results), "--force", "--no-leaderboard")
    assert "1 cells: ran 1 completed" in forced.stderr


def _start(results, seeds):
    return start_cli("run", "-m", "cce", "-t", "digits{width = 32}", "--noise", "symmetric:0.2", "--epochs", "40",
                     "--seeds", seeds, "--results", str(results), "--no-progress", "--no-leaderboard")  # fmt: skip


def _wait_for_runs(results, n, proc, timeout=240):
    deadline = time.time() + timeout
    while len(runs_in(results)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the grid made no progress"
        time.sleep(0.05)


def test_a_driver_killed_with_sigkill_resumes_with_only_the_missing_cells(tmp_path):
    results = tmp_path / "results.sqlite"
    proc = _start(results, "0,1,2,3,4,5,6,7")
    _wait_for_runs(results, 2, proc)
    proc.kill()
    proc.wait()
    before = {h: finished for h, _, finished in runs_in(results)}
    assert 2 <= len(before) < 8
    result = run_cli("run", "-m", "cce", "-t", "digits{width = 32}", "--noise", "symmetric:0.2", "--epochs", "40",
                     "--seeds", "0,1,2,3,4,5,6,7", "--results", str(results), "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"ran {8 - len(before)} completed; {len(before)} already done" in result.stderr
    after = {h: finished for h, _, finished in runs_in(results)}
    assert len(after) == 8
    assert all(after[h] == before[h] for h in before)  # nothing finished was redone or lost


def test_ctrl_c_stops_cleanly_and_keeps_finished_cells(tmp_path):
    results = tmp_path / "results.sqlite"
    proc = _start(results, "0,1,2,3,4,5,6,7")
    _wait_for_runs(results, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted: re-run the same command to run the missing cells" in err
    with sqlite3.connect(results) as conn:
        assert conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    assert 1 <= len(runs_in(results)) < 8


def test_two_drivers_on_one_database_share_the_work(tmp_path):
    results = tmp_path / "results.sqlite"
    procs = [_start(results, "0,1,2,3"), _start(results, "0,1,2,3")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    runs = runs_in(results)
    assert len(runs) == 4 and {s for _, s, _ in runs} == {"completed"}


def test_dry_run_lists_cells_and_their_state(tmp_path):
    results = tmp_path / "results.sqlite"
    run_cli("run", *SMALL, "--seeds", "0", "--results", str(results))
    result = run_cli("run", *SMALL, "--seeds", "0,1", "--results", str(results), "--dry-run")
    lines = result.stdout.splitlines()
    assert sum("completed" in l for l in lines) == 1 and sum(" todo " in l for l in lines) == 1
    assert lines[-1] == "2 cells (command line)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "gcee"], "unknown method 'gcee'"),
        (["-t", "digits{width = -1}"], "parameter 'width' = -1 is out of range"),
        (["--noise", "symmetric:0.2,x"], "rates must be numbers"),
        (["/nonexistent.toml"], "no such file"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    result = run_cli("run", *args, "--results", str(tmp_path / "r.sqlite"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_leaderboard_and_export_commands(tmp_path):
    results = tmp_path / "results.sqlite"
    assert run_cli("leaderboard", "--results", str(results)).returncode == 2
    run_cli("run", *SMALL, "--seeds", "0", "--results", str(results), "--no-leaderboard")
    out = tmp_path / "board.md"
    assert run_cli("leaderboard", "--results", str(results), "--out", str(out)).returncode == 0
    assert out.read_text().startswith("# benchsuite leaderboard")
    csv = tmp_path / "runs.csv"
    curves = tmp_path / "curves.csv"
    assert run_cli("export", "--results", str(results), "--out", str(csv), "--curves", str(curves)).returncode == 0
    header = csv.read_text().splitlines()[0].split(",")
    assert {"cell_hash", "method", "noise_rate", "seed", "test_acc", "best_test_acc", "last5_test_acc"} <= set(header)
    assert len(curves.read_text().splitlines()) == 1 + 2


def test_run_scores_on_an_ema_deterministically_with_presets_per_noise_rate(tmp_path):
    results = tmp_path / "results.sqlite"
    result = run_cli(
        "run", "-m", "imae@0:clean,noisy", "-t", "digits{width = 16}", "--noise", "symmetric:0,0.4", "--epochs", "2",
        "--seeds", "0", "--eval-ema", "0.99", "--deterministic", "--results", str(results), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = to_dataframe(results).sort_values("noise_rate")
    assert list(runs.preset) == ["0:clean,noisy"] * 2 and list(runs.status) == ["completed"] * 2
    specs = runs.spec.map(json.loads)
    assert [s["method_params"]["T"] for s in specs] == [0.5, 8.0]
    assert all(s["eval_ema"] == 0.99 and s["deterministic"] for s in specs)
    provenance = runs.provenance.map(json.loads)
    assert all(p["reproducibility"]["deterministic"] for p in provenance)
    assert "| imae@0:clean,noisy |" in result.stdout  # one row for both rates


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eval-ema", "1.5"], "Invalid value for '--eval-ema'"),
        (["-m", "imae@0.3:clean"], 'method[1].preset."0.3": this grid runs no noise rate 0.3 (it runs: 0.4)'),
    ],
)
def test_bad_run_options_exit_2_naming_them(tmp_path, args, message):
    result = run_cli("run", *SMALL, *args, "--dry-run", "--results", str(tmp_path / "r.sqlite"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
