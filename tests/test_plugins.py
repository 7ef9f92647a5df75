"""Plugin discovery through entry points: built-ins like third-party plugins, broken ones set aside."""

import json

import pytest
from conftest import cli_in_process, plugin_module, run_cli

import benchsuite
from benchsuite.plugins import PluginHost, PluginLoadError, get_host
from benchsuite.registry import UnknownNameError

GOOD = """
import torch.nn.functional as F
from benchsuite import LossMethod, LossOutput, hookimpl

class Smooth(LossMethod):
    name = "smooth_ce"
    summary = "label-smoothed cross entropy"

    def compute(self, logits, targets):
        return LossOutput(F.cross_entropy(logits, targets, label_smoothing=0.1))

@hookimpl
def register_methods(register):
    register(Smooth)
"""


def test_builtins_are_loaded_through_the_entry_point_group():
    host = get_host()
    assert host.plugins["cce"].distribution == "benchsuite"
    assert host.plugins["digits"].tasks == ["digits"]
    assert "cce" in benchsuite.list_methods() and "digits" in benchsuite.list_tasks()


def test_a_third_party_plugin_is_discovered_and_usable(install_plugin):
    install_plugin("throwaway-plugin", "throwaway_plugin", GOOD)
    host = get_host()
    assert host.plugins["throwaway_plugin"].distribution == "throwaway-plugin"
    assert host.plugins["throwaway_plugin"].methods == ["smooth_ce"]
    method = benchsuite.load_method("smooth_ce")
    import torch

    assert method.loss(torch.zeros(2, 3), torch.tensor([0, 1])).item() == pytest.approx(1.0986, abs=1e-4)


@pytest.mark.parametrize(
    "source, error",
    [
        ("raise RuntimeError('boom at import')", "import of 'broken_plugin' failed: RuntimeError('boom at import')"),
        (
            "from benchsuite import hookimpl\n@hookimpl\ndef register_methods(register):\n    register(object)\n",
            "register() expects a subclass of benchsuite.method.Method",
        ),
        (
            "from benchsuite import hookimpl\n@hookimpl\ndef register_method(register):\n    pass\n",
            "implements unknown hook 'register_method'",
        ),
        (
            "from benchsuite import hookimpl\n@hookimpl\ndef register_methods(register, extra):\n    pass\n",
            "invalid plugin",
        ),
        (
            "from benchsuite import hookimpl\n@hookimpl\ndef register_methods(register):\n    raise ValueError('bad hook')\n",
            "bad hook",
        ),
    ],
    ids=["import-error", "not-a-method", "unknown-hook", "bad-signature", "hook-raises"],
)
def test_a_broken_plugin_is_set_aside_and_the_rest_works(install_plugin, source, error):
    install_plugin("broken-plugin", "broken_plugin", source)
    host = get_host()
    assert "broken_plugin" in host.failed and "broken_plugin" not in host.plugins
    assert error in host.failed["broken_plugin"].error
    assert host.failed["broken_plugin"].distribution == "broken-plugin"
    assert "cce" in benchsuite.list_methods()  # everything else keeps working


def test_a_distribution_named_after_benchsuite_hides_no_builtin(install_plugin):
    # importlib.metadata.entry_points() keeps one distribution per name read from the metadata
    # directory up to its first "-": benchsuite-hints-1.0.dist-info first on sys.path counted as
    # benchsuite itself and every built-in vanished, none reported failed.
    builtins = set(get_host().plugins)
    install_plugin("benchsuite-hints", "benchsuite_hints", GOOD)
    host = get_host()
    assert set(host.plugins) == builtins | {"benchsuite_hints"} and not host.failed
    assert host.plugins["cce"].distribution == "benchsuite" and host.plugins["cce"].version == benchsuite.__version__
    assert (host.plugins["benchsuite_hints"].distribution, host.plugins["benchsuite_hints"].version) == ("benchsuite-hints", "1.0")
    listing = json.loads(run_cli("plugins", "--json").stdout)
    assert {p["name"] for p in listing["loaded"]} == builtins | {"benchsuite_hints"} and listing["failed"] == []
    methods = {m["name"]: m["plugin"]["distribution"] for m in json.loads(run_cli("methods", "--json").stdout)}
    assert methods["cce"] == "benchsuite" and methods["smooth_ce"] == "benchsuite-hints"
    assert run_cli("--version").stdout == f"benchsuite, version {benchsuite.__version__}\n"  # not the plugin's 1.0


def test_a_distribution_whose_entry_points_do_not_parse_is_reported_and_the_rest_load(install_plugin):
    builtins = set(get_host().plugins)
    install_plugin("garbled-plugin", "garbled_plugin", GOOD, entry_points="[benchsuite]\nthis line has no equals sign\n")
    install_plugin("unrelated-tool", "unrelated_tool", "", entry_points="[console_scripts]\nno equals sign either\n")
    install_plugin("throwaway-plugin", "throwaway_plugin", GOOD.replace('"smooth_ce"', '"smooth_ce2"'))
    host = get_host()
    assert set(host.plugins) == builtins | {"throwaway_plugin"}
    assert list(host.failed) == ["garbled-plugin"]  # the unrelated distribution is none of benchsuite's business
    failed = host.failed["garbled-plugin"]
    assert (failed.distribution, failed.version) == ("garbled-plugin", "1.0")
    assert failed.error.startswith("its entry_points.txt does not parse: ")


