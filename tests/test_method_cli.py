"""The methods through the command line: listed with their presets, in the default grid, run by
preset and parameter grid, and drawn by ``benchsuite plot weights``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.results import to_dataframe

BUILTINS = ["cce", "cce_dn", "mae", "mae_dn", "mse", "mse_dn", "gce", "gce_dn", "gce_truncated", "sl", "dm", "gr", "imae"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_methods_json_lists_every_method_with_its_presets_and_sources():
    result = invoke("methods", "--json")
    assert result.exit_code == 0, result.output
    described = {m["name"]: m for m in json.loads(result.output)}
    assert set(BUILTINS) <= set(described)
    gr40 = described["gr"]["presets"]["cifar10_sym40"]
    assert gr40["values"] == {"lam": 1.0, "beta": 16.0} and "Table 3" in gr40["source"]
    assert described["dm"]["presets"]["imdb_noise20"]["values"] == {"lam": 0.0, "beta": -0.52}
    assert described["imae"]["parameters"]["T"]["default"] == 8.0
    assert all(p["source"] for m in BUILTINS for p in described[m]["presets"].values())


def test_every_method_is_one_flag_away_from_the_main_job_on_digits(tmp_path):
    # the main job (no grid, no -m/-t) runs the seed methods; -t digits runs every default-grid method there
    result = invoke("run", "-t", "digits", "--dry-run", "--results", str(tmp_path / "r.sqlite"))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "· digits ·" in line]
    digits_methods = {line.split()[2].split("(")[0] for line in lines}
    # a cell that several names train is listed once, with the other names: dm with its defaults is gr's
    also = {name for line in lines if "  (= " in line for name in line.split("  (= ")[1].rstrip(")").split(", ")}
    assert set(BUILTINS) <= digits_methods | also and "gr" in also


def test_a_grid_names_presets_and_parameter_lists(tmp_path):
    results = tmp_path / "r.sqlite"
    result = invoke(
        "run", "-m", "gr@cifar10_sym40", "-m", "gce{q = [0.5, 0.7]}",
        "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--epochs", "2", "--seeds", "0",
        "--results", str(results), "--no-progress", "--no-leaderboard",
        "--executor", "local",  # in the driver: a pool's spawned workers cost more than these tiny cells
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = to_dataframe(results).set_index("params")
    assert set(runs.status) == {"completed"} and len(runs) == 3
    gr = runs[runs.method == "gr"].iloc[0]
    assert gr.preset == "cifar10_sym40"
    assert json.loads(gr.name)["beta"] == 16.0 and json.loads(gr.name)["lam"] == 1.0
    assert sorted(json.loads(p)["q"] for p in runs[runs.method == "gce"].index) == [0.5, 0.7]
    assert (runs.weight_focus.between(0, 1)).all()


def test_plot_weights_draws_each_setting(tmp_path):
    out = tmp_path / "w.png"
    result = invoke("plot", "weights", "--method", "gr{beta=8,lam=0.5}", "--method", "imae",
                    "-m", "gr{beta = 12, lam = [1, 2]}", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 settings" in result.output and out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "spec, out, message",
    [
        ("gx", "w.png", "unknown method 'gx'; did you mean 'gr'?"),
        ("gr{beta = 100}", "w.png", "'beta' = 100.0 is out of range"),
        ("gr", "w.jpg", "must end in one of .png, .svg, .pdf"),
    ],
)
def test_plot_weights_bad_input_exits_2_with_the_reason(tmp_path, spec, out, message):
    result = CliRunner().invoke(main, ["plot", "weights", "-m", spec, "--out", str(tmp_path / out)])
    assert result.exit_code == 2 and message in result.output
