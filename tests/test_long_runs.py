"""Long runs end to end: a driver SIGKILLed mid-cell resumes the cell from its checkpoint with the
numbers of an uninterrupted run; cells held by another live driver are waited for, or named with
exit status 3; a finished cell's checkpoint is gone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import cli_in_process, run_cli, start_cli
from test_executors import probe, runs, started  # noqa: F401 (probe is a fixture)

import benchsuite
from benchsuite import runner
from benchsuite.checkpoint import checkpoint_dir
from benchsuite.grid import expand, grid_from_dict
from benchsuite.runner import run_grid
from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import ResultStore

CELL = ["-m", "elr", "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--seeds", "0", "--epochs", "30",
        "--no-progress", "--no-leaderboard"]  # fmt: skip


def stored_curves(results) -> dict[str, list[tuple[int, str, float]]]:
    with sqlite3.connect(results) as conn:
        rows = conn.execute(
            "SELECT r.cell_hash, c.epoch, c.key, c.value FROM curves c JOIN runs r ON r.id = c.run_id "
            "WHERE c.key != 'epoch_time' ORDER BY r.cell_hash, c.epoch, c.key"
        ).fetchall()
    out: dict[str, list[tuple[int, str, float]]] = {}
    for cell_hash, epoch, key, value in rows:
        out.setdefault(cell_hash, []).append((epoch, key, value))
    return out


def provenance(results) -> dict:
    with sqlite3.connect(results) as conn:
        (text,) = conn.execute("SELECT provenance FROM runs").fetchone()
    return json.loads(text)


def test_a_driver_killed_mid_cell_resumes_it_from_its_checkpoint_bit_for_bit(tmp_path):
    killed = tmp_path / "killed" / "results.sqlite"
    proc = start_cli("run", *CELL, "--checkpoint-every", "0", "--results", str(killed))
    folder = checkpoint_dir(killed)
    deadline = time.time() + 240
    while not any(folder.glob("*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    time.sleep(0.3)  # a few more epochs: the kill lands anywhere in the cell
    proc.kill()
    proc.wait()
    (written,) = folder.glob("*.pt")
    epoch = json.loads(torch.load(written, weights_only=True)["meta"])["epoch"]
    assert 1 <= epoch < 30

    resumed = run_cli("run", *CELL, "--checkpoint-every", "0", "--results", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert provenance(killed)["resumed_from"]["epoch"] >= epoch
    assert list(folder.iterdir()) == []  # the finished cell's checkpoint is deleted

    whole = tmp_path / "whole" / "results.sqlite"
    assert run_cli("run", *CELL, "--results", str(whole)).returncode == 0
    assert "resumed_from" not in provenance(whole)
    assert stored_curves(killed) == stored_curves(whole)


def _grid(seeds):
    grid = grid_from_dict(
        {"method": ["cce"], "task": ["digits{width = 16}"], "noise": {"kind": "symmetric", "rates": [0.4]},
         "seeds": seeds, "budget": {"epochs": 2, "batch_size": 256}}, source="test")  # fmt: skip
    return expand(grid, benchsuite.plugins.get_host())


def _claim_for_another_live_driver(store: ResultStore, cell_hash: str) -> None:
    now = time.time()
    with store._transaction() as cur:  # our parent process stands in for the other driver
        cur.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?)", (cell_hash, store._host, os.getppid(), now, now))


def test_without_wait_a_cell_another_live_driver_holds_is_named_as_missing(tmp_path):
    expansion = _grid([0, 1])
    held = expansion.cells[1]
    with ResultStore(tmp_path / "r.sqlite") as store:
        _claim_for_another_live_driver(store, held.cell_hash)
        outcome = run_grid(expansion, store, device="cpu", progress=False, wait=False)
        assert store.statuses() == {expansion.cells[0].cell_hash: "completed"}
    assert outcome.missing == [held.label()]


def test_a_cell_another_live_driver_holds_is_waited_for_until_it_is_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "WAIT_POLL_SECONDS", 0.1)
    expansion = _grid([0, 1])
    held = expansion.cells[1]
    path = tmp_path / "r.sqlite"

    def other_driver_finishes() -> None:
        time.sleep(1.0)
        with ResultStore(path) as other:
            other.save(RunRecord(held, "completed", curves=[{"epoch": 1, "test_acc": 0.5}]))

    with ResultStore(path) as store:
        _claim_for_another_live_driver(store, held.cell_hash)
        finisher = threading.Thread(target=other_driver_finishes)
        finisher.start()
        outcome = run_grid(expansion, store, device="cpu", progress=False)
        finisher.join()
        assert set(store.statuses().values()) == {"completed"} and len(store.statuses()) == 2
    assert outcome.statuses["completed"] == 1 and outcome.running_elsewhere == 1 and outcome.missing == []
    assert outcome.already_done == 1  # the other driver's


def test_a_waited_for_cell_whose_driver_dies_is_taken_over_and_run_here(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "WAIT_POLL_SECONDS", 0.1)
    expansion = _grid([0, 1])
    held = expansion.cells[1]
    path = tmp_path / "r.sqlite"

    def other_driver_dies() -> None:
        time.sleep(1.0)
        with ResultStore(path) as other, other._transaction() as cur:  # its claim goes stale
            cur.execute("UPDATE claims SET heartbeat = 0 WHERE cell_hash = ?", (held.cell_hash,))

    with ResultStore(path) as store:
        _claim_for_another_live_driver(store, held.cell_hash)
        dying = threading.Thread(target=other_driver_dies)
        dying.start()
        outcome = run_grid(expansion, store, device="cpu", progress=False)
        dying.join()
        assert store.statuses() == {c.cell_hash: "completed" for c in expansion.cells}
    assert outcome.statuses["completed"] == 2 and outcome.missing == []


def test_run_no_wait_exits_3_naming_the_cells_another_driver_holds(tmp_path):
    results = tmp_path / "results.sqlite"
    small = ["-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--epochs", "1", "--seeds", "0,1",
             "--no-progress", "--no-leaderboard", "--results", str(results), "--executor", "local"]  # fmt: skip
    # In this process, cells in the driver: what is tested is the claim, not the process or the pool
    # (spawning one costs more than these tiny cells); the claim stands for our parent process.
    assert cli_in_process("run", *small).returncode == 0
    with ResultStore(results) as store:
        (cell_hash,) = [h for h, (_, spec) in store.specs().items() if spec.seed == 1]
        store.delete([cell_hash])
        _claim_for_another_live_driver(store, cell_hash)
    result = cli_in_process("run", *small, "--no-wait")
    assert result.returncode == 3, result.stderr
    assert "1 cells have no stored record; another driver holds them:" in result.stderr
    assert "cce() · digits · symmetric 0.4 · seed 1" in result.stderr


def test_a_preempted_slurm_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """submitit's checkpointing protocol on its local cluster: the job gets the pre-emption signal
    mid-cell, is requeued, and the requeued job resumes from the in-cell checkpoint."""
    submitit = pytest.importorskip("submitit")
    from benchsuite.checkpoint import CheckpointPolicy
    from benchsuite.executors.slurm import CellJob
    from benchsuite.cell import CELL_FUNCTIONS, execute_cell

    method = benchsuite.load_method("elr")
    task = benchsuite.load_task("digits", width=16)
    spec = CellSpec("elr", method.identity_config(), "digits", task.identity_config(), "symmetric", 0.4, 0, "t", "t",
                    budget={"epochs": 15})  # fmt: skip
    policy = CheckpointPolicy(tmp_path / "checkpoints", every_seconds=0)
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="local")
    executor.update_parameters(timeout_min=10)
    job = executor.submit(CellJob(), CELL_FUNCTIONS, spec, "cpu", None, None, 1, policy)
    deadline = time.time() + 240
    while not policy.path(spec.cell_hash).is_file():
        assert not job.done(), job.stderr()
        assert time.time() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    controller = job._process.pid  # submitit's local controller; the job's Python is its child
    (task,) = map(int, Path(f"/proc/{controller}/task/{controller}/children").read_text().split())
    os.kill(task, signal.SIGUSR2)  # what Slurm sends on pre-emption
    record = job.result()
    assert record.provenance["resumed_from"]["epoch"] >= 1
    assert "Caught signal SIGUSR2" in job.stderr()
    whole = execute_cell(spec, "cpu")
    strip = lambda r: [{k: v for k, v in row.items() if k != "epoch_time"} for row in r.curves]
    assert strip(record) == strip(whole)


def test_a_ray_cell_retried_after_losing_its_worker_resumes_from_its_checkpoint(probe, tmp_path):  # noqa: F811
    """Local Ray: the worker running the cell is SIGKILLed after a checkpoint; the driver's retry
    runs the cell on another worker, which resumes from that checkpoint."""
    results = tmp_path / "r.sqlite"
    proc = start_cli("run", "-m", "probe{sleep = 0.05}", "-t", "digits{width = 16}", "--noise", "symmetric:0.4",
                     "--epochs", "12", "--seeds", "0", "--checkpoint-every", "0", "--executor", "ray{num_cpus = 1}",
                     "--no-progress", "--no-leaderboard", "--results", str(results))  # fmt: skip
    folder = checkpoint_dir(results)
    deadline = time.time() + 300
    while not (any(folder.glob("*.pt")) and started(probe)):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    os.kill(started(probe)[0]["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (stored,) = runs(results).values()
    assert stored["status"] == "completed" and stored["provenance"]["attempt"] == 2
    assert stored["provenance"]["resumed_from"]["epoch"] >= 1
    assert list(folder.iterdir()) == []
