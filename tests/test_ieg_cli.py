"""IEG through the CLI: a member of the default grid on digits, and n/a where no trusted set exists."""

from __future__ import annotations

from click.testing import CliRunner, Result

from benchsuite.cli import main
from benchsuite.results import curves_dataframe, to_dataframe


def run_cli(*args: str) -> Result:
    """``benchsuite ARGS`` in this process (no second interpreter importing torch)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


UNTRUSTED = """
from benchsuite import hookimpl
from benchsuite_plugins.tasks.digits import Digits


class UntrustedDigits(Digits):
    name = "untrusted_digits"
    provides_trusted_set = False
    in_default_grid = False


@hookimpl
def register_tasks(register):
    register(UntrustedDigits)
"""


def test_ieg_is_in_the_default_grid_and_runs_there_end_to_end(tmp_path):
    results = tmp_path / "results.sqlite"
    dry = run_cli("run", "--dry-run", "--results", str(results))
    assert dry.exit_code == 0, dry.stderr
    ieg = [line for line in dry.stdout.splitlines() if "ieg(" in line]
    assert len(ieg) == 12 and all("· digits · symmetric" in line for line in ieg)  # 4 rates × 3 seeds

    run = run_cli("run", "--epochs", "2", "--seeds", "0", "--results", str(results), "--no-progress")
    assert run.exit_code == 0, run.stderr
    runs = to_dataframe(results)
    mine = runs[runs.method == "ieg"]
    assert sorted(mine.noise_rate) == [0.0, 0.2, 0.4, 0.6] and set(mine.status) == {"completed"}
    assert (mine.epochs == 2).all() and mine.test_acc.notna().all()
    noisy = mine[mine.noise_rate > 0]
    assert noisy.ieg_relabel_noisy.between(0, 1).all() and noisy.ieg_weight_noisy.ge(0).all()
    curves = curves_dataframe(results)
    assert {"ieg_weight_clean", "ieg_relabel_clean", "weight_focus"} <= set(curves.columns)
    assert "| ieg |" in run.stdout


def test_ieg_is_not_applicable_without_a_trusted_set(tmp_path, install_plugin):
    install_plugin("untrusted-digits", "untrusted_digits", UNTRUSTED)
    results = tmp_path / "results.sqlite"
    args = ["-m", "ieg", "-m", "cce", "-t", "untrusted_digits{width = 16}", "--noise", "symmetric:0.4"]
    run = run_cli("run", *args, "--seeds", "0", "--epochs", "1", "--results", str(results), "--no-progress")
    assert run.exit_code == 0, run.stderr
    assert "1 not applicable (n/a)" in run.stderr
    runs = to_dataframe(results).set_index("method")
    assert runs.loc["ieg", "status"] == "skipped" and "trusted" in runs.loc["ieg", "error"]
    assert runs.loc["cce", "status"] == "completed"
    row = next(line for line in run.stdout.splitlines() if line.startswith("| ieg |"))
    assert "n/a" in row
