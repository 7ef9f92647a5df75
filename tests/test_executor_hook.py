"""The ``register_executors`` hook: the built-in executors register through it as an internal
plugin, a third-party plugin adds its own (usable from a grid and ``--executor``), and a bad
registration sets the plugin aside."""

from __future__ import annotations

import pytest
from conftest import plugin_module, run_cli, set_aside

from benchsuite.executors import BUILTIN_EXECUTORS, PoolExecutor
from benchsuite.grid import GridError, grid_from_dict
from benchsuite.plugins import PluginHost, get_host

#: A third-party executor: the local one under another name, counting the cells it ran in a file.
COUNTING = """
from pathlib import Path

from benchsuite import Param, hookimpl
from benchsuite.executors import LocalExecutor


class Counting(LocalExecutor):
    name = "counting"
    summary = "in this process, one cell after the other, each noted in a file"
    parameters = {"log": Param("", "file that gets one line per cell run", type=str)}

    def wait(self, timeout):
        results = super().wait(timeout)
        with Path(self.log).open("a") as log:
            log.writelines(f"{result.spec.method} {result.record.status}\\n" for result in results)
        return results


@hookimpl
def register_executors(register):
    register(Counting)
"""


def test_the_builtin_executors_register_through_the_hook():
    host = get_host()
    assert host.plugins["benchsuite.executors"].executors == [cls.name for cls in BUILTIN_EXECUTORS] == ["local", "pool", "ray", "slurm"]
    assert host.executor_class("pool") is PoolExecutor and host.executors.origin("local") == "benchsuite.executors"


def test_a_plugin_s_executor_is_checked_and_usable_in_a_grid():
    host = get_host()
    assert host.add_plugin(plugin_module(COUNTING), "third_party")
    assert host.plugins["third_party"].executors == ["counting"]
    grid = grid_from_dict({"method": ["cce"], "task": ["digits"], "executor": {"name": "counting", "log": "x.log"}})
    assert grid.executor.name == "counting" and grid.executor.params == {"log": "x.log"}
    with pytest.raises(GridError, match=r"executor \(counting\): .*logg"):
        grid_from_dict({"method": ["cce"], "task": ["digits"], "executor": {"name": "counting", "logg": "x.log"}})
    host.remove_plugin("third_party")
    with pytest.raises(GridError, match="unknown executor 'counting'"):
        grid_from_dict({"method": ["cce"], "task": ["digits"], "executor": "counting"})


@pytest.mark.parametrize(
    "source, error",
    [
        ("from benchsuite.executors import LocalExecutor\nclass Pool(LocalExecutor):\n    name = 'pool'\n",
         "executor 'pool' is already registered by plugin 'benchsuite.executors'"),
        ("class NotOne:\n    name = 'nope'\n", "register() expects a subclass of benchsuite.executors.base.Executor"),
        ("from benchsuite.executors import LocalExecutor\nclass Bad(LocalExecutor):\n    name = 'Bad Name'\n", "must be a lowercase identifier"),
    ],
)  # fmt: skip
def test_a_bad_executor_sets_its_plugin_aside(source, error):
    host = PluginHost()
    host.load_entry_points(set())
    registering = (source + "\nfrom benchsuite import hookimpl\n@hookimpl\ndef register_executors(register):\n"
                   f"    register({source.split('class ')[1].split('(')[0].split(':')[0]})\n")  # fmt: skip
    assert error in set_aside(host, registering)
    assert host.executor_class("pool") is PoolExecutor


def test_run_uses_a_plugin_s_executor(install_plugin, tmp_path):
    install_plugin("counting-executor", "counting_executor", COUNTING)
    log = tmp_path / "cells.log"
    result = run_cli("run", "-m", "cce", "-t", "digits", "--noise", "symmetric:0.2", "--seeds", "0", "--epochs", "2", "--no-progress", "--no-leaderboard",
                     "--executor", f'counting{{log = "{log}"}}', "--results", str(tmp_path / "r.sqlite"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert log.read_text() == "cce completed\n"
    assert "counting" in run_cli("plugins").stdout

