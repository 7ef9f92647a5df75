"""A cell's identity: what it trains (``Method.canonical``: dm and gr with their defaults are one
cell), the fingerprint of its plugins' code (an edited plugin's cells run again, shown as stale
by ``--dry-run``), and the host's declared results version."""

import json
import sys
import types

import pytest
import torch
from click.testing import CliRunner
from conftest import cli_in_process, run_cli

from benchsuite.cli import main
from benchsuite.fingerprint import code_fingerprint, plugin_files
from benchsuite.grid import expand, grid_from_dict
from benchsuite.leaderboard import render
from benchsuite.method import LossMethod
from benchsuite.plugins import get_host
from benchsuite.results import to_dataframe
from benchsuite.runner import run_grid
from benchsuite.spec import RESULTS_VERSION, CellSpec, stale_reason
from benchsuite.store import ResultStore


def cells_of(methods, **grid):
    return expand(grid_from_dict({"method": methods, "task": ["digits"], "seeds": [0], "noise": {"kind": "symmetric", "rates": [0.4]}, **grid}), get_host())


def test_dm_and_gr_with_their_defaults_are_one_cell_that_names_both():
    expansion = cells_of(["dm", "gr", "imae", "gr{lam = 1.0}", "imae@clean"])
    assert len(expansion.cells) == 3  # dm = gr; imae (T = 8) = gr{lam = 1} (β = 8, λ = 1); imae@clean (T = 0.5)
    names = {h: sorted((n["method"], n["preset"], json.dumps(n["params"], sort_keys=True)) for n in entries) for h, entries in expansion.names.items()}
    by_methods = {tuple(m for m, _, _ in entries): h for h, entries in names.items()}
    assert set(by_methods) == {("dm", "gr"), ("gr", "imae"), ("imae",)}
    dm_cell = next(c for c in expansion.cells if c.cell_hash == by_methods["dm", "gr"])
    assert dm_cell.method == "dm" and dm_cell.trains == "dm" and dm_cell.trains_params["family"] == "gr"
    assert dm_cell.identity()["method"] == "dm" and "trains" not in dm_cell.identity()


def test_a_canonical_form_trains_exactly_as_the_method_it_stands_for():
    """The promise behind merging cells: every built-in loss method's loss equals its canonical
    method's, value and gradient."""
    host = get_host()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=generator, dtype=torch.float64) * 4
    targets = torch.randint(0, 10, (64,), generator=generator)
    checked = 0
    for name in host.methods.names():
        cls = host.method_class(name)
        if not issubclass(cls, LossMethod) or cls.__module__.split(".")[0] != "benchsuite_plugins":
            continue
        for preset in [None, *cls.presets]:
            method = cls(preset=preset)
            canonical = method.canonical()
            twin = canonical.method(**canonical.params)
            assert twin.canonical() == canonical, f"{name}@{preset}: the canonical form is not a fixed point"
            a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
            loss_a, loss_b = method.loss(a, targets), twin.loss(b, targets)
            loss_a.backward(), loss_b.backward()
            assert torch.equal(loss_a, loss_b) and torch.equal(a.grad, b.grad), f"{name}@{preset} differs from its canonical form"
            checked += 1
    assert checked > 20


def test_the_fingerprint_covers_the_plugin_modules_a_plugin_imports():
    gr = plugin_files("benchsuite_plugins.methods.gr")
    assert {"benchsuite_plugins.methods.gr", "benchsuite_plugins.methods.dm"} <= set(gr)
    assert "benchsuite_plugins.methods.cce" not in gr and not any(m.startswith("benchsuite.") for m in gr)
    assert set(plugin_files("benchsuite_plugins.methods.dm")) == {
        "benchsuite_plugins", "benchsuite_plugins.methods", "benchsuite_plugins.methods.dm", "benchsuite_plugins.methods.weighting",
    }  # fmt: skip
    assert code_fingerprint("benchsuite_plugins.methods.gr") != code_fingerprint("benchsuite_plugins.methods.dm")
    assert len(code_fingerprint("benchsuite_plugins.methods.gr")) == 12


def test_a_package_plugin_is_fingerprinted_by_the_modules_it_imports(tmp_path, monkeypatch):
    package = tmp_path / "acme_losses"
    (package / "shared").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("from .core import weight\n\ndef later():\n    from acme_losses.shared import helpers\n")
    (package / "core.py").write_text("WEIGHT = 1.0\n")
    (package / "shared" / "__init__.py").write_text("")
    (package / "shared" / "helpers.py").write_text("SCALE = 2\n")
    (package / "unrelated.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert set(plugin_files("acme_losses.plugin")) == {
        "acme_losses", "acme_losses.plugin", "acme_losses.core", "acme_losses.shared", "acme_losses.shared.helpers",
    }  # fmt: skip
    before = code_fingerprint("acme_losses.plugin")
    code_fingerprint.cache_clear()
    (package / "unrelated.py").write_text("X = 2\n")
    assert code_fingerprint("acme_losses.plugin") == before
    code_fingerprint.cache_clear()
    (package / "shared" / "helpers.py").write_text("SCALE = 3\n")
    assert code_fingerprint("acme_losses.plugin") != before
    code_fingerprint.cache_clear()


