"""The committed leaderboards: each board's markdown is exactly what its header's command renders
from the committed export, and the reported-numbers file is well formed and rendered as committed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.plugins import get_host
from benchsuite.publish import REPORTED_COLUMNS, SELECTIONS, read_runs_export, render_reported

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "leaderboards"
GRIDS = sorted((BOARDS / "grids").glob("*.toml"))
REPORTED_TASKS = {"cifar10", "cifar100", "vehicles10", "clothing1m", "mars", "imdb"}
#: The papers whose numbers come from their authors' repository (a README, or an issue thread there),
#: not from the paper's own text: each such row must name that repository in its note.
OFFICIAL_CODE = {"Co-teaching": "bhanML/Co-teaching", "ELR": "shengliu66/ELR", "DivideMix": "LiJunnan1992/DivideMix", "mixup": "hongyi-zhang/mixup"}
#: Where in a paper a number was read.
PAPER_PART = re.compile(r"Table A?\d+( caption)?|Sec\. [\d.]+ text")


def test_every_grid_is_published():
    assert {g.stem for g in GRIDS} >= {"digits", "digits_retrieval", "digits_val"}
    for grid in GRIDS:
        for suffix in (".md", ".runs.csv") + ((".curves.csv",) if "select" not in grid.read_text() else ()):
            assert (BOARDS / f"{grid.stem}{suffix}").is_file(), f"{grid.stem}{suffix} missing: run `benchsuite publish -b {grid.stem}`"


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.stem)
def test_board_regenerates_byte_for_byte(grid, tmp_path, monkeypatch):
    """Run the command of the board's header, as written, in a copy holding only its inputs."""
    committed = (BOARDS / f"{grid.stem}.md").read_text()
    command = re.search(r"^- Regenerate: `benchsuite (leaderboard .*)`$", committed, re.M).group(1).split()
    copy = tmp_path / "leaderboards"
    shutil.copytree(BOARDS / "grids", copy / "grids")
    shutil.copy(BOARDS / f"{grid.stem}.runs.csv", copy)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert (copy / f"{grid.stem}.md").read_text() == committed, f"leaderboards/{grid.stem}.md differs from its regeneration"


def test_boards_hold_enough_seeds():
    for grid in GRIDS:
        runs = read_runs_export(BOARDS / f"{grid.stem}.runs.csv")
        ran = runs[runs.status != "skipped"]
        assert (ran.status == "completed").mean() > 0.9
        per_cell = ran.groupby(["method", "params", "noise_rate"]).seed.nunique()
        assert per_cell.min() >= 5, f"{grid.stem}: fewer than 5 seeds for {per_cell.idxmin()}"


def test_reported_numbers_are_well_formed_and_rendered_as_committed():
    reported = pd.read_csv(BOARDS / "reported.csv", dtype={"same_runs": str}).fillna({"same_runs": "", "setting": ""})
    assert list(reported.columns) == REPORTED_COLUMNS and len(reported) > 100
    assert set(reported.task) <= REPORTED_TASKS
    assert set(reported.noise_kind) <= set(get_host().noise_kinds) | {"none"}
    assert reported.value.between(0, 100).all() and reported.noise_rate.between(0, 1).all()
    assert reported.paper.isin(["GR-iclr2020", "DM", "IMAE", "IEG", *OFFICIAL_CODE]).all() and reported.table.notna().all()
    assert reported.selection.isin(SELECTIONS).all()
    key = ["task", "noise_kind", "noise_rate", "method", "setting", "selection", "metric", "paper", "table"]
    assert not reported.duplicated(key).any()  # the epoch selection tells apart what was "89.4; 87.8"
    for (paper, table), rows in reported.groupby(["paper", "table"]):
        if {"best", "final"} <= set(rows.selection) and paper != "DivideMix":  # tables with Best and Final columns
            assert (rows.selection == "best").sum() == (rows.selection == "final").sum(), (paper, table)
    # DM Table 3 printed some accuracies as fractions in a percent table: converted
    imdb = reported[(reported.paper == "DM") & (reported.table == "Table 3")]
    assert (imdb.value > 1).all() and imdb.note.str.contains("converted to 50.0").sum() == 5
    # rows GR and DM report from the same runs: the same numbers, in both papers, under one source
    shared = reported[reported.same_runs != ""]
    for source, rows in shared.groupby("same_runs"):
        assert set(rows.paper) == {"GR-iclr2020", "DM"}, source
        gr, dm = (rows[rows.paper == p].drop(columns=["paper", "table", "note", "method"]) for p in ("GR-iclr2020", "DM"))
        assert len(gr.merge(dm)) == len(gr), source
    measured = {f.name.removesuffix(".runs.csv"): read_runs_export(f) for f in sorted(BOARDS.glob("*.runs.csv"))}
    assert render_reported(pd.read_csv(BOARDS / "reported.csv"), measured) == (BOARDS / "reported.md").read_text()


def test_every_reported_number_names_paper_table_selection_and_source():
    """A reader must be able to find each number again: the paper and where in it (a table or a
    section), or, when the number was read in the authors' repository rather than in the paper, that
    repository (and the issue, when an issue thread quotes it)."""
    reported = pd.read_csv(BOARDS / "reported.csv", dtype=str, keep_default_na=False)
    for row in reported.itertuples():
        where = f"reported.csv row {row.Index + 2} ({row.paper} {row.table} {row.method})"
        assert row.paper and row.table and row.selection in SELECTIONS, where
        quoted = "quoted by" in row.note  # a number another person quotes, not the paper's text
        if row.table == "code README" or quoted:
            repo = OFFICIAL_CODE.get(row.paper)
            assert repo and repo in row.note, f"{where}: the note must name {repo or 'the authors repository'}"
        else:
            assert PAPER_PART.fullmatch(row.table), f"{where}: table {row.table!r} is neither a table nor a section"
        if quoted:
            assert re.search(rf"{re.escape(repo)} issue \d+", row.note), f"{where}: say which issue quotes it"
    # the numbers read in an author's README are the README's, converted where it prints errors
    mixup = reported[reported.paper == "mixup"].set_index(["method", "setting"]).value.astype(float)
    assert mixup["mixup", "backbone=PreAct ResNet-18;alpha=1;weight_decay=1e-4"] == pytest.approx(100 - 4.24)
    assert mixup["cce", "backbone=PreAct ResNet-18;weight_decay=5e-4"] == pytest.approx(100 - 5.18)


def test_readme_headline_table_is_the_published_one():
    readme = (ROOT / "README.md").read_text()
    headline = readme.split("Headline")[1].split("\n\n")[1]
    assert headline.startswith("| method | r=0 |") and headline in (BOARDS / "digits.md").read_text()
