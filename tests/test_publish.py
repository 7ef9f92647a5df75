"""Published boards: validation-selected leaderboards, CSV exports that re-render byte for byte,
`benchsuite publish` end to end, and the reported-numbers table."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.grid import GridError, grid_from_dict
from benchsuite.leaderboard import render, select_on_validation
from benchsuite.publish import REPORTED_COLUMNS, compact_runs, read_runs_export, render_reported
from benchsuite.results import to_dataframe
from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import ResultStore

INFO = {"task_metrics": {"test_acc": {"higher_is_better": True, "doc": "test accuracy"}}, "leaderboard_metrics": ["test_acc"]}
PROVENANCE = {"benchsuite": "0.1.0", "commit": "0123456789abcdef", "dirty": False, "torch": "2.14.1", "python": "3.11.7",
              "device": "cpu", "device_name": "Test CPU", "hostname": "testhost", "plugins": {}}  # fmt: skip


def record(method, params, rate, seed, test_acc, val_acc, focus=0.5):
    spec = CellSpec(method, params, "digits", {}, "symmetric", rate, seed, "v", "v", val_fraction=0.2)
    curves = [{"epoch": 1, "test_acc": test_acc - 0.1, "val_acc": val_acc, "weight_focus": focus},
              {"epoch": 2, "test_acc": test_acc, "val_acc": val_acc, "weight_focus": focus}]  # fmt: skip
    return RunRecord(spec, "completed", curves=curves, info=INFO, provenance=PROVENANCE,
                     started_at="2026-11-30T10:00:00+00:00", finished_at="2026-11-30T10:01:00+00:00")  # fmt: skip


@pytest.fixture
def val_db(tmp_path):
    """gr beta=2 wins on validation at r=0.4 but beta=8 has the better test accuracy; at r=0.8 beta=8 wins both."""
    path = tmp_path / "val.sqlite"
    with ResultStore(path) as store:
        for seed in (0, 1):
            d = 0.01 * seed
            store.save(record("gr", {"beta": 2.0}, 0.4, seed, 0.80 + d, 0.90 + d, focus=0.3))
            store.save(record("gr", {"beta": 8.0}, 0.4, seed, 0.95 + d, 0.85 + d, focus=0.6))
            store.save(record("gr", {"beta": 2.0}, 0.8, seed, 0.40 + d, 0.40 + d, focus=0.2))
            store.save(record("gr", {"beta": 8.0}, 0.8, seed, 0.60 + d, 0.70 + d, focus=0.7))
            store.save(record("cce", {}, 0.4, seed, 0.70 + d, 0.75 + d, focus=0.9))
            store.save(record("cce", {}, 0.8, seed, 0.20 + d, 0.30 + d, focus=0.9))
    return path


def test_select_needs_a_validation_split_and_a_known_mode():
    with pytest.raises(GridError, match=r'select: "val" needs a validation split.*val_fraction'):
        grid_from_dict({"select": "val", "method": ["cce"], "task": ["digits"]})
    with pytest.raises(GridError, match="select: 'test' must be one of 'none', 'val'"):
        grid_from_dict({"select": "test", "val_fraction": 0.2, "method": ["cce"], "task": ["digits"]})
    assert grid_from_dict({"select": "val", "val_fraction": 0.2, "method": ["cce"], "task": ["digits"]}).select == "val"


def test_selection_uses_validation_never_test(val_db):
    selected = select_on_validation(to_dataframe(val_db), "test_acc")
    chosen = selected.drop_duplicates(["method", "noise_rate"]).set_index(["method", "noise_rate"]).params
    assert json.loads(chosen["gr", 0.4]) == {"beta": 2.0}  # best val, worse test
    assert json.loads(chosen["gr", 0.8]) == {"beta": 8.0}
    assert len(selected) == 8  # 2 seeds x (gr, cce) x 2 rates


def test_validation_selected_board(val_db):
    text = render(to_dataframe(val_db), select="val")
    assert "selected on validation" in text and "Best epoch" not in text
    final = text.split("**Final epoch**")[1].split("**Mean")[0]
    # two seeds: half-width t(0.975, 1) · sd / √2 = 12.71 · 0.71 / 1.41 = 6.35
    assert "| gr | **80.50 ± 6.35 (2)** | **60.50 ± 6.35 (2)** | 1.00 [1.00, 1.00] |" in final
    assert "| cce | 70.50 ± 6.35 (2) | 20.50 ± 6.35 (2) | 2.00 [2.00, 2.00] |" in final
    chosen = text.split("Settings chosen on validation:")[1]
    assert "| gr | beta=2.0 (val_acc 90.50) | beta=8.0 (val_acc 70.50) |" in chosen
    assert "| cce | single setting (val_acc 75.50) | single setting (val_acc 30.50) |" in chosen
    focus = text.split("### Emphasis focus")[1].split("Settings chosen")[0]
    assert "| gr | 0.3 ± 0 (2) | 0.7 ± 0 (2) |" in focus and "avg rank" not in focus


def test_selection_without_a_validation_metric_is_refused(tmp_path):
    path = tmp_path / "noval.sqlite"
    with ResultStore(path) as store:
        spec = CellSpec("cce", {}, "digits", {}, "symmetric", 0.4, 0, "v", "v")
        store.save(RunRecord(spec, "completed", curves=[{"epoch": 1, "test_acc": 0.5}], info=INFO, provenance=PROVENANCE))
    with pytest.raises(ValueError, match="needs the validation metric 'val_acc'.*val_fraction > 0"):
        render(to_dataframe(path), select="val")


def test_compact_export_renders_exactly_like_the_database(val_db, tmp_path):
    runs = to_dataframe(val_db)
    export = tmp_path / "runs.csv"
    compact_runs(runs).to_csv(export, index=False)
    assert "spec" not in pd.read_csv(export)
    for select in ("none", "val"):
        assert render(read_runs_export(export), select=select) == render(runs, select=select)


def test_leaderboard_command_renders_an_export_and_refuses_bad_input(val_db, tmp_path):
    export = tmp_path / "runs.csv"
    compact_runs(to_dataframe(val_db)).to_csv(export, index=False)
    out = tmp_path / "board.md"
    result = CliRunner().invoke(main, ["leaderboard", "--from", str(export), "--select", "val", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"Regenerate: `benchsuite leaderboard --from {export} --select val --out {out}`" in out.read_text()
    both = CliRunner().invoke(main, ["leaderboard", "--from", str(export), "--results", str(val_db)])
    assert both.exit_code == 2 and "either --results" in both.output
    not_export = tmp_path / "other.csv"
    not_export.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(main, ["leaderboard", "--from", str(not_export)])
    assert result.exit_code == 2 and "not a benchsuite runs export" in result.output


def test_reported_numbers_sit_beside_measured_ones(val_db):
    reported = pd.DataFrame(
        [("digits", "symmetric", 0.4, "gr", "beta=8", "best", "test_acc", 93.0, "GR-iclr2020", "Table 9", "", ""),
         ("digits", "symmetric", 0.4, "gr", "beta=8", "final", "test_acc", 91.5, "GR-iclr2020", "Table 9", "GR-iclr2020 Table 9 = DM Table 8", ""),
         ("digits", "symmetric", 0.4, "dm", "beta=8", "final", "test_acc", 91.5, "DM", "Table 8", "GR-iclr2020 Table 9 = DM Table 8", ""),
         ("cifar10", "symmetric", 0.4, "gr", "beta=8", "final", "test_acc", 84.8, "GR-iclr2020", "Table 3", "", "")],
        columns=REPORTED_COLUMNS,
    )  # fmt: skip
    text = render_reported(reported, {"board": to_dataframe(val_db)})
    digits = text.split("## digits")[1]
    assert "| gr | beta=8 | best | GR-iclr2020 Table 9 | 93 | – |" in digits  # selection is a column, not "93; 91.5"
    assert "| dm = gr | beta=8 | final | GR-iclr2020 Table 9 = DM Table 8 | 91.5 | – |" in digits  # one source
    assert "| gr | beta=8 | final |" not in digits and "| dm | beta=8 |" not in digits
    assert "| gr (beta=8.0) | beta=8.0 | final | measured here (board board) | 95.50 ± 6.35 (2) | 60.50 ± 6.35 (2) |" in digits
    assert "measured here" not in text.split("## cifar10")[1].split("## digits")[0]
    with pytest.raises(ValueError, match="lacks the columns paper"):
        render_reported(reported.drop(columns=["paper"]))


def test_publish_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lb" / "grids").mkdir(parents=True)
    (tmp_path / "lb" / "grids" / "tiny.toml").write_text(
        'seeds = [0, 1]\nmethod = ["cce", "gce"]\ntask = ["digits"]\n[noise]\nkind = "symmetric"\nrates = [0.0, 0.4]\n'
        "[budget]\nepochs = 2\n"
    )
    (tmp_path / "lb" / "reported.csv").write_text(
        "task,noise_kind,noise_rate,method,setting,selection,metric,value,paper,table,same_runs,note\n"
        "digits,symmetric,0.4,cce,,final,test_acc,50.0,DM,Table 0,,a made-up row\n"
    )
    # --executor local: in the driver, as a pool's spawned workers cost more than these tiny cells
    result = CliRunner().invoke(main, ["publish", "--dir", "lb", "--no-progress", "--executor", "local"])
    assert result.exit_code == 0, result.output
    board = (tmp_path / "lb" / "tiny.md").read_text()
    assert "Produced by: `benchsuite run lb/grids/tiny.toml`" in board and "8 completed" in board
    command = re.search(r"Regenerate: `benchsuite (.*)`", board).group(1).split()
    (tmp_path / "lb" / "tiny.md").unlink()
    assert CliRunner().invoke(main, command).exit_code == 0
    assert (tmp_path / "lb" / "tiny.md").read_text() == board
    means = pd.read_csv(tmp_path / "lb" / "tiny.curves.csv")
    assert len(means) == 2 * 2 * 2 and {"test_acc", "clean_fit", "noisy_memorised"} <= set(means)
    for png in ("tiny/test_acc_r0.4.png", "tiny/fit_r0.4.png", "weight_curves.png"):
        assert (tmp_path / "lb" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "measured here (board tiny)" in (tmp_path / "lb" / "reported.md").read_text()
    with ResultStore(tmp_path / "lb" / ".results" / "tiny.sqlite") as store:  # a run of older host code
        status, spec = next(iter(store.specs().values()))
        store.save(RunRecord(CellSpec.from_dict({**spec.to_dict(), "results_version": "1"}), "completed", curves=[{"epoch": 1, "test_acc": 0.1}], info=INFO, provenance=PROVENANCE))
    again = CliRunner().invoke(main, ["publish", "--dir", "lb", "--no-progress"])
    assert again.exit_code == 0 and "ran nothing; 8 already done" in again.output
    assert (tmp_path / "lb" / "tiny.md").read_text() == board  # the board is its grid's current cells only
    assert len(pd.read_csv(tmp_path / "lb" / "tiny.runs.csv")) == 8
    unknown = CliRunner().invoke(main, ["publish", "--dir", "lb", "-b", "nope"])
    assert unknown.exit_code == 2 and "no board nope" in unknown.output and "tiny" in unknown.output
