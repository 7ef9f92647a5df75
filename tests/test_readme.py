"""Every code block of the README runs here, as a reader would run it.

A block is classified by the HTML comment right above its fence, ``<!-- readme-test: KIND ... -->``
(invisible on GitHub), or by its language when it has none:

* ``python`` without a marker: executed in a fresh folder that holds a small results database at
  ``benchsuite-results/results.sqlite`` (the default place ``benchsuite run`` writes to);
* ``package NAME FILE``: the block is file ``FILE`` of an example package ``NAME``; the blocks of one
  package are written out together, pip-installed into a private folder, and its tests run under
  pytest, contract checks included;
* ``grid``: a grid file; ``benchsuite run FILE --dry-run`` validates it and lists its cells;
* ``dry-run [grid.toml] [fake-cifar]``: every ``benchsuite`` command of the block runs with
  ``--dry-run`` appended (the real runs take hours), from a fresh folder holding a copy of the
  shipped grids (``leaderboards/grids/``) when a command names one; ``grid.toml`` puts the README's grid file under
  that name beside them, ``fake-cifar`` a tiny CIFAR release where the commands say ``/data``;
  other commands of the block (creating a virtual environment, ``pip install``) are not run;
* ``run``: every ``benchsuite`` command of the block runs for real, in order, from a fresh folder
  (small, quick commands only), and must exit 0;
* ``skip: REASON``: not run, for the reason given (a block must say why).

Blocks without a language (the layout tree) are prose, not code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    marker: str  # "" when the block has none
    code: str

    @property
    def kind(self) -> str:
        return self.marker.split(":")[0].split()[0] if self.marker else self.language

    @property
    def args(self) -> list[str]:
        return self.marker.split()[1:] if self.marker else []

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.marker or self.language})"


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.fullmatch(lines[i - 1].strip()) if i else None
        blocks.append(Block(i + 1, opening.group(1), marker.group(1) if marker else "", "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def blocks_of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.language and b.kind == kind]


def test_every_code_block_is_run_or_says_why_not():
    known = {"python", "package", "grid", "dry-run", "run", "skip"}
    for block in BLOCKS:
        if not block.language:
            continue
        assert block.kind in known, f"{block}: add a readme-test marker (see tests/test_readme.py)"
        assert block.language == "python" or block.marker, f"{block}: a {block.language} block needs a marker"
        if block.kind == "skip":
            assert len(block.marker.split(":", 1)[1].strip()) > 10, f"{block}: say why the block is not run"


def test_a_skipped_block_cannot_run_here_for_a_reason_checked_here(tmp_path, monkeypatch):
    """A block may skip only for a reason this test checks: it is the suite's own install-and-test
    command (its extras are the project's, the ones tox installs, and it runs pytest), or it needs
    data that is never here: its benchsuite commands, run dry against a fake CIFAR release where
    they say ``/data`` (``run`` with ``--dry-run``), stop with exit 2 naming a path the command gives
    that does not exist."""
    import configparser
    import tomllib

    from benchsuite_plugins.cifar.fake_release import write_fake_cifar
    from click.testing import CliRunner

    from benchsuite.cli import main

    project_extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    tox_extras = set(tox["testenv"]["extras"].split())
    for which in ("cifar10", "cifar100"):
        write_fake_cifar(tmp_path / "data", which)
    monkeypatch.chdir(tmp_path)
    for block in blocks_of("skip"):
        commands = benchsuite_commands(block.code)
        if not commands:
            installed = re.search(r"pip install -e '\.\[([\w,]+)\]'", block.code)
            assert installed and re.search(r"-m pytest\s*$", block.code), f"{block}: neither the suite's command nor a data-bound run"
            assert set(installed.group(1).split(",")) == tox_extras <= project_extras, f"{block}: not the extras the suite runs with"
            continue
        for command in commands:
            command = [arg.replace("'/data", repr(str(tmp_path / "data"))[:-1]) for arg in command]
            result = CliRunner().invoke(main, [*command, *(["--dry-run"] if command[0] == "run" else [])])
            given = {path for arg in command for path in re.findall(r"[\w./-]*/[\w./-]+", arg) if not Path(path).exists()}
            named = [path for path in given if path in result.output]
            assert result.exit_code == 2 and named, f"{block}: benchsuite {shlex.join(command)} could run here:\n{result.output}"


def test_marker_parsing():
    text = "x\n<!-- readme-test: dry-run grid.toml -->\n```bash\nbenchsuite run\n```\n```\ntree\n```\n"
    first, second = readme_blocks(text)
    assert (first.line, first.kind, first.args, first.code) == (3, "dry-run", ["grid.toml"], "benchsuite run\n")
    assert (second.language, second.marker) == ("", "")


# -- python blocks -------------------------------------------------------------------------------


@pytest.fixture
def folder_with_results(tmp_path) -> Path:
    from click.testing import CliRunner

    from benchsuite.cli import main

    args = ["run", "-m", "cce", "-t", "digits{width = 16}", "--noise", "symmetric:0.2", "--epochs", "2", "--seeds", "0"]
    results = str(tmp_path / "benchsuite-results" / "results.sqlite")
    result = CliRunner().invoke(main, [*args, "--results", results, "--no-progress", "--no-leaderboard"])
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.mark.parametrize("block", blocks_of("python"), ids=str)
def test_python_block_runs(block, folder_with_results, monkeypatch):
    monkeypatch.chdir(folder_with_results)
    namespace: dict = {}
    exec(compile(block.code, str(block), "exec"), namespace)
    if "runs" in namespace:  # the Results example: one run of 2 epochs, read back
        runs, curves = namespace["runs"], namespace["curves"]
        assert len(runs) == 1 and runs.method.iloc[0] == "cce" and runs.noise_rate.iloc[0] == 0.2
        assert sorted(curves.epoch) == [1, 2]


# -- example packages ----------------------------------------------------------------------------

#: What each package's own tests give: the contract checks of two settings of each method, with
#: the checks that do not apply listed by the pytest plugin.
PACKAGE_OUTCOMES = {
    "focal": ("10 passed, 6 skipped", "benchsuite contract checks not applicable (6)"),
    "wine": ("3 passed", ""),
}

#: README packages that are also complete packages under examples/ (the same files, byte for byte).
EXAMPLE_FOLDERS = {"wine": ROOT / "examples" / "benchsuite-wine"}


def packages() -> dict[str, dict[str, str]]:
    files: dict[str, dict[str, str]] = {}
    for block in blocks_of("package"):
        name, path = block.args
        files.setdefault(name, {})[path] = block.code
    return files


def install_package(name: str, files: dict[str, str], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    package = tmp_path / name
    for path, code in files.items():
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(code)
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target", str(site), str(package)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return package, {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_every_package_is_complete():
    assert set(packages()) == set(PACKAGE_OUTCOMES)
    for name, files in packages().items():
        assert "pyproject.toml" in files and any(p.startswith("tests/") for p in files), name
        assert re.search(r"^version = ", files["pyproject.toml"], re.M), f"{name}: pyproject.toml needs a version"


@pytest.mark.parametrize("name", sorted(EXAMPLE_FOLDERS))
def test_readme_package_is_the_example_package(name):
    folder = EXAMPLE_FOLDERS[name]
    for path, code in packages()[name].items():
        assert (folder / path).read_text() == code, f"README's {path} differs from {folder / path}"


@pytest.mark.parametrize("name", sorted(PACKAGE_OUTCOMES))
def test_package_installs_registers_and_passes_its_tests(name, tmp_path):
    package, env = install_package(name, packages()[name], tmp_path)
    listing = run_cli("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    distribution = re.search(r'^name = "(.*)"', packages()[name]["pyproject.toml"], re.M).group(1)
    assert f'"distribution": "{distribution}"' in listing.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        capture_output=True, text=True, env=env, cwd=package,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    counts, summary = PACKAGE_OUTCOMES[name]
    assert counts in result.stdout and summary in result.stdout, result.stdout


# -- grid files and command lines ----------------------------------------------------------------

@pytest.fixture
def slurm_login_node(tmp_path, monkeypatch) -> None:
    """An ``sbatch`` on PATH, as on a cluster's login node (a dry run submits nothing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: not a real cluster' >&2\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(bin_dir), os.environ["PATH"]]))


