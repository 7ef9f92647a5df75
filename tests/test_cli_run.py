"""`benchsuite run` end to end: storing, resuming after SIGKILL and Ctrl-C, concurrent drivers, bad input."""

import json
import os
import re
import signal
import sqlite3
import time

import pytest
from conftest import cli_in_process, run_cli, start_cli

from benchsuite.results import to_dataframe

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
    result = cli_in_process("run", *SMALL, "--seeds", "0,1", "--results", str(results))
    assert result.returncode == 0, result.stderr
    assert "2 cells: ran 2 completed; 0 already done" in result.stderr
    runs = to_dataframe(results)
    assert list(runs.status) == ["completed", "completed"] and list(runs.seed) == [0, 1]
    assert set(runs.epochs) == {2}
    board = (tmp_path / "res" / "leaderboard.md").read_text()
    assert "## digits — symmetric noise" in board and "| cce |" in board
    assert board in result.stdout + "\n" or board.strip() in result.stdout

    again = cli_in_process("run", *SMALL, "--seeds", "0,1", "--results", str(results))
    assert "ran nothing; 2 already done" in again.stderr
    forced = cli_in_process("run", *SMALL, "--seeds", "0", "--results", str(results), "--force", "--no-leaderboard")
    assert "1 cells: ran 1 completed" in forced.stderr


def _start(results, seeds, *more):
    return start_cli("run", "-m", "cce", "-t", "digits{width = 32}", "--noise", "symmetric:0.2", "--epochs", "40",
                     "--seeds", seeds, "--results", str(results), "--no-progress", "--no-leaderboard", *more)  # fmt: skip


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
    # Each driver runs its cells itself (--executor local): the sharing is the drivers' claims, and
    # two pools of two spawned workers each would put six processes on CI's two cores.
    procs = [_start(results, "0,1,2,3", "--executor", "local"), _start(results, "0,1,2,3", "--executor", "local")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    runs = runs_in(results)
    assert len(runs) == 4 and {s for _, s, _ in runs} == {"completed"}


def test_dry_run_lists_cells_and_their_state(tmp_path):
    results = tmp_path / "results.sqlite"
    cli_in_process("run", *SMALL, "--seeds", "0", "--results", str(results))
    result = cli_in_process("run", *SMALL, "--seeds", "0,1", "--results", str(results), "--dry-run")
    lines = result.stdout.splitlines()
    assert sum("completed" in l for l in lines) == 1 and sum(" todo " in l for l in lines) == 1
    assert lines[-2] == "2 cells (command line)"
    assert lines[-1].startswith("executor: ") and "expected duration: about" in lines[-1]  # before anything runs


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "gcee"], "unknown method 'gcee'"),
        (["-t", "digits{width = -1}"], "parameter 'width' = -1 is out of range"),
        (["--noise", "symmetric:0.2,x"], "--noise 'symmetric:0.2,x': 'x' must be a finite number, 0 ≤ x ≤ 1 (item 2 of '0.2,x')"),
        (["/nonexistent.toml"], "no such file"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    result = cli_in_process("run", *args, "--results", str(tmp_path / "r.sqlite"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_leaderboard_and_export_commands(tmp_path):
    results = tmp_path / "results.sqlite"
    assert cli_in_process("leaderboard", "--results", str(results)).returncode == 2
    cli_in_process("run", *SMALL, "--seeds", "0", "--results", str(results), "--no-leaderboard")
    out = tmp_path / "board.md"
    assert cli_in_process("leaderboard", "--results", str(results), "--out", str(out)).returncode == 0
    assert out.read_text().startswith("# benchsuite leaderboard")
    csv = tmp_path / "runs.csv"
    curves = tmp_path / "curves.csv"
    assert cli_in_process("export", "--results", str(results), "--out", str(csv), "--curves", str(curves)).returncode == 0
    header = csv.read_text().splitlines()[0].split(",")
    assert {"cell_hash", "method", "noise_rate", "seed", "test_acc", "best_test_acc", "last5_test_acc"} <= set(header)
    assert len(curves.read_text().splitlines()) == 1 + 2


def test_runs_with_different_budgets_never_share_a_row(tmp_path):
    """The issue's case: `--epochs 5` and `--epochs 3` into one database became one row
    `87.56 ± 4.15 (4)`; now they are two rows, each with its budget, and the board `run` prints
    is that of the grid it ran."""
    results = tmp_path / "results.sqlite"
    # In this process: a pool's spawned workers (the automatic executor of a 2-cell grid on 2 cores)
    # would cost more than these tiny cells; the pool has its own tests (test_executors.py).
    grid = ["-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--seeds", "0,1", "--no-progress", "--executor", "local"]
    five = cli_in_process("run", *grid, "--epochs", "5", "--results", str(results))
    three = cli_in_process("run", *grid, "--epochs", "3", "--results", str(results))
    assert five.returncode == 0 and three.returncode == 0, five.stderr + three.stderr
    assert "| cce |" in three.stdout and "Budget: 3 epochs, batch " in three.stdout  # only the grid just run
    assert "budget.epochs=5" not in three.stdout and "| cce [" not in three.stdout
    board = cli_in_process("leaderboard", "--results", str(results)).stdout
    final = board.split("**Final epoch**")[1].split("**Best")[0]
    rows = [line for line in final.splitlines() if line.startswith("| cce")]
    assert sorted(r.split("|")[1].strip() for r in rows) == ["cce [budget.epochs=3]", "cce [budget.epochs=5]"]
    assert all(" (2)" in r and " (4)" not in r for r in rows)
    runs = to_dataframe(results)
    for epochs in (3, 5):
        mean = 100 * runs[runs.epochs == epochs].test_acc.mean()
        assert f"| cce [budget.epochs={epochs}] | {mean:.2f} ± " in final.replace("**", "")
    assert re.search(r"Budget: 3 epochs, batch \d+, lr 0.1 — cce \[budget.epochs=3\]; 5 epochs, batch \d+, lr 0.1 — cce \[budget.epochs=5\]\.", board)


def test_a_quick_try_does_not_land_in_the_main_database(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from benchsuite.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["run", *SMALL[:-1], "--epochs", "1", "--seeds", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "benchsuite-results" / "command-line" / "results.sqlite").is_file()
    assert (tmp_path / "benchsuite-results" / "command-line" / "leaderboard.md").is_file()
    assert not (tmp_path / "benchsuite-results" / "results.sqlite").exists()
    board = (tmp_path / "benchsuite-results" / "command-line" / "leaderboard.md").read_text()
    command = "benchsuite run --method cce --task 'digits{width = 16}' --noise symmetric:0.4 --seeds 0 --epochs 1 --no-progress"
    assert f"- Regenerate: `{command}`" in board  # re-running it re-renders this board, computing nothing
    grid = tmp_path / "mine.toml"
    grid.write_text('seeds = [0]\nmethod = ["cce"]\ntask = ["digits{width = 16}"]\n[noise]\nkind = "none"\n[budget]\nepochs = 1\n')
    assert CliRunner().invoke(main, ["run", str(grid), "--no-progress"]).exit_code == 0
    assert (tmp_path / "benchsuite-results" / "mine" / "results.sqlite").is_file()


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
    result = cli_in_process("run", *SMALL, *args, "--dry-run", "--results", str(tmp_path / "r.sqlite"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
