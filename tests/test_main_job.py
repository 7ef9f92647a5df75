"""The main job and how it runs: its grid, the executor chosen for it, the threads of its workers,
the expected duration, the live progress, and a command line that answers without torch."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from conftest import cli_in_process

from benchsuite import executors
from benchsuite.costs import cell_cost, estimate, format_duration
from benchsuite.grid import MAIN_GRID, expand, grid_from_dict
from benchsuite.plugins import get_host
from benchsuite.progress import GridProgress, cell_label, headline
from benchsuite.results import to_dataframe


def cells_of(raw: dict) -> list:
    return expand(grid_from_dict(raw), get_host()).cells


def test_the_main_job_runs_every_seed_method_and_the_trusted_baselines_on_digits():
    expansion = expand(grid_from_dict(MAIN_GRID), get_host())
    cells = expansion.cells
    names = {n["method"] for named in expansion.names.values() for n in named}
    assert {"cce", "gce", "sl", "gr", "dm", "imae", "ieg", "trusted_only", "cce_trusted"} <= names
    assert {c.task for c in cells} == {"digits"} and not expansion.not_applicable
    assert sorted({c.noise_rate for c in cells}) == [0.0, 0.4, 0.8] and sorted({c.seed for c in cells}) == [0, 1, 2, 3, 4]
    assert len(cells) == 8 * 3 * 5  # dm with its defaults is gr: one cell for both names


def test_labels_name_only_what_is_not_a_default():
    plain, changed = cells_of({"method": ["gce", "gce{q = 0.5}"], "task": ["digits"], "seeds": [1],
                               "noise": {"kind": "symmetric", "rates": [0.4]}})  # fmt: skip
    assert cell_label(plain) == "gce · digits · symmetric 0.4 · seed 1"
    assert cell_label(changed) == "gce{q=0.5} · digits · symmetric 0.4 · seed 1"
    (short,) = cells_of({"method": ["sl"], "task": ["digits{width = 16}"], "seeds": [0], "budget": {"epochs": 3},
                         "noise": {"kind": "none", "rates": [0.0]}})  # fmt: skip
    assert cell_label(short) == "sl · digits{width=16} · no noise · seed 0 · epochs=3"
    assert len(short.label()) > len(cell_label(short))  # the full label lists every default


TABLE = {"tasks": {"digits": {"epochs": 60, "seconds": {"cce": 1.0, "gce": 2.0, "ieg": 3.0}}}, "worker_startup_s": 0.5}


def test_the_estimate_schedules_measured_costs_over_the_workers():
    cce, gce, ieg = cells_of({"method": ["cce", "gce", "ieg"], "task": ["digits"], "seeds": [0],
                              "noise": {"kind": "symmetric", "rates": [0.4]}})  # fmt: skip
    # 2 workers: cce (1) and gce (2) start together; ieg (3) follows cce: done at 4, plus start-up
    assert estimate([cce, gce, ieg], 2, TABLE).seconds == pytest.approx(4.5)
    assert estimate([cce, gce, ieg], 1, TABLE, startup=False).seconds == pytest.approx(6.0)
    (half,) = cells_of({"method": ["ieg"], "task": ["digits"], "seeds": [0], "budget": {"epochs": 30}})[:1]
    assert cell_cost(half, TABLE) == pytest.approx(1.5)  # scaled by epochs
    (sl,) = cells_of({"method": ["sl"], "task": ["digits"], "seeds": [0], "noise": {"kind": "none", "rates": [0.0]}})
    assert cell_cost(sl, TABLE) == pytest.approx(2.0)  # not measured: the task's median method
    (other,) = cells_of({"method": ["cce"], "task": ["digits_retrieval"], "seeds": [0], "noise": {"kind": "none", "rates": [0.0]}})
    result = estimate([cce, other], 2, TABLE)
    assert result.unknown == 1 and "1 cells of tasks without a measured cost" in result.describe()
    assert format_duration(42) == "42 s" and format_duration(185) == "3 min 05 s" and format_duration(3720) == "1 h 02 min"


def test_the_shipped_costs_cover_every_method_of_the_main_job():
    for cell in cells_of(MAIN_GRID):
        assert cell_cost(cell) is not None and cell_cost(cell) > 0
    assert estimate(cells_of(MAIN_GRID), 2).seconds < 5 * 60


def test_progress_shows_the_running_cells_with_their_epoch_and_an_eta_from_the_costs():
    cce, gce = cells_of({"method": ["cce", "gce"], "task": ["digits"], "seeds": [0], "noise": {"kind": "symmetric", "rates": [0.4]}})
    out = io.StringIO()
    shown = GridProgress({cce.cell_hash: 10.0, gce.cell_hash: 10.0}, workers=2, stream=out, live=False)
    shown.started(cce)
    shown.epoch(cce, 30, 60)
    assert shown.lines()[1] == "  cce · digits · symmetric 0.4 · seed 0 · epoch 30/60"
    assert shown.remaining_seconds() == pytest.approx((10 + 5) / 2)  # gce waits, cce is half done
    shown.finished(cce, "completed", 20.0)  # twice as slow as measured: the ETA doubles
    assert shown.speed() == pytest.approx(2.0) and shown.remaining_seconds() == pytest.approx(10 / 2 * 2)
    assert out.getvalue() == "[1/2] completed cce · digits · symmetric 0.4 · seed 0 in 20.0 s; ETA 10 s\n"
    assert shown.header().startswith("1/2 cells · ")


def test_a_live_display_redraws_one_line_per_running_cell_in_place():
    cce, gce = cells_of({"method": ["cce", "gce"], "task": ["digits"], "seeds": [0], "noise": {"kind": "symmetric", "rates": [0.4]}})
    out = io.StringIO()
    shown = GridProgress({cce.cell_hash: 1.0, gce.cell_hash: 1.0}, workers=2, stream=out, live=True)
    shown.started(cce)
    shown.started(gce)
    shown.epoch(gce, 2, 60)
    shown.finished(cce, "completed", 1.0)
    last = out.getvalue().split("\x1b[J")[-1]
    assert last.splitlines() == [shown.header(), "  gce · digits · symmetric 0.4 · seed 0 · epoch 2/60"]
    shown.close()
    assert out.getvalue().endswith("\x1b[2F\x1b[J")  # the block is wiped for what follows


@pytest.mark.parametrize(
    "device, cells, cores, expected",
    [
        ("cpu", 5, 2, ("pool", {"workers": 2, "threads_per_worker": 1})),
        ("cpu", 3, 8, ("pool", {"workers": 3, "threads_per_worker": 1})),
        ("cpu", 1, 2, ("local", {})),
        ("cpu", 5, 1, ("local", {})),
        ("cuda", 5, 2, ("local", {})),
    ],
)
def test_a_grid_without_an_executor_runs_one_thread_per_core_on_a_multicore_cpu(monkeypatch, device, cells, cores, expected):
    monkeypatch.setattr(executors, "usable_cores", lambda: cores)
    assert executors.automatic_executor(device, cells) == expected


def test_pool_workers_run_one_thread_each_and_record_it(tmp_path):
    results = tmp_path / "r.sqlite"
    # The driver in this process: the workers it spawns are what is tested.
    run = cli_in_process("run", "-m", "cce", "-m", "gce", "-t", "digits{width = 16}", "--noise", "symmetric:0,0.4",
                         "--epochs", "2", "--seeds", "0", "--results", str(results),
                         "--executor", "pool{workers = 2, threads_per_worker = 1}")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "executor: pool (2 workers × 1 thread)" in run.stderr and "expected duration: about" in run.stderr
    runs = to_dataframe(results)
    assert len(runs) == 4 and set(runs.status) == {"completed"}
    for provenance, info in zip(runs["provenance"], runs["info"]):
        conditions = json.loads(provenance)["reproducibility"]
        assert conditions["torch_threads"] == 1 and conditions["torch_interop_threads"] == 1
        assert json.loads(info)["torch_threads"] == 1
    assert len({json.loads(p)["pid"] for p in runs["provenance"]}) == 2  # both workers ran cells
    summary = headline(runs)
    assert summary.splitlines()[0].startswith("digits: final test_acc in %, mean over seeds")
    assert {line.split()[0] for line in summary.splitlines()[3:]} == {"cce", "gce"}
    shown = sorted(float(value) for line in summary.splitlines()[3:] for value in line.split()[1:-1])
    means = runs[runs.status == "completed"].groupby(["method", "noise_rate"]).test_acc.mean()
    assert shown == sorted(round(100 * m, 2) for m in means)  # in % like the boards, two decimals


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_the_command_line_answers_help_without_importing_torch(args):
    code = (
        "import sys\nfrom benchsuite.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "False" and "Usage:" in out.stdout
