"""Finding plugins without importing them: the entry-point group, the order plugins load in, and
the environment's choice of plugins and strictness.

Shared by the plugin host (``benchsuite.plugins``), which imports the plugins, and the plugin
catalog (``benchsuite.catalog``), which must tell whether anything changed without importing one.
"""

from __future__ import annotations

import importlib.metadata
import os
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


def entry_points() -> list[EntryPoint]:
    """Every entry point of the group, in loading order: built-in plugins first, then by name, so
    that a third-party clash never shadows a built-in.

    Each distribution's metadata is read once (``Distribution.name`` parses the whole metadata
    file, README included, on every call)."""
    read: dict[int, tuple[str | None, str | None]] = {}
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        if id(dist) not in read:
            metadata = dist.metadata if dist is not None else None
            read[id(dist)] = (metadata["Name"], metadata["Version"]) if metadata is not None else (None, None)
        found.append(EntryPoint(ep, *read[id(dist)]))
    return sorted(found, key=lambda ep: (ep.distribution != "benchsuite", ep.name, ep.distribution or ""))


def selected_plugins() -> set[str] | None:
    """The entry points ``BENCHSUITE_PLUGINS=a,b`` names (empty: none), or None to load them all."""
    selection = os.environ.get("BENCHSUITE_PLUGINS")
    return None if selection is None else {s.strip() for s in selection.split(",") if s.strip()}


def strict_loading() -> bool:
    """Whether ``BENCHSUITE_STRICT_PLUGINS`` asks for a failed plugin to be an error."""
    return os.environ.get("BENCHSUITE_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")