@pytest.mark.parametrize("entry_name", ["cce", "benchsuite.noise"])
def test_a_third_party_entry_point_with_a_taken_name_is_reported_not_skipped(install_plugin, entry_name):
    install_plugin("taken-name", "taken_name", GOOD, entry_name=entry_name)
    host = get_host()
    assert host.plugins[entry_name].distribution == "benchsuite"  # the built-in keeps its name
    assert host.failed[entry_name].distribution == "taken-name"
    assert "smooth_ce" not in host.methods


def test_a_plugin_registering_one_invalid_class_registers_nothing(install_plugin):
    install_plugin(
        "half-plugin",
        "half_plugin",
        GOOD.replace("register(Smooth)", "register(Smooth)\n    register(int)"),
    )
    assert "smooth_ce" not in get_host().methods
    assert "half_plugin" in get_host().failed


def test_a_duplicate_name_does_not_shadow_the_builtin(install_plugin):
    install_plugin("clash-plugin", "clash_plugin", GOOD.replace('"smooth_ce"', '"cce"'))
    host = get_host()
    assert host.methods.origin("cce") == "cce"
    assert "already registered" in host.failed["clash_plugin"].error


def test_strict_mode_turns_a_broken_plugin_into_an_error(install_plugin, monkeypatch):
    install_plugin("broken-plugin", "broken_plugin", "raise ImportError('missing dependency')")
    monkeypatch.setenv("BENCHSUITE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'broken_plugin' failed to load"):
        get_host()


def test_benchsuite_plugins_restricts_loading(install_plugin, monkeypatch):
    install_plugin("throwaway-plugin", "throwaway_plugin", GOOD)
    monkeypatch.setenv("BENCHSUITE_PLUGINS", "digits,throwaway_plugin")
    host = get_host()
    assert sorted(host.plugins) == ["benchsuite.executors", "benchsuite.noise", "digits", "throwaway_plugin"]  # the host's own always load
    assert benchsuite.list_methods() == ["smooth_ce"]


def test_benchsuite_plugins_naming_a_missing_plugin_is_reported(monkeypatch):
    monkeypatch.setenv("BENCHSUITE_PLUGINS", "cce,nosuch")
    host = get_host()
    assert "no such entry point is installed" in host.failed["nosuch"].error


def test_plugins_command_lists_loaded_and_failed(install_plugin):
    install_plugin("throwaway-plugin", "throwaway_plugin", GOOD)
    install_plugin("broken-plugin", "broken_plugin", "raise RuntimeError('boom')")
    result = cli_in_process("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    loaded = {p["name"]: p for p in listing["loaded"]}
    assert loaded["throwaway_plugin"]["methods"] == ["smooth_ce"]
    assert loaded["throwaway_plugin"]["version"] == "1.0"
    assert [f["name"] for f in listing["failed"]] == ["broken_plugin"]
    text = cli_in_process("plugins").stdout
    assert "Failed to load" in text and "broken_plugin" in text and "boom" in text


def test_in_process_plugins_can_be_added_and_removed():
    host = PluginHost()
    host.load_entry_points()
    assert host.add_plugin(plugin_module(GOOD, "inline"), "inline")
    assert "smooth_ce" in host.methods
    host.remove_plugin("inline")
    with pytest.raises(UnknownNameError, match="unknown method 'smooth_ce'"):
        host.method_class("smooth_ce")


def test_unknown_names_list_close_matches():
    with pytest.raises(UnknownNameError, match="unknown method 'ccee'; did you mean 'cce'"):
        benchsuite.load_method("ccee")
    with pytest.raises(UnknownNameError, match="unknown task 'digit'; did you mean 'digits'"):
        benchsuite.load_task("digit")


def test_methods_and_tasks_commands_describe_declarations():
    methods = json.loads(cli_in_process("methods", "--json").stdout)
    cce = next(m for m in methods if m["name"] == "cce")
    assert cce["level"] == "loss" and cce["plugin"]["distribution"] == "benchsuite"
    tasks = json.loads(cli_in_process("tasks", "--json").stdout)
    digits = next(t for t in tasks if t["name"] == "digits")
    assert digits["num_classes"] == 10 and digits["provides"] == ["clean_validation", "strong_view", "trusted_set"]
    assert digits["parameters"]["width"]["allowed"] == "int, x ≥ 1"


def test_run_warns_of_a_plugin_that_failed_to_load(install_plugin, tmp_path):
    install_plugin("broken-plugin", "broken_plugin", "raise RuntimeError('boom')", version="2.1")
    result = cli_in_process("run", "--dry-run", "-m", "cce", "-t", "digits", "--results", str(tmp_path / "r.sqlite"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: plugin")]
    assert warnings == [
        "warning: plugin 'broken_plugin' (broken-plugin 2.1) failed to load; its methods and tasks are left out: "
        "import of 'broken_plugin' failed: RuntimeError('boom') (`benchsuite plugins -v` shows the traceback)"
    ]
    assert "broken_plugin" not in result.stdout
    quiet = cli_in_process("run", "--dry-run", "-m", "cce", "-t", "digits", "--results", str(tmp_path / "r.sqlite"), env={"BENCHSUITE_PLUGINS": "cce,digits"})
    assert quiet.returncode == 0 and "warning: plugin" not in quiet.stderr
