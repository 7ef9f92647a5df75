"""The path "write a plugin, install it, benchmark it", end to end with the example package."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, cli_in_process, run_cli

EXAMPLE = ROOT / "examples" / "benchsuite-focal"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example (its own pyproject and entry point) into a private target folder."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target", str(target), str(EXAMPLE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def example_here(installed_example, monkeypatch):
    """The installed example visible to this process too (its folder on ``sys.path``), and
    forgotten after the test."""
    monkeypatch.syspath_prepend(installed_example["PYTHONPATH"].split(os.pathsep)[0])
    sys.modules.pop("benchsuite_focal", None)
    yield
    sys.modules.pop("benchsuite_focal", None)


def test_installed_example_is_discovered(installed_example):
    listing = json.loads(run_cli("plugins", "--json", env=installed_example).stdout)
    focal = next(p for p in listing["loaded"] if p["name"] == "focal")
    assert focal["distribution"] == "benchsuite-focal" and focal["version"] == "0.1.0"
    assert focal["methods"] == ["focal"]


def test_example_runs_in_a_grid_beside_the_builtins(example_here, tmp_path):
    results = tmp_path / "results.sqlite"
    # In this process (discovery in a new process is tested above): the run is what is tested here.
    result = cli_in_process(
        "run", "-m", "focal", "-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.4",
        "--epochs", "2", "--seeds", "0", "--results", str(results), "--no-progress",
        "--executor", "local",  # in the driver: a pool's spawned workers cost more than these two tiny cells
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 cells: ran 2 completed" in result.stderr
    assert "| focal |" in result.stdout and "| cce |" in result.stdout


def test_the_example_passes_its_own_tests(installed_example):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        env={**os.environ, **installed_example},
        cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # 3 own tests + 7 contract checks × 3 settings; the fitted-batch check skips (focal is a mean loss)
    assert "24 passed, 3 skipped" in result.stdout
