"""The contract checks run without pytest; the pytest plugin over them reports inapplicable checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchsuite.checks import CheckFailed, NotApplicable, check_fitted_batch, check_gradient, check_method


def test_run_time_modules_import_and_check_without_pytest():
    """pytest blocked (``import pytest`` raises): the CLI, plotting, publishing and the checks still work."""
    program = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None
        import benchsuite.checks, benchsuite.cli, benchsuite.plotting, benchsuite.publish
        from benchsuite.checks import check_method
        print(check_method("gce"))
        print(sorted(name for name in sys.modules if name.startswith("_pytest")))
        """
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[\"check_fitted_batch: gce does not normalise by weight (batch_reduction = 'mean')\"]", "[]"]


def test_plot_weights_runs_without_pytest(tmp_path):
    program = f"import sys; sys.modules['pytest'] = None; from benchsuite.cli import main; sys.exit(main(['plot', 'weights', '-m', 'gce', '-m', 'dm', '--out', {str(tmp_path / 'w.png')!r}]))"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "w.png").stat().st_size > 1000


def test_a_failure_is_a_check_failure_and_inapplicable_checks_say_why():
    import benchsuite

    with pytest.raises(NotApplicable, match="ieg is a step-level method"):
        check_gradient(benchsuite.load_method("ieg"))
    with pytest.raises(NotApplicable, match="does not normalise by weight"):
        check_fitted_batch(benchsuite.load_method("cce"))
    assert len(check_method("ieg")) == 5  # gradient, weights, batch, fitted batch, extreme logits

    from test_method_contracts import WrongScale

    with pytest.raises(CheckFailed, match="autograd gradient of loss"):
        check_gradient(WrongScale())


def test_pytest_plugin_lists_the_inapplicable_checks_without_rs(tmp_path):
    (tmp_path / "test_contract.py").write_text(
        textwrap.dedent(
            """
            from benchsuite.testing import parametrize_with_method_checks

            @parametrize_with_method_checks(["cce", "ieg"])
            def test_contract(method, check):
                check(method)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 passed, 6 skipped" in result.stdout
    assert "benchsuite contract checks not applicable (6)" in result.stdout
    assert "test_contract[cce-check_fitted_batch]: check_fitted_batch: cce does not normalise by weight" in result.stdout
    assert "test_contract[ieg-check_gradient]: check_gradient: ieg is a step-level method" in result.stdout
