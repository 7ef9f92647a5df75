"""Shared fixtures: a fresh plugin host per test, throw-away installed plugins, a CLI runner."""

from __future__ import annotations

import os

# Tiny models on a 2-core machine, often with a second process (a CLI subprocess, a concurrent
# driver) running beside the test: one thread per process avoids oversubscription, which was
# measured to make small models 5-20x slower. Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The tests must not write the user's plugin catalog cache (~/.cache/benchsuite); the tests of the
# cache turn it on in a temporary directory.
os.environ["BENCHSUITE_PLUGIN_CACHE"] = "0"
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from benchsuite.plugins import PluginHost, reset_host

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_host(monkeypatch):
    """Every test starts from the environment's plugins, loaded anew, with no env overrides."""
    monkeypatch.delenv("BENCHSUITE_PLUGINS", raising=False)
    monkeypatch.delenv("BENCHSUITE_STRICT_PLUGINS", raising=False)
    reset_host()
    yield
    reset_host()


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a throw-away plugin distribution: a module plus a dist-info with an entry point in
    the ``benchsuite`` group, on ``sys.path`` (and ``PYTHONPATH`` for subprocesses)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))

    def install(
        dist: str, module: str, source: str, entry_name: str | None = None, version: str = "1.0", entry_points: str | None = None
    ) -> None:
        """The metadata directory is named ``{dist}-{version}.dist-info`` with ``dist`` as given
        (not normalised, as some installers leave it); ``entry_points`` replaces the generated
        ``entry_points.txt``."""
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(entry_points or f"[benchsuite]\n{entry_name or module} = {module}\n")
        sys.modules.pop(module, None)
        reset_host()

    return install


def plugin_module(source: str, name: str = "inline_plugin") -> types.ModuleType:
    """A plugin module made in memory from ``source``, for ``PluginHost.add_plugin`` (no install)."""
    module = types.ModuleType(name)
    exec(source, module.__dict__)
    return module


def set_aside(host: PluginHost, source: str, name: str = "third_party") -> str:
    """Add the plugin of ``source`` to ``host`` as ``name``, check that the host set it aside
    (not added, not listed as loaded, listed as failed) and return its error."""
    assert not host.add_plugin(plugin_module(source, name), name)
    assert name not in host.plugins
    return host.failed[name].error


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``benchsuite ARGS`` in a subprocess, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "benchsuite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def cli_in_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``benchsuite ARGS`` run by this process, for tests that are about what the command does,
    not about its process: the same exit status, standard output and standard error as
    :func:`run_cli`, without paying Python, torch and the plugins' imports again (several seconds
    a call on CI's two cores). A bug raises here with its traceback instead of exiting 1."""
    from click.testing import CliRunner

    from benchsuite.cli import main

    reset_host()  # the plugins a new process would load, env overrides included
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, prog_name="benchsuite")
    reset_host()
    return subprocess.CompletedProcess(["benchsuite", *args], result.exit_code, result.stdout, result.stderr)


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``benchsuite ARGS`` started in the background, interruptible with SIGINT as from a terminal.

    A shell without job control starts background commands with SIGINT ignored, and the ignored
    disposition is inherited: the Ctrl-C tests would then pass or fail by how CI was launched.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "benchsuite", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