def test_code_and_versions_are_in_the_identity_and_explain_a_stale_cell():
    cell = cells_of(["cce"]).cells[0]
    assert cell.results_version == RESULTS_VERSION and cell.method_code == code_fingerprint("benchsuite_plugins.methods.cce")
    edited = CellSpec.from_dict({**cell.to_dict(), "method_code": "0123456789ab"})
    older_host = CellSpec.from_dict({**cell.to_dict(), "results_version": "1"})
    assert len({cell.cell_hash, edited.cell_hash, older_host.cell_hash}) == 3
    assert cell.lineage_hash() == edited.lineage_hash() == older_host.lineage_hash()
    assert stale_reason(cell, edited) == f"code of method plugin 'cce' changed (0123456789ab -> {cell.method_code})"
    assert stale_reason(cell, older_host) == f"host results version changed (1 -> {RESULTS_VERSION})"
    before_fingerprints = {k: v for k, v in cell.to_dict().items() if k not in ("method_code", "task_code", "results_version", "trains", "trains_params")}
    assert "code of method plugin 'cce' changed (unrecorded" in stale_reason(cell, CellSpec.from_dict(before_fingerprints))


def test_identical_configurations_run_once_and_show_as_one_row(tmp_path):
    expansion = cells_of(["cce", "dm", "gr"], budget={"epochs": 1}, task=["digits{width = 16}"])
    with ResultStore(tmp_path / "r.sqlite") as store:
        outcome = run_grid(expansion, store, progress=False)
        assert outcome.statuses["completed"] == 2  # cce, and dm = gr once
        assert sorted(n["method"] for entries in store.names().values() for n in entries) == ["cce", "dm", "gr"]
    runs = to_dataframe(tmp_path / "r.sqlite")
    names = json.loads(runs.names[runs.method == "dm"].iloc[0])
    assert [n["method"] for n in names] == ["dm", "gr"] and names[1]["params"] == get_host().method_class("gr")().identity_config()
    final = render(runs).split("**Final epoch**")[1].split("**Best")[0]
    assert "| dm = gr |" in final and "| gr |" not in final and "| dm |" not in final
    assert len([line for line in final.splitlines() if line.startswith("| ") and "r=0.4" not in line]) == 2  # counted once


PLUGIN = """
import torch.nn.functional as F
from benchsuite import LossMethod, LossOutput, hookimpl

class Scaled(LossMethod):
    name = "scaled_ce"
    summary = "cross entropy times a constant (tests only)"
    in_default_grid = False

    def compute(self, logits, targets):
        return LossOutput(1.0 * F.cross_entropy(logits, targets))

@hookimpl
def register_methods(register):
    register(Scaled)
"""


def test_an_edited_plugin_runs_its_cells_again(install_plugin, tmp_path, monkeypatch):
    """The issue's case: doubling a plugin's loss and reinstalling left every cell `completed`;
    now its cells are stale (with the reason) and run again, the other method's are kept."""
    install_plugin("scaled-ce", "benchsuite_scaled", PLUGIN)
    results = tmp_path / "r.sqlite"
    grid = ["-m", "scaled_ce", "-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--seeds", "0,1",
            "--epochs", "1", "--results", str(results), "--no-progress", "--no-leaderboard",
            "--executor", "local"]  # fmt: skip
    # --executor local: in the driver, as spawning a pool's workers costs more than these tiny cells
    env = {"PYTHONDONTWRITEBYTECODE": "1"}  # an edit within the same second must not hit a stale .pyc
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # nor from this process's import of it
    first = cli_in_process("run", *grid)  # the results before the edit; the new processes come after it
    assert first.returncode == 0, first.stderr
    before = to_dataframe(results).set_index("cell_hash")
    source = tmp_path / "site" / "benchsuite_scaled.py"  # where install_plugin put it
    source.write_text(source.read_text().replace("1.0 * F.cross_entropy", "2.0 * F.cross_entropy"))

    dry = run_cli("run", *grid, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    stale = [line for line in dry.stdout.splitlines() if "  stale  " in line]
    assert len(stale) == 2 and all("scaled_ce()" in line for line in stale)
    assert dry.stdout.count("stale: code of method plugin 'scaled_ce' changed (") == 2
    assert dry.stdout.count("  completed  cce()") == 2 and "2 stale" in dry.stdout

    again = run_cli("run", *grid, env=env)
    assert again.returncode == 0, again.stderr
    assert "4 cells: ran 2 completed; 2 already done" in again.stderr
    after = to_dataframe(results)
    assert len(after) == 6  # the old runs are kept; nothing computed is lost
    new = after[~after.cell_hash.isin(before.index) & (after.method == "scaled_ce")]
    old = before[before.method == "scaled_ce"]
    assert len(new) == 2
    assert new.sort_values("seed").loss.to_numpy() == pytest.approx(2 * old.sort_values("seed").loss.to_numpy(), rel=0.05)
    assert len(set(after.setting[after.method == "scaled_ce"])) == 2  # old and new code never share a row


def test_a_new_results_version_marks_stored_cells_stale(tmp_path, monkeypatch):
    results = tmp_path / "r.sqlite"
    grid = ["-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--seeds", "0", "--epochs", "1",
            "--results", str(results), "--no-progress", "--no-leaderboard"]  # fmt: skip
    assert CliRunner().invoke(main, ["run", *grid]).exit_code == 0
    monkeypatch.setattr("benchsuite.grid.RESULTS_VERSION", "99")
    dry = CliRunner().invoke(main, ["run", *grid, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"stale: host results version changed ({RESULTS_VERSION} -> 99)" in dry.output


def test_a_plugin_without_a_source_file_has_no_fingerprint(monkeypatch):
    monkeypatch.setitem(sys.modules, "benchsuite_ephemeral", types.ModuleType("benchsuite_ephemeral"))
    assert code_fingerprint("benchsuite_ephemeral") == "" and code_fingerprint("no_such_module_anywhere") == ""
