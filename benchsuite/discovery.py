"""Finding plugins without importing them: the entry-point group, the order plugins load in, and
the environment's choice of plugins and strictness.

Shared by the plugin host (``benchsuite.plugins``), which imports the plugins, and the plugin
catalog (``benchsuite.catalog``), which must tell whether anything changed without importing one.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass

from .errors import BenchsuiteError

ENTRY_POINT_GROUP = "benchsuite"


class PluginLoadError(BenchsuiteError, RuntimeError):
    """A plugin could not be loaded and strict loading was asked for."""


@dataclass(frozen=True)
class EntryPoint:
    """An entry point of the group with the name and version of the distribution that declares it."""

    entry_point: importlib.metadata.EntryPoint
    distribution: str | None
    version: str | None

    @property
    def name(self) -> str:
        return self.entry_point.name


@dataclass(frozen=True)
class UnreadableDistribution:
    """A distribution that declares entry points in the group in an ``entry_points.txt`` that does
    not parse: none of its plugins can be loaded, and the host reports it as failed."""

    distribution: str | None
    version: str | None
    error: str


@dataclass(frozen=True)
class Discovery:
    """What the installed distributions declare in the group, read without importing a plugin."""

    entry_points: list[EntryPoint]
    unreadable: list[UnreadableDistribution]


#: The section header of the group in an ``entry_points.txt``, to tell whether one that does not
#: parse was meant for benchsuite at all.
_GROUP_HEADER = re.compile(rf"^\s*\[\s*{re.escape(ENTRY_POINT_GROUP)}\s*\]\s*$", re.MULTILINE)


def discover() -> Discovery:
    """Every entry point of the group, in loading order (built-in plugins first, then by name, so
    that a third-party clash never shadows a built-in), and every distribution whose declaration
    of the group cannot be read.

    Distributions are walked one by one rather than through ``importlib.metadata.entry_points()``,
    for two reasons. That function keeps one distribution per name, taking the name from the
    metadata directory's name up to its first ``-``: a third-party ``benchsuite-hints-0.1.dist-info``
    earlier on ``sys.path`` then counts as benchsuite itself and every built-in plugin vanished.
    And one distribution's malformed ``entry_points.txt`` raised out of it, for every plugin.
    Here a distribution is shadowed only by an earlier one of the same *metadata* name (the one
    Python imports), and a distribution that cannot be read is set aside with its error.
    Only the distributions that declare the group have their metadata read (``Distribution.name``
    parses the whole metadata file, README included, on every call)."""
    found: list[EntryPoint] = []
    unreadable: list[UnreadableDistribution] = []
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        try:
            declared = list(dist.entry_points.select(group=ENTRY_POINT_GROUP))
        except Exception as exc:  # a malformed entry_points.txt of any distribution
            if _declares_group(dist):
                unreadable.append(UnreadableDistribution(*_name_and_version(dist), f"its entry_points.txt does not parse: {exc!r}"))
            continue
        if not declared:
            continue
        name, version = _name_and_version(dist)
        key = _normalized(name) if name else f"unnamed distribution {len(found)}"
        if key in seen:
            continue  # shadowed by the distribution of that name earlier on sys.path
        seen.add(key)
        found.extend(EntryPoint(ep, name, version) for ep in declared)
    found.sort(key=lambda ep: (ep.distribution != "benchsuite", ep.name, ep.distribution or ""))
    return Discovery(found, unreadable)


def _declares_group(dist: importlib.metadata.Distribution) -> bool:
    """Whether the raw ``entry_points.txt`` of ``dist`` has a section for the group."""
    try:
        return _GROUP_HEADER.search(dist.read_text("entry_points.txt") or "") is not None
    except (OSError, ValueError):  # unreadable, or not UTF-8: nothing says it is ours
        return False


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """Name and version from the metadata, or None for what cannot be read (not UTF-8, absent)."""
    try:
        metadata = dist.metadata
    except (OSError, ValueError):
        return None, None
    return (metadata["Name"], metadata["Version"]) if metadata is not None else (None, None)


def _normalized(name: str) -> str:
    """The distribution name as PEP 503 compares names: ``Foo.Bar``, ``foo_bar``, ``foo-bar`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def selected_plugins() -> set[str] | None:
    """The entry points ``BENCHSUITE_PLUGINS=a,b`` names (empty: none), or None to load them all."""
    selection = os.environ.get("BENCHSUITE_PLUGINS")
    return None if selection is None else {s.strip() for s in selection.split(",") if s.strip()}


def strict_loading() -> bool:
    """Whether ``BENCHSUITE_STRICT_PLUGINS`` asks for a failed plugin to be an error."""
    return os.environ.get("BENCHSUITE_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")