GRID_FILE = blocks_of("grid")[0]  # the "Grid files" section's example: grid.toml in the commands


def dry_run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``benchsuite ARGS --dry-run`` in this process (the commands only list cells), from ``cwd``;
    its standard output."""
    from click.testing import CliRunner

    from benchsuite.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, [*args, "--dry-run"])
    assert result.exit_code == 0, f"benchsuite {shlex.join(args)} --dry-run:\n{result.output}"
    return result.stdout


def cells_listed(output: str) -> int:
    return int(re.search(r"^(\d+) cells", output, re.M).group(1))


@pytest.mark.parametrize("block", blocks_of("grid"), ids=str)
def test_grid_block_is_valid(block, tmp_path, monkeypatch, slurm_login_node):
    (tmp_path / "grid.toml").write_text(block.code)
    assert cells_listed(dry_run(["run", "grid.toml"], tmp_path, monkeypatch)) > 0


def benchsuite_commands(code: str) -> list[list[str]]:
    """The ``benchsuite`` commands of a shell block (one per line, continued lines joined, or after
    ``&&``), comments dropped."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words and Path(words[0]).name == "benchsuite":
                commands.append(words[1:])
    return commands


def test_benchsuite_commands_are_found():
    code = "python3 -m venv .venv && .venv/bin/benchsuite run\nbenchsuite run -m \"gce{q = 0.5}\" \\\n  --seeds 0  # a comment\n"
    assert benchsuite_commands(code) == [["run"], ["run", "-m", "gce{q = 0.5}", "--seeds", "0"]]


