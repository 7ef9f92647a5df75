"""Grid files and command-line grids: validation with key paths, expansion, cell identity."""

import pytest

from benchsuite.grid import (
    ComponentSpec,
    GridError,
    expand,
    grid_from_dict,
    load_grid_file,
    parse_component,
    parse_noise,
)
from benchsuite.plugins import get_host


def problems_of(tmp_path, text):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(GridError) as err:
        expand(load_grid_file(path), get_host())
    return err.value.problems


def test_parse_component_forms():
    assert parse_component("cce") == ComponentSpec("cce")
    assert parse_component("gr@cifar10_sym40") == ComponentSpec("gr", "cifar10_sym40")
    assert parse_component("gce{q = [0.5, 0.7]}") == ComponentSpec("gce", None, {"q": [0.5, 0.7]})
    assert parse_component("dm@imdb{beta = -0.5}") == ComponentSpec("dm", "imdb", {"beta": -0.5})
    with pytest.raises(ValueError, match="not a TOML inline table"):
        parse_component("gce{q = }")
    with pytest.raises(ValueError, match="is not of the form"):
        parse_component("gce(q=1)")


def test_parse_noise():
    assert parse_noise("symmetric:0,0.2").rates == (0.0, 0.2)
    assert parse_noise("none").kind == "none"
    with pytest.raises(ValueError, match="must look like"):
        parse_noise("symmetric")


def test_a_valid_file_expands_into_the_product(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        """
seeds = [0, 1]
[noise]
kind = "symmetric"
rates = [0.0, 0.4]
[budget]
epochs = 3
[[method]]
name = "cce"
[[task]]
name = "digits"
params = { width = [32, 64] }
"""
    )
    cells = expand(load_grid_file(path), get_host()).cells
    assert len(cells) == 2 * 2 * 2
    assert {c.task_params["width"] for c in cells} == {32, 64}
    assert all(c.budget == {"epochs": 3} for c in cells)
    assert len({c.cell_hash for c in cells}) == 8


def test_cell_hash_depends_on_what_defines_results_only():
    host = get_host()
    base = expand(grid_from_dict({"method": ["cce"], "task": ["digits"], "seeds": [0]}), host).cells[0]
    same = expand(grid_from_dict({"method": ["cce"], "task": ["digits{width = 128}"], "seeds": [0]}), host).cells[0]
    other = expand(grid_from_dict({"method": ["cce"], "task": ["digits"], "seeds": [1]}), host).cells[0]
    assert base.cell_hash == same.cell_hash  # the default written out is the same experiment
    assert base.cell_hash != other.cell_hash


def test_default_grid_is_every_default_method_on_default_tasks():
    expansion = expand(grid_from_dict({}), get_host())
    methods = {c.method for c in expansion.cells}
    assert "cce" in methods and {c.task for c in expansion.cells} >= {"digits"}
    digits = [c for c in expansion.cells if c.task == "digits"]
    assert len(digits) == len(methods) * 4 * 3
    assert sorted({c.noise_rate for c in digits}) == [0.0, 0.2, 0.4, 0.6]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seeds = [0,", "not valid TOML"),
        ("sedes = [0]", "sedes: unknown key; did you mean 'seeds'"),
        ("[[method]]\nname = 'gcee'\n[[task]]\nname = 'digits'", "method[0]: unknown method 'gcee'"),
        ("[[method]]\nname = 'cce'\n[[task]]\nname = 'digits'\nparams = { width = 0 }", "task[0] (digits): digits: parameter 'width' = 0 is out of range; allowed: int, x ≥ 1"),
        ("[[method]]\nname = 'cce'\n[[task]]\nname = 'digits'\nparams = { widht = 3 }", "unknown parameter 'widht'; did you mean 'width'?"),
        ("method = ['cce']\ntask = ['digits']\n[noise]\nkind = 'symmetric'\nrates = [0.2, 1.5]", "noise.rates[1]: 1.5 must be a finite number, 0 ≤ x ≤ 1"),
        ("method = ['cce']\ntask = ['digits']\n[noise]\nkind = 'pairflip'\nrates = [0.2]", "noise[0].kind: unknown noise kind 'pairflip'"),
        ("method = ['cce']\ntask = ['digits']\n[noise]\nkind = 'cifar10_asymmetric'\nrates = [0.2]",
         "noise[0].kind: task 'digits' does not accept noise 'cifar10_asymmetric'"),
        ("seeds = [0, -1]", "seeds[1]: -1 must be an integer, x ≥ 0"),
        ("seeds = [1, 1]", "seeds: [1, 1] has duplicates"),
        ("[budget]\nepochs = 0", "budget.epochs: 0 must be an integer, x ≥ 1"),
        ("[budget]\nepoch = 3", "budget.epoch: unknown budget key"),
        ("[budget]\nepochs = 2.5", "budget.epochs: 2.5 must be an integer, x ≥ 1"),
        ("executor = 'cluster'", "executor: unknown executor 'cluster'"),
        ("[[method]]\nparams = {}", "method[0].name: missing or not a string"),
        ("method = ['gce(q=1)']", "method[0]: 'gce(q=1)' is not of the form"),
        ("val_fraction = 1.0", "val_fraction: 1.0 must be a finite number, 0 ≤ x < 1"),
        ("method = ['imae@0.3:clean']\ntask = ['digits']\n[noise]\nkind = 'symmetric'\nrates = [0.0, 0.4]",
         'method[0].preset."0.3": this grid runs no noise rate 0.3 (it runs: 0, 0.4)'),
        ("method = ['imae@0:clena']\ntask = ['digits']", 'method[0].preset."0" (imae): imae: unknown preset \'clena\''),
        ("[[method]]\nname = 'imae'\npreset = { '0' = 'clean', sometimes = 'noisy' }\n[[task]]\nname = 'digits'",
         "method[0].preset.sometimes: not a noise rate in [0, 1] (or 'default' for every other rate)"),
        ("[[method]]\nname = 'imae'\npreset = { '0' = 'clean', '0.0' = 'noisy' }\n[[task]]\nname = 'digits'",
         "method[0].preset.0.0: rate 0 is given twice"),
        ("[[method]]\nname = 'imae'\npreset = { '0' = 1 }\n[[task]]\nname = 'digits'", "method[0].preset.0: 1 must be a preset name"),
        ("method = ['cce']\ntask = ['digits@0:x']", "task[0]: 'digits@0:x': presets per noise rate are for methods"),
        ("executor = 'pool@0:x'", "executors have options, not presets"),
        ("eval_ema = 1.0", "eval_ema: 1.0 must be a finite number, 0 < x < 1"),
        ("eval_ema = true", "eval_ema: True must be a finite number, 0 < x < 1"),
        ("deterministic = 'yes'", "deterministic: 'yes' must be true or false"),
    ],
)
def test_bad_grid_files_name_the_key_path_and_the_problem(tmp_path, text, expected):
    problems = problems_of(tmp_path, text)
    assert any(expected in p for p in problems), problems


