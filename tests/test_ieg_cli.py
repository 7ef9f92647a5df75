"""IEG through the CLI: a member of the default grid on digits, and n/a where no trusted set exists."""

from __future__ import annotations

from click.testing import CliRunner, Result

from benchsuite.cli import main
from benchsuite.results import curves_dataframe, to_dataframe


def run_cli(*args: str) -> Result:
    """``benchsuite ARGS`` in this process (no second interpreter importing torch)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


VARIANTS = """
from benchsuite import hookimpl
from benchsuite_plugins.digits.digits import Digits


class UntrustedDigits(Digits):
    name = "untrusted_digits"
    provides = frozenset({"strong_view", "clean_validation"})
    in_default_grid = False


class PlainDigits(Digits):
    name = "plain_digits"
    provides = frozenset({"trusted_set", "clean_validation"})
    in_default_grid = False


@hookimpl
def register_tasks(register):
    register(UntrustedDigits)
    register(PlainDigits)
"""


def test_ieg_is_in_the_default_grid_and_runs_there_end_to_end(tmp_path):
    results = tmp_path / "results.sqlite"
    dry = run_cli("run", "--dry-run", "--results", str(results))  # the main job
    assert dry.exit_code == 0, dry.stderr
    ieg = [line.split() for line in dry.stdout.splitlines() if "ieg(" in line]
    assert len(ieg) == 15 and all(cell[1] == "todo" and cell[4] == "digits" for cell in ieg)  # 3 rates × 5 seeds
    everywhere = run_cli("run", "-m", "ieg", "--dry-run", "--results", str(results))  # every default task
    ieg = [line.split() for line in everywhere.stdout.splitlines() if "ieg(" in line]
    assert {cell[4] for cell in ieg} > {"digits"}
    assert all(cell[1] == "n/a" for cell in ieg if cell[4] != "digits")  # no strong view or trusted set

    # the default grid's methods on its digits task, shortened
    run = run_cli("run", "-t", "digits", "--epochs", "2", "--seeds", "0", "--results", str(results), "--no-progress",
                  "--print-leaderboard")  # fmt: skip
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


def test_ieg_is_not_applicable_without_a_trusted_set_or_a_strong_view(tmp_path, install_plugin):
    install_plugin("variant-digits", "variant_digits", VARIANTS)
    results = tmp_path / "results.sqlite"
    # --executor local: in the driver, as a pool's spawned workers cost more than these tiny cells
    args = ["-m", "ieg", "-m", "cce", "-t", "untrusted_digits{width = 16}", "-t", "plain_digits{width = 16}", "--executor", "local"]
    run = run_cli("run", *args, "--noise", "symmetric:0.4", "--seeds", "0", "--epochs", "1", "--results", str(results),
                  "--no-progress", "--print-leaderboard")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert "2 not applicable (n/a)" in run.stderr
    runs = to_dataframe(results).set_index(["method", "task"])
    assert runs.loc[("ieg", "untrusted_digits"), "status"] == "skipped"
    assert "trusted" in runs.loc[("ieg", "untrusted_digits"), "error"]
    assert runs.loc[("ieg", "plain_digits"), "status"] == "skipped"
    assert "strong augmentation" in runs.loc[("ieg", "plain_digits"), "error"]
    assert set(runs.loc["cce", "status"]) == {"completed"}
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ieg |")]
    assert len(rows) >= 2 and all("n/a" in row for row in rows)
    again = run_cli("run", *args, "--noise", "symmetric:0.4", "--seeds", "0", "--epochs", "1", "--results", str(results),
                    "--no-progress")  # fmt: skip
    assert again.exit_code == 0 and "2 not applicable (n/a)" in again.stderr
    rerun = to_dataframe(results).set_index(["method", "task"])
    assert rerun.loc[("ieg", "plain_digits"), "finished_at"] == runs.loc[("ieg", "plain_digits"), "finished_at"]  # not rewritten