@pytest.mark.parametrize("block", blocks_of("dry-run"), ids=str)
def test_command_block_runs_dry(block, tmp_path, monkeypatch):
    from benchsuite_plugins.cifar.fake_release import write_fake_cifar

    commands = benchsuite_commands(block.code)
    assert commands, f"{block}: no benchsuite command"
    if "grid.toml" in block.args:
        (tmp_path / "grid.toml").write_text(GRID_FILE.code)
    if any(arg.startswith("leaderboards/grids/") for command in commands for arg in command):
        shutil.copytree(ROOT / "leaderboards" / "grids", tmp_path / "leaderboards" / "grids")  # the shipped grids
    if "fake-cifar" in block.args:
        for which in ("cifar10", "cifar100"):
            write_fake_cifar(tmp_path / "data", which)
        commands = [[arg.replace("'/data'", repr(str(tmp_path / "data"))) for arg in command] for command in commands]
    for command in commands:
        assert cells_listed(dry_run(command, tmp_path, monkeypatch)) > 0


@pytest.mark.parametrize("block", blocks_of("run"), ids=str)
def test_command_block_runs(block, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from benchsuite.cli import main

    commands = benchsuite_commands(block.code)
    assert commands, f"{block}: no benchsuite command"
    monkeypatch.chdir(tmp_path)
    outputs = []
    for command in commands:
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, f"benchsuite {shlex.join(command)}:\n{result.output}"
        outputs.append(result.output)
    if any(command[0] == "evaluate" for command in commands):  # the kept-models example
        assert "equal to the stored final metrics" in outputs[1]
        assert json.loads(outputs[2][outputs[2].index("{") : outputs[2].rindex("}") + 1])["which"] == "best"
