"""The plugin catalog: listings from the per-user cache print what the loaded plugins would, and
the cache follows every change of the plugins it describes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
from test_plugins import GOOD as GOOD_PLUGIN

from benchsuite.catalog import CATALOG_FILE, catalog_key, from_host, load_catalog, read_cache, write_cache
from benchsuite.discovery import PluginLoadError
from benchsuite.plugins import get_host, reset_host


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The catalog cache turned on, in a directory of its own; the path of its file."""
    monkeypatch.setenv("BENCHSUITE_PLUGIN_CACHE", "1")
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / CATALOG_FILE


def reload_plugins(module: str) -> None:
    """What a new process sees: the host and the plugin module forgotten."""
    sys.modules.pop(module, None)
    reset_host()


def test_a_cached_catalog_is_the_catalog_of_the_loaded_host(cache):
    fresh = load_catalog()
    assert cache.is_file()
    assert read_cache(cache, catalog_key()) == fresh == from_host(get_host())
    assert {"cce", "gce", "ieg"} <= {m["name"] for m in fresh.methods}
    assert "digits" in [t["name"] for t in fresh.tasks]
    assert fresh.methods[0]["plugin"]["distribution"] == "benchsuite"


def test_the_cache_is_rebuilt_when_a_plugin_file_changes(cache, install_plugin, tmp_path):
    install_plugin("throwaway-plugin", "throwaway_plugin", GOOD_PLUGIN)
    first = load_catalog()
    assert [m["summary"] for m in first.methods if m["name"] == "smooth_ce"] == ["label-smoothed cross entropy"]
    key = catalog_key()
    source = tmp_path / "site" / "throwaway_plugin.py"
    source.write_text(source.read_text().replace("label-smoothed cross entropy", "cross entropy, smoothed"))
    reload_plugins("throwaway_plugin")
    assert catalog_key() != key
    second = load_catalog()
    assert [m["summary"] for m in second.methods if m["name"] == "smooth_ce"] == ["cross entropy, smoothed"]
    assert read_cache(cache, catalog_key()) == second


def test_a_failed_plugin_is_reported_from_the_cache_and_seen_again_once_fixed(cache, install_plugin, tmp_path, monkeypatch):
    install_plugin("broken-plugin", "broken_plugin", "raise RuntimeError('boom')")
    load_catalog()
    reload_plugins("broken_plugin")
    cached = read_cache(cache, catalog_key())
    assert cached is not None and [(f["name"], f["distribution"]) for f in cached.failed] == [("broken_plugin", "broken-plugin")]
    assert "boom" in cached.failed[0]["error"] and "RuntimeError" in cached.failed[0]["traceback"]
    monkeypatch.setenv("BENCHSUITE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="boom"):  # strict: a cached failure is raised, not printed
        load_catalog()
    monkeypatch.delenv("BENCHSUITE_STRICT_PLUGINS")
    (tmp_path / "site" / "broken_plugin.py").write_text(GOOD_PLUGIN)
    reload_plugins("broken_plugin")
    fixed = load_catalog()
    assert fixed.failed == [] and "smooth_ce" in [m["name"] for m in fixed.methods]


def test_installing_a_distribution_changes_the_key(cache, install_plugin):
    key = catalog_key()
    install_plugin("throwaway-plugin", "throwaway_plugin", GOOD_PLUGIN)
    assert catalog_key() != key


def test_the_selection_of_plugins_is_part_of_the_key(cache, monkeypatch):
    every = load_catalog()
    monkeypatch.setenv("BENCHSUITE_PLUGINS", "cce")
    reset_host()
    selected = load_catalog()
    assert [m["plugin"]["name"] for m in selected.methods] == ["cce"] * len(selected.methods)
    assert len(every.methods) > len(selected.methods) > 0


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": "benchsuite-plugin-catalog", "format_versi', b"[1, 2]"])
def test_a_corrupt_catalog_is_ignored_and_rewritten(cache, content):
    cache.parent.mkdir(parents=True)
    cache.write_bytes(content)
    assert read_cache(cache, catalog_key()) is None
    catalog = load_catalog()
    if content.startswith(b'{"format": "benchsuite-plugin-catalog"') or not content:
        assert read_cache(cache, catalog_key()) == catalog  # ours (or empty): rebuilt
    else:
        assert cache.read_bytes() == content  # not ours: left alone


def test_a_catalog_of_another_format_version_or_key_is_not_used(cache):
    catalog = load_catalog()
    stored = json.loads(cache.read_text())
    assert read_cache(cache, "another key") is None
    stored["format_version"] += 1
    cache.write_text(json.dumps(stored))
    assert read_cache(cache, catalog_key()) is None
    stored["format_version"] -= 1
    stored["catalog"]["methods"] = "not a list"
    cache.write_text(json.dumps(stored))
    assert read_cache(cache, catalog_key()) is None
    assert load_catalog() == catalog


def test_an_unwritable_cache_directory_fails_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("mine")
    monkeypatch.setenv("BENCHSUITE_PLUGIN_CACHE", "1")
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(blocker / "cache"))
    assert not write_cache(blocker / "cache" / CATALOG_FILE, "key", from_host(get_host()))
    assert "cce" in [m["name"] for m in load_catalog().methods]
    assert blocker.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file"]


def test_turned_off_the_cache_writes_nothing(cache, monkeypatch):
    monkeypatch.setenv("BENCHSUITE_PLUGIN_CACHE", "0")
    assert "cce" in [m["name"] for m in load_catalog().methods]
    assert not cache.parent.exists()


LISTING = """
import json, sys
from benchsuite.cli import main
outputs = []
for command in (["plugins"], ["plugins", "--json", "-v"], ["methods"], ["methods", "--json"], ["tasks"], ["tasks", "--json"]):
    try:
        main(command)
    except SystemExit as exc:
        assert not exc.code, exc.code
print(json.dumps({"torch": "torch" in sys.modules, "plugins": "benchsuite.plugins" in sys.modules}), file=sys.stderr)
"""


def test_listings_from_the_cache_are_those_of_the_host_and_import_no_plugin(cache, install_plugin):
    install_plugin("broken-plugin", "broken_plugin", "raise RuntimeError('boom')")

    def listing(cached: str) -> tuple[str, dict[str, bool]]:
        env = {**os.environ, "BENCHSUITE_PLUGIN_CACHE": cached}
        done = subprocess.run([sys.executable, "-c", LISTING], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])

    uncached, loaded = listing("0")
    assert loaded == {"torch": False, "plugins": True} and not cache.parent.exists()  # the plugins, not torch
    filled, _ = listing("1")
    cached, imported = listing("1")
    assert imported == {"torch": False, "plugins": False}
    assert cached == filled == uncached
    assert "broken_plugin" in cached and "boom" in cached and "smooth_ce" not in cached
    assert json.loads(cache.read_text())["catalog"] == asdict(load_catalog())
