"""Executors: grid validation, missing extras, and the fault-tolerance contract end to end.

The end-to-end tests run ``benchsuite run`` (in a subprocess where the driver's process is part of
what is tested, in this process otherwise) on small ``digits`` grids with the
``probe`` test plugin (tests/data/probe_plugin.py): cross entropy that can be slowed down, kill its
own process or block its timeout alarm, and that logs every process it runs in and every real
load of the digits data set.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import cli_in_process, run_cli, start_cli

from benchsuite.cli import main
from benchsuite.executors import CellResult, ExecutorError, LocalExecutor, RunSettings
from benchsuite.executors.base import death_cause
from benchsuite.grid import GridError, expand, grid_from_dict, parse_executor
from benchsuite.leaderboard import render
from benchsuite.plugins import get_host
from benchsuite.results import to_dataframe
from benchsuite.cell import execute_cell
from benchsuite.runner import run_grid
from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import ResultStore

PROBE_SOURCE = (Path(__file__).parent / "data" / "probe_plugin.py").read_text()
SMALL = ["-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--epochs", "2", "--no-progress", "--no-leaderboard"]
POOL = "pool{workers = 2, threads_per_worker = 1}"
POOL_1 = "pool{workers = 1, threads_per_worker = 1}"  # where one worker shows it: fewer processes to start
#: How long the end-to-end tests wait for a driver, its workers or its cells (seconds). Measured on
#: the 2-core machine at load average 12-15: the driver took 75 s to start Ray and a Ray worker more
#: than 90 s more to start its first cell (importing torch and the plugins), so the 180 s wait that
#: was here ran out. Every wait ends as soon as its condition holds (or the driver exits), so a
#: passing run takes no longer for it; only a hang waits this long.
PATIENCE = 540
#: pytest-timeout for the end-to-end tests (the suite's default is 600 s): a test waits up to
#: PATIENCE more than once, under load.
slow_under_load = pytest.mark.timeout(3 * PATIENCE)
_drivers: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _stop_leftover_drivers():
    """A test that fails while its driver runs must not leave it (and the Ray, Slurm jobs or pool
    workers it started) loading the machine for the tests after it: Ctrl-C it, as a user would,
    so that it cancels its cells; kill it if that does not end it."""
    yield
    while _drivers:
        proc = _drivers.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.fixture
def probe(install_plugin, tmp_path, monkeypatch):
    """Install the probe plugin (for this process and for subprocesses); returns its log folder."""
    from benchsuite_plugins.digits import digits

    folder = tmp_path / "probe"
    folder.mkdir()
    monkeypatch.setenv("BENCHSUITE_PROBE_DIR", str(folder))
    monkeypatch.setattr(digits, "load_split", digits.load_split)  # the plugin wraps it: undone after the test
    install_plugin("benchsuite_probe", "benchsuite_probe", PROBE_SOURCE)  # dist-info dirs use underscores
    return folder


def started(folder):
    path = folder / "started"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def loads(folder):
    path = folder / "loads"
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


def runs(results):
    try:
        with sqlite3.connect(f"file:{results}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT cell_hash, method, spec, status, error, provenance, started_at, finished_at, duration_s FROM runs"
            ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return {}
    return {
        h: {"method_params": json.loads(spec)["method_params"], "method": m, "status": s, "error": e or "",
            "provenance": json.loads(p), "started_at": st, "finished_at": f, "duration_s": d}
        for h, m, spec, s, e, p, st, f, d in rows
    }  # fmt: skip


def assert_dated(row):
    """The row says when it ran: ISO times in UTC, started no later than finished, a duration."""
    started, finished = datetime.fromisoformat(row["started_at"]), datetime.fromisoformat(row["finished_at"])
    assert started.utcoffset() == finished.utcoffset() == timedelta(0)
    assert started <= finished and row["duration_s"] >= 0


def claims(results):
    with sqlite3.connect(results) as conn:
        return conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]


def start(results, *args):
    proc = start_cli("run", *SMALL, "--results", str(results), *args)
    _drivers.append(proc)
    return proc


def wait_until(condition, proc=None, timeout=PATIENCE, what="the condition"):
    deadline = time.time() + timeout
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver exited before {what}: {proc.communicate()}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def kill_first_slow_cell(folder, proc):
    """SIGKILL the process of the first slow probe cell, mid-cell; returns its pid."""
    entry = wait_until(lambda: next((e for e in started(folder) if e["sleep"] > 0), None), proc, what="a slow cell to start")
    os.kill(entry["pid"], signal.SIGKILL)
    return entry["pid"]


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"executor": "pool"}, ("pool", {})),
        ({"executor": "pool{workers = 3, threads_per_worker = 2}"}, ("pool", {"workers": 3, "threads_per_worker": 2})),
        ({"executor": {"name": "slurm", "partition": "gpu", "time": 90}}, ("slurm", {"partition": "gpu", "time": 90})),
    ],
)
def test_the_executor_is_a_name_a_spec_or_a_table(raw, expected):
    grid = grid_from_dict(raw)
    assert (grid.executor.name, grid.executor.params) == expected
    assert grid.retries == 1 and grid.cell_timeout is None


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"executor": "pool{wokers = 2}"}, "executor (pool): pool: unknown parameter 'wokers'; did you mean 'workers'?"),
        ({"executor": {"name": "pool", "workers": 0}}, "executor (pool): pool: parameter 'workers' = 0 is out of range; allowed: int, x ≥ 1"),
        ({"executor": {"name": "slurm", "cluster": "pbs"}}, "parameter 'cluster' = 'pbs' is not allowed; allowed: one of 'slurm', 'local'"),
        ({"executor": {"workers": 2}}, 'executor.name: missing or not a string, e.g. name = "pool"'),
        ({"executor": "rayy"}, "executor: unknown executor 'rayy'; did you mean 'ray'?"),
        ({"executor": 3}, "executor: must be a name"),
        ({"retries": -1}, "retries: -1 must be an integer, x ≥ 0"),
        ({"cell_timeout": 0}, "cell_timeout: 0 must be a finite number of seconds, x > 0"),
    ],
)
def test_bad_executor_settings_name_the_key_and_the_problem(raw, message):
    with pytest.raises(GridError) as info:
        grid_from_dict(raw)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_an_executor_whose_extra_is_missing_names_the_extra(monkeypatch, tmp_path):
    for module, name, extra in (("ray", "ray", "ray"), ("submitit", "slurm", "slurm")):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
        with pytest.raises(ExecutorError, match=rf"pip install 'benchsuite\[{extra}\]'"):
            get_host().executor_class(name)().check(RunSettings(cell_timeout=60))
    result = CliRunner().invoke(
        main, ["run", "-m", "cce", "-t", "digits", "--executor", "ray", "--dry-run", "--results", str(tmp_path / "r.sqlite")]
    )
    assert result.exit_code == 2
    assert "the ray executor needs ray, which is not installed: pip install 'benchsuite[ray]'" in result.output


def test_slurm_needs_slurm_or_cluster_local_and_a_time_limit(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ExecutorError, match="sbatch is not on PATH.*cluster = 'local'"):
        get_host().executor_class("slurm")().check(RunSettings(cell_timeout=60))
    with pytest.raises(ExecutorError, match="set the executor's time \\(minutes\\) or --cell-timeout"):
        get_host().executor_class("slurm")(cluster="local").check(RunSettings())
    get_host().executor_class("slurm")(cluster="local", time=5).check(RunSettings())
    with pytest.raises(GridError, match="--executor is invalid"):
        parse_executor("slurm{time = 0}")


def test_a_lost_worker_is_described_by_its_signal_or_exit_status():
    assert death_cause(-9, 42) == (
        "worker process 42 was killed by SIGKILL (the kernel's out-of-memory killer sends SIGKILL) while running this cell"
    )
    assert death_cause(3, 42) == "worker process 42 exited with status 3 while running this cell"


def test_pool_workers_get_the_visible_gpus_round_robin(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    pool = get_host().executor_class("pool")(workers=4)
    pool.start(RunSettings(device="auto"))  # workers start with their first cell: nothing spawned here
    assert [slot.device for slot in pool._slots] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    default = get_host().executor_class("pool")()
    default.start(RunSettings(device="cuda"))
    assert [slot.device for slot in default._slots] == ["cuda:0", "cuda:1", "cuda:2"]  # one worker per GPU
    cpu = get_host().executor_class("pool")(workers=2)
    cpu.start(RunSettings(device="cpu"))
    assert [slot.device for slot in cpu._slots] == ["cpu", "cpu"] and cpu._threads == max(1, (os.cpu_count() or 1) // 2)


# -- statuses ---------------------------------------------------------------------------------


def test_timed_out_cells_run_again_and_show_as_timeout_on_the_leaderboard(tmp_path):
    info = {"task_metrics": {"test_acc": {"higher_is_better": True, "doc": ""}}, "leaderboard_metrics": ["test_acc"]}
    done = CellSpec("cce", {}, "digits", {}, "symmetric", 0.4, 0, "v", "v")
    slow = CellSpec("gce", {}, "digits", {}, "symmetric", 0.4, 0, "v", "v")
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.save(RunRecord(done, "completed", curves=[{"epoch": 1, "test_acc": 0.5}], info=info))
        store.save(RunRecord(slow, "timeout", curves=[{"epoch": 1, "test_acc": 0.4}], error="exceeded the cell timeout"))
        assert store.statuses()[slow.cell_hash] == "timeout" and store.done() == {done.cell_hash}
    board = render(to_dataframe(tmp_path / "r.sqlite"))
    assert "| gce | timeout |" in board and "| cce | **50.00 ± – (1)** |" in board


def test_the_local_executor_stops_a_cell_at_its_timeout_and_keeps_its_finished_epochs(probe, tmp_path):
    host = get_host()
    one = {"task": ["digits{width = 16}"], "seeds": [0], "noise": {"kind": "symmetric", "rates": [0.4]}}
    warm = expand(grid_from_dict({**one, "method": ["cce"], "budget": {"epochs": 1}}), host)
    execute_cell(warm.cells[0], "cpu")  # plugins and data loaded: the timeout below measures training only
    grid = grid_from_dict({**one, "method": ["probe{sleep = 0.05}"], "budget": {"epochs": 200}})
    with ResultStore(tmp_path / "r.sqlite") as store:
        outcome = run_grid(expand(grid, host), store, device="cpu", progress=False, executor=LocalExecutor(), cell_timeout=6.0)
    (run,) = runs(tmp_path / "r.sqlite").values()
    assert run["status"] == "timeout" and "exceeded the cell timeout of 6 s in epoch" in run["error"]
    assert outcome.statuses == {"timeout": 1} and len(outcome.failures) == 1
    epochs = to_dataframe(tmp_path / "r.sqlite").epochs.iloc[0]
    assert 1 <= epochs < 200  # 11 steps of >= 50 ms per epoch: a few epochs fit in 6 s


# -- pool -------------------------------------------------------------------------------------


@slow_under_load
def test_the_pool_runs_every_cell_in_workers_that_load_the_data_once(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    # The driver in this process (it must load no data either): the pool's workers are what is tested.
    result = cli_in_process("run", *SMALL, "-m", "probe", "--seeds", "0,1,2,3,4", "--executor", POOL, "--results", str(results))
    assert result.returncode == 0, result.stderr
    assert "5 cells: ran 5 completed; 0 already done" in result.stderr
    stored = runs(results).values()
    assert {r["provenance"]["executor"] for r in stored} == {"pool"}
    pids = Counter(r["provenance"]["pid"] for r in stored)
    assert 1 <= len(pids) <= 2 and sum(pids.values()) == 5  # workers are reused across cells
    assert Counter(loads(probe)) == {pid: 1 for pid in pids}  # one load per worker; none in the driver


@slow_under_load
def test_a_killed_worker_costs_only_its_cell_which_is_retried(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    proc = start(results, "-m", "probe{sleep = 0.1}", "-m", "probe{die = true}", "--seeds", "0", "--executor", POOL, "--retries", "1")
    killed = kill_first_slow_cell(probe, proc)
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 1, err  # the cell that dies every time failed
    by_die = {r["method_params"]["die"]: r for r in runs(results).values()}
    slow, dying = by_die[False], by_die[True]
    assert slow["status"] == "completed" and slow["provenance"]["attempt"] == 2 and slow["provenance"]["pid"] != killed
    assert dying["status"] == "failed" and "was killed by SIGKILL" in dying["error"] and "(attempt 2 of 2)" in dying["error"]
    assert "2 retried after losing their worker" in err and err.count("RETRY") == 2
    assert claims(results) == 0
    # The failed row is dated and names its last worker, as the worker's own record would.
    last_dead = [e["pid"] for e in started(probe) if e["die"]][-1]
    for row in (slow, dying):
        assert_dated(row)
        assert row["provenance"]["hostname"] == socket.gethostname() and row["provenance"]["device"] == "cpu"
    assert dying["provenance"]["pid"] == last_dead != killed and dying["provenance"]["driver_pid"] == proc.pid
    assert dying["provenance"]["torch_threads"] == 1 and dying["provenance"]["benchsuite"] == slow["provenance"]["benchsuite"]
    assert "driver_pid" not in slow["provenance"]  # a worker's own record is stored as it came


class _LosingExecutor(LocalExecutor):
    """Loses every cell it is given and knows nothing about its worker, as Ray can."""

    def wait(self, timeout):
        time.sleep(0.05)
        lost, self._pending = self._pending, []
        return [CellResult(spec, lost="the node went away") for spec in lost]


def test_a_cell_lost_where_the_executor_saw_nothing_is_dated_from_its_hand_over(tmp_path):
    host = get_host()
    grid = grid_from_dict({"method": ["cce"], "task": ["digits"], "seeds": [0], "noise": {"kind": "symmetric", "rates": [0.4]}})
    with ResultStore(tmp_path / "r.sqlite") as store:
        before = datetime.now(timezone.utc).replace(microsecond=0)
        outcome = run_grid(expand(grid, host), store, device="cpu", progress=False, executor=_LosingExecutor(), retries=1)
    assert outcome.statuses == {"failed": 1} and outcome.retried == 1
    (row,) = runs(tmp_path / "r.sqlite").values()
    assert_dated(row)
    assert datetime.fromisoformat(row["started_at"]) >= before and row["duration_s"] >= 0.05
    assert row["error"] == "the node went away (attempt 2 of 2)"
    assert row["provenance"] == {"driver_pid": os.getpid(), "driver_hostname": socket.gethostname(), "executor": "local", "attempt": 2}


@slow_under_load
def test_a_cell_over_its_timeout_is_stopped_even_if_it_ignores_the_alarm(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    proc = start(results, "-m", "probe{sleep = 1.0}", "-m", "probe{sleep = 1.0, block_alarm = true}", "--seeds", "0",
                 "--executor", POOL, "--cell-timeout", "6")  # fmt: skip
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 1, err
    stored = {r["method_params"]["block_alarm"]: r for r in runs(results).values()}
    assert stored[False]["status"] == "timeout" and "stopped by its alarm" in stored[False]["error"]
    assert stored[True]["status"] == "timeout" and "its worker process" in stored[True]["error"]
    assert "2 timeout" in err
    killed = stored[True]  # its record is the driver's, dated from the worker's start to its kill (6 s + 5 s grace)
    assert_dated(killed)
    assert killed["duration_s"] > 11
    blocked = {int(pid) for pid in (probe / "blocked").read_text().split()} - {proc.pid}  # the driver builds methods too
    assert blocked == {killed["provenance"]["pid"]}
    assert killed["provenance"]["hostname"] == socket.gethostname() and killed["provenance"]["driver_pid"] == proc.pid
    # Neither ran to its end (each training alone would take 22 s per epoch): both are timeouts
    # above, stopped by the alarm and by the driver. (A bound on the wall time that was here failed
    # at load average 12-15, where the driver and its two workers took 65 s to start and run.)


@slow_under_load
def test_ctrl_c_cancels_running_cells_and_keeps_finished_ones(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    proc = start(results, "-m", "cce", "-m", "probe{sleep = 0.3}", "--seeds", "0,1", "--executor", POOL_1)
    wait_until(lambda: runs(results) and any(alive(e["pid"]) for e in started(probe) if e["sleep"]), proc, what="a finished and a running cell")
    workers = children(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, err
    assert "interrupted: re-run the same command to run the missing cells" in err
    stored = runs(results)
    assert 1 <= len(stored) < 4 and {r["status"] for r in stored.values()} == {"completed"}
    assert claims(results) == 0
    wait_until(lambda: not any(alive(p) for p in workers), what="the workers to stop")


@slow_under_load
def test_a_driver_killed_mid_grid_resumes_with_only_the_missing_cells(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    args = ["-m", "probe{sleep = 0.05}", "--seeds", "0,1,2,3"]
    proc = start(results, *args, "--executor", POOL_1)
    wait_until(lambda: runs(results), proc, what="a finished cell")
    workers = children(proc.pid)
    proc.kill()
    proc.wait()
    wait_until(lambda: not any(alive(p) for p in workers), what="orphaned workers to exit")
    before = {h: r["finished_at"] for h, r in runs(results).items()}
    assert 1 <= len(before) < 4
    # The resume in this process, cells in the driver: what is tested is the store the killed driver
    # left (the executor is not part of a cell's identity), not a process or a pool.
    result = cli_in_process("run", *SMALL, "--results", str(results), *args, "--executor", "local")
    assert result.returncode == 0, result.stderr
    assert f"ran {4 - len(before)} completed; {len(before)} already done" in result.stderr
    after = {h: r["finished_at"] for h, r in runs(results).items()}
    assert len(after) == 4 and all(after[h] == before[h] for h in before)  # nothing lost, nothing redone


# -- ray and slurm ----------------------------------------------------------------------------


@slow_under_load
def test_ray_runs_the_grid_retries_a_killed_worker_and_loads_data_once_per_worker(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    proc = start(results, "-m", "probe{sleep = 0.1}", "--seeds", "0,1,2,3", "--executor", "ray{num_cpus = 2}")
    killed = kill_first_slow_cell(probe, proc)
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 0, err
    stored = list(runs(results).values())
    assert len(stored) == 4 and {r["status"] for r in stored} == {"completed"}
    assert sorted(r["provenance"]["attempt"] for r in stored) == [1, 1, 1, 2]
    assert {r["provenance"]["executor"] for r in stored} == {"ray"}
    pids = {r["provenance"]["pid"] for r in stored}
    assert killed not in pids and proc.pid not in loads(probe)
    assert Counter(loads(probe)) == {pid: 1 for pid in pids | {killed}}  # once per Ray worker
    assert len(pids) <= 3  # 4 cells + 1 retry on at most 2 workers + 1 replacement


def ray_start_delays(folder):
    """{pid: when its delay ended (UTC, to the second, as records date their start)} of the Ray
    workers the probe plugin slowed down (``$BENCHSUITE_PROBE_RAY_START_DELAY``)."""
    path = folder / "ray_start_delays"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {e["pid"]: datetime.fromisoformat(e["until"]).replace(microsecond=0) for e in lines}


@slow_under_load
def test_a_ray_cell_slow_to_start_runs_and_its_hard_deadline_counts_from_its_start(probe, tmp_path, monkeypatch):
    """Each Ray worker takes 20 s to start its cell (the probe plugin's delay; at load average
    12-15 a real one took more than 90 s), longer than the cells' hard deadline (6 s + 5 s).
    Neither cell is stopped for it: the driver's clock for a cell starts when its worker says the
    cell has started (a clock from submission would stop both before they began). The cell that
    ignores its alarm is still stopped, at its hard deadline after its start."""
    monkeypatch.setenv("BENCHSUITE_PROBE_RAY_START_DELAY", "20")
    results = tmp_path / "r.sqlite"
    proc = start(results, "-m", "probe", "-m", "probe{sleep = 2.0, block_alarm = true}", "--seeds", "0",
                 "--executor", "ray{num_cpus = 2}", "--cell-timeout", "6")  # fmt: skip
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 1, err  # a timeout
    assert "1 completed, 1 timeout" in err and "RETRY" not in err
    stored = {r["method_params"]["block_alarm"]: r for r in runs(results).values()}
    done, killed = stored[False], stored[True]
    assert done["status"] == "completed" and done["provenance"]["attempt"] == 1
    assert killed["status"] == "timeout" and "exceeded the cell timeout of 6 s; it ignored its alarm, so its Ray task was cancelled" in killed["error"]
    delays = ray_start_delays(probe)
    for row in (done, killed):  # each ran in a worker that was slow to start, and began after that
        assert_dated(row)
        assert datetime.fromisoformat(row["started_at"]) >= delays[row["provenance"]["pid"]]
    # The driver's record of the killed cell: from its start, past its hard deadline, on its worker.
    assert killed["duration_s"] > 11 and killed["provenance"]["driver_pid"] == proc.pid
    assert killed["provenance"]["hostname"] == socket.gethostname() and killed["provenance"]["device"] == "cpu"
    assert {int(pid) for pid in (probe / "blocked").read_text().split()} - {proc.pid} == {killed["provenance"]["pid"]}


@slow_under_load
def test_a_ray_cell_that_never_starts_is_retried_not_timed_out_and_runs_on_the_next_run(probe, tmp_path, monkeypatch):
    """A Ray worker that does not start its cell within the executor's startup_timeout (here the
    probe plugin holds it for an hour) has its task cancelled; the cell, which never ran, is
    retried, then recorded as failed with that cause (never as timed out), and the next run runs
    it."""
    monkeypatch.setenv("BENCHSUITE_PROBE_RAY_START_DELAY", "3600")
    results = tmp_path / "r.sqlite"
    args = ["-m", "probe", "--seeds", "0", "--cell-timeout", "20"]
    proc = start(results, *args, "--executor", "ray{num_cpus = 1, startup_timeout = 8}")
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 1, err
    cause = ("the cell did not start in a Ray worker within 8 s of its submission (the ray executor's startup_timeout), "
             "so its Ray task was cancelled before the cell ran")  # fmt: skip
    assert err.count("RETRY") == 1 and f"{cause}; attempt 2 of 2" in err
    (row,) = runs(results).values()
    assert row["status"] == "failed" and row["error"] == f"{cause} (attempt 2 of 2)"
    assert row["provenance"]["attempt"] == 2 and row["duration_s"] >= 8
    assert started(probe) == [] and ray_start_delays(probe) == {}  # no cell began; both workers were stopped in their delay
    monkeypatch.delenv("BENCHSUITE_PROBE_RAY_START_DELAY")
    result = run_cli("run", *SMALL, "--results", str(results), *args, "--executor", "ray{num_cpus = 1}")
    assert result.returncode == 0, result.stderr
    assert "1 cells: ran 1 completed; 0 already done" in result.stderr
    (row,) = runs(results).values()
    assert row["status"] == "completed"


@slow_under_load
def test_slurm_jobs_through_submitit_are_retried_when_killed_and_cancelled_on_ctrl_c(probe, tmp_path):
    results = tmp_path / "r.sqlite"
    slurm = 'slurm{cluster = "local", array_parallelism = 2}'
    proc = start(results, "-m", "probe{sleep = 0.1}", "--seeds", "0,1", "--executor", slurm, "--cell-timeout", "300")
    killed = kill_first_slow_cell(probe, proc)
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 0, err
    stored = list(runs(results).values())
    assert {r["status"] for r in stored} == {"completed"} and sorted(r["provenance"]["attempt"] for r in stored) == [1, 2]
    assert "Slurm job" in err and "without a result" in err  # the RETRY line names the job and its state
    assert proc.pid not in loads(probe) and killed not in {r["provenance"]["pid"] for r in stored}
    assert any((tmp_path / "slurm").glob("*/*_log.err"))  # submitit's job logs beside the results
    assert len(list((tmp_path / "slurm").glob("*/*_started"))) == 3  # each job said when its cell started

    results2 = tmp_path / "r2.sqlite"
    (probe / "started").unlink()
    proc = start(results2, "-m", "probe{sleep = 0.3}", "--seeds", "0,1", "--executor", slurm, "--cell-timeout", "300")
    jobs = wait_until(lambda: [e["pid"] for e in started(probe)] if len(started(probe)) == 2 else None, proc, what="two jobs to start")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 130, err
    wait_until(lambda: not any(alive(p) for p in jobs), what="the cancelled jobs to stop")
    assert runs(results2) == {} and claims(results2) == 0


class _TimedOutJob:
    """A submitit job that Slurm stopped at its time limit, without a result (submitit's view)."""

    def __init__(self, folder: Path, job_id: str) -> None:
        from submitit.core.utils import JobPaths

        self.paths, self.job_id, self.state = JobPaths(folder, job_id=job_id), job_id, "TIMEOUT"

    def done(self) -> bool:
        return True


@pytest.mark.parametrize("started_cell", [False, True])
def test_a_slurm_job_stopped_at_its_time_limit_timed_out_only_if_its_cell_had_started(tmp_path, started_cell):
    """The job's time limit includes its start-up; a job whose start-up took all of it never ran
    its cell: lost (retried), not timed out."""
    from benchsuite.executors.slurm import started_marker

    spec = CellSpec("cce", {}, "digits", {}, "symmetric", 0.4, 0, "v", "v")
    slurm = get_host().executor_class("slurm")(cluster="local", time=2)
    slurm.start(RunSettings(workdir=tmp_path))
    job = _TimedOutJob(tmp_path / "slurm" / "%j", "41_0")
    job.paths.folder.mkdir(parents=True)
    if started_cell:
        started_marker(job.paths.folder, job.job_id).touch()
    slurm._running[job] = spec
    (result,) = slurm.wait(0)
    if started_cell:
        assert result.lost is None and result.record.status == "timeout"
        assert result.record.error == "exceeded the cell timeout of 120 s; Slurm stopped job 41_0 at its time limit"
    else:
        assert result.record is None and result.lost == "Slurm job 41_0 reached its time limit of 2 min before its cell started (its start-up took it)"
