"""The plugin catalog: what every plugin registers, as ``benchsuite plugins``, ``methods`` and
``tasks`` print it, kept in a per-user cache so that listing imports no plugin when nothing
changed.

Loading the plugins imports every plugin module (the built-in ones import torch only when a cell
trains or a model is built, but a third-party plugin may import anything at its top). What the
listing commands print depends only on the plugin code, the installed distributions and
benchsuite itself, so the catalog built from a loaded host is stored with a key over all of them,
computed without importing any plugin:

- benchsuite's version and the size and modification time of each of its source files;
- the Python interpreter (``sys.version``, ``sys.prefix``);
- ``BENCHSUITE_PLUGINS`` (the selection) and every entry point of the group, in loading order,
  with its distribution and version, and every distribution whose declaration of the group does
  not parse, with its error;
- the size and modification time of every ``.py`` file of each entry point's top-level package
  (all of ``benchsuite_plugins`` for a built-in: a wider net than its code fingerprint, at the
  cost of one ``stat`` per file instead of parsing them);
- the names of the ``*.dist-info`` / ``*.egg-info`` entries on ``sys.path``: installing,
  upgrading or removing any distribution (a dependency a plugin failed to import, say) changes it.

A matching cache is used as it is; anything else (no file, another key, a file that does not
parse, another format) loads the plugins, prints from the fresh catalog and writes it anew, so
cached and fresh listings print the same bytes. What the key cannot see — a dependency edited in
place without a version change, a plugin whose registrations depend on the environment — is
what ``BENCHSUITE_PLUGIN_CACHE=0`` is for.

Environment:
  ``BENCHSUITE_CACHE_DIR``      root of benchsuite's caches (default ``~/.cache/benchsuite``); the
                                catalog is ``plugin-catalog.json`` in it
  ``BENCHSUITE_PLUGIN_CACHE=0`` neither read nor write the catalog cache

The file is written atomically (a temporary file in the same directory, then renamed), only
where no file, an empty one or a catalog file is: a file of another format at that path is left
alone (and the listing then loads the plugins every time). A cache that cannot be read or written never fails a command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import __version__
from .atomic import is_ours, write_text_atomically
from .discovery import discover, strict_loading

if TYPE_CHECKING:
    from .plugins import PluginHost

CATALOG_FORMAT = "benchsuite-plugin-catalog"
#: Bumped whenever the layout of the stored catalog changes.
CATALOG_FORMAT_VERSION = 1
CATALOG_FILE = "plugin-catalog.json"
_HEADER = f'{{"format": "{CATALOG_FORMAT}"'


@dataclass
class Catalog:
    """What the listing commands print, as plain JSON values (lists, dicts, strings, numbers)."""

    #: ``PluginInfo`` and ``FailedPlugin`` fields of each plugin, in loading order.
    plugins: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    #: ``describe()`` of every method and task, by name, with the plugin that registered it.
    methods: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


def cache_dir() -> Path:
    """Root of benchsuite's on-disk caches: ``$BENCHSUITE_CACHE_DIR``, else ``~/.cache/benchsuite``."""
    configured = os.environ.get("BENCHSUITE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "benchsuite"


def cache_enabled() -> bool:
    return os.environ.get("BENCHSUITE_PLUGIN_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def from_host(host: PluginHost) -> Catalog:
    """The catalog of a loaded host, normalised to JSON values (what a cached one reads back)."""
    described: dict[str, list[dict[str, Any]]] = {}
    for kind, registry in (("methods", host.methods), ("tasks", host.tasks)):
        entries = []
        for name in registry.names():
            info = registry.get(name).describe()
            plugin = host.plugins[registry.origin(name)]
            info["plugin"] = {"name": plugin.name, "distribution": plugin.distribution, "version": plugin.version}
            entries.append(info)
        described[kind] = entries
    catalog = Catalog(
        plugins=[asdict(p) for p in host.plugins.values()],
        failed=[asdict(f) for f in host.failed.values()],
        methods=described["methods"],
        tasks=described["tasks"],
    )
    return Catalog(**json.loads(json.dumps(asdict(catalog), default=str)))


def load_catalog() -> Catalog:
    """The catalog of this environment's plugins: from the cache when its key matches, else from
    the loaded plugin host (and then cached). Strict loading (``BENCHSUITE_STRICT_PLUGINS``)
    with a failed plugin raises ``PluginLoadError`` as the host does."""
    use_cache = cache_enabled()
    path = cache_dir() / CATALOG_FILE
    key = catalog_key() if use_cache else ""
    if use_cache:
        cached = read_cache(path, key)
        if cached is not None and not (cached.failed and strict_loading()):
            return cached
    from .plugins import get_host  # imports every plugin module (not torch)

    catalog = from_host(get_host())
    if use_cache:
        write_cache(path, key, catalog)
    return catalog


def read_cache(path: Path, key: str) -> Catalog | None:
    """The catalog stored at ``path`` under ``key``, or None (absent, stale, unreadable, foreign)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["format"] != CATALOG_FORMAT or stored["format_version"] != CATALOG_FORMAT_VERSION or stored["key"] != key:
            return None
        catalog = Catalog(**stored["catalog"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lists = (catalog.plugins, catalog.failed, catalog.methods, catalog.tasks)
    if not all(isinstance(entries, list) and all(isinstance(e, dict) for e in entries) for entries in lists):
        return None
    return catalog


def write_cache(path: Path, key: str, catalog: Catalog) -> bool:
    """Store ``catalog`` at ``path`` atomically; False (and nothing written) when the directory
    cannot be written or ``path`` holds a file that is not a catalog."""
    if not is_ours(path, _HEADER.encode()):
        return False
    text = json.dumps(
        {"format": CATALOG_FORMAT, "format_version": CATALOG_FORMAT_VERSION, "key": key, "catalog": asdict(catalog)}
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, text)
    except OSError:
        return False
    return True


def catalog_key() -> str:
    """A hash of everything the catalog depends on (see the module docstring); imports nothing."""
    digest = hashlib.sha256()

    def add(*parts: object) -> None:
        digest.update(("\0".join(map(str, parts)) + "\n").encode("utf-8", "surrogateescape"))

    add("benchsuite", __version__, CATALOG_FORMAT_VERSION, sys.version, sys.prefix)
    add("selection", os.environ.get("BENCHSUITE_PLUGINS"))
    for name, size, mtime in _source_stats(Path(__file__).parent):
        add("host", name, size, mtime)
    roots: dict[str, list[tuple[str, int, int]]] = {}
    discovered = discover()
    for broken in discovered.unreadable:
        add("unreadable", broken.distribution, broken.version, broken.error)
    for found in discovered.entry_points:
        ep = found.entry_point
        add("entry point", ep.name, ep.value, found.distribution, found.version)
        root = ep.value.partition(":")[0].strip().partition(".")[0]
        if root not in roots:
            roots[root] = _plugin_source_stats(root)
        for name, size, mtime in roots[root]:
            add("source", root, name, size, mtime)
    for name in _installed_distributions():
        add("distribution", name)
    return digest.hexdigest()


def _plugin_source_stats(root: str) -> list[tuple[str, int, int]]:
    """Size and modification time of the sources of the top-level package or module ``root``,
    found without importing it."""
    try:
        spec = importlib.util.find_spec(root)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    folders = list(spec.submodule_search_locations or [])
    if folders:
        return [entry for folder in folders for entry in _source_stats(Path(folder))]
    return list(_file_stats([Path(spec.origin)])) if spec.origin and os.path.isfile(spec.origin) else []


def _source_stats(folder: Path) -> list[tuple[str, int, int]]:
    return list(_file_stats(sorted(folder.rglob("*.py")), relative_to=folder))


def _file_stats(paths: Iterable[Path], relative_to: Path | None = None) -> Iterable[tuple[str, int, int]]:
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        yield (str(path.relative_to(relative_to) if relative_to else path), stat.st_size, stat.st_mtime_ns)


def _installed_distributions() -> list[str]:
    """The distribution metadata directories on ``sys.path`` (their names carry name and version),
    with the modification time of each (a reinstall of the same version rewrites it)."""
    found = []
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                for item in listing:
                    if item.name.endswith((".dist-info", ".egg-info")):
                        found.append(f"{entry}/{item.name}:{item.stat().st_mtime_ns}")
        except OSError:
            continue
    return sorted(found)