def test_all_problems_are_reported_at_once(tmp_path):
    problems = problems_of(tmp_path, "sedes = [0]\nexecutor = 'x'\n[budget]\nepochs = -1")
    assert len(problems) == 3


def test_missing_grid_file():
    with pytest.raises(GridError, match="no such file"):
        load_grid_file("/nonexistent/grid.toml")


def test_parse_presets_per_noise_rate():
    assert parse_component("imae@0:clean,noisy") == ComponentSpec("imae", "noisy", {}, {0.0: "clean"})
    assert parse_component("gr@0:cifar10_clean,0.4:cifar10_sym40{eps = 0.0}") == ComponentSpec(
        "gr", None, {"eps": 0.0}, {0.0: "cifar10_clean", 0.4: "cifar10_sym40"}
    )
    assert parse_component("imae@0:clean,noisy").preset_label() == "0:clean,noisy"
    with pytest.raises(ValueError, match="two presets for rate 0"):
        parse_component("imae@0:clean,0:noisy")
    with pytest.raises(ValueError, match="two presets for the other rates"):
        parse_component("imae@clean,noisy")
    with pytest.raises(ValueError, match=r"preset\.1\.5: not a noise rate in \[0, 1\]"):
        parse_component("imae@1.5:clean")
    with pytest.raises(ValueError, match="an empty item"):
        parse_component("imae@0:")


def test_a_method_gets_its_preset_per_noise_rate(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        """
seeds = [0]
[[method]]
name = "gr"
preset = { "0" = "cifar10_clean" }
[[method]]
name = "imae"
preset = { "0.0" = "clean", default = "noisy" }
params = { eps = 0.0 }
[[task]]
name = "digits"
[noise]
kind = "symmetric"
rates = [0.0, 0.4]
"""
    )
    cells = {(c.method, c.noise_rate): c for c in expand(load_grid_file(path), get_host()).cells}
    assert len(cells) == 4
    assert (cells["gr", 0.0].method_params["lam"], cells["gr", 0.0].method_params["beta"]) == (0.0, 2.0)  # GR Table 2
    assert (cells["gr", 0.4].method_params["lam"], cells["gr", 0.4].method_params["beta"]) == (0.5, 8.0)  # defaults
    assert cells["imae", 0.0].method_params == {"T": 0.5, "eps": 0.0, "normalize": "batch_sum"}
    assert cells["imae", 0.4].method_params["T"] == 8.0 and cells["imae", 0.4].method_params["eps"] == 0.0
    assert {c.preset for c in cells.values()} == {"0:cifar10_clean", "0:clean,noisy"}  # one label per entry: one row
    command_line = expand(grid_from_dict({"method": ["imae@0:clean,noisy{eps = 0.0}"], "task": ["digits"], "seeds": [0],
                                          "noise": {"kind": "symmetric", "rates": [0.0, 0.4]}}), get_host()).cells
    assert {(c.noise_rate, c.cell_hash) for c in command_line} == {(r, cells["imae", r].cell_hash) for r in (0.0, 0.4)}


def test_eval_ema_is_part_of_the_cell_identity_and_deterministic_is_not():
    host = get_host()
    base = {"method": ["cce"], "task": ["digits"], "seeds": [0]}
    plain = expand(grid_from_dict(base), host).cells[0]
    ema = expand(grid_from_dict({**base, "eval_ema": 0.999}), host).cells[0]
    strict = expand(grid_from_dict({**base, "deterministic": True}), host).cells[0]
    assert "eval_ema" not in plain.identity()  # off: the hash cells had before the option existed
    assert ema.eval_ema == 0.999 and ema.cell_hash != plain.cell_hash and "EMA 0.999" in ema.label()
    assert strict.deterministic and strict.cell_hash == plain.cell_hash
