"""The plugin host: a typed façade over pluggy that loads plugins one by one.

Built-in and third-party plugins come through the same entry-point group, ``benchsuite``. Each
entry point is imported, registered and asked for its classes on its own; a plugin that fails to
import, implements an unknown hook or registers an invalid class is set aside (with its error)
and everything else keeps working. Nothing outside this module touches pluggy.

Environment:
  ``BENCHSUITE_PLUGINS=a,b``      load only the named entry points (empty: load none)
  ``BENCHSUITE_STRICT_PLUGINS=1`` raise ``PluginLoadError`` instead of setting a plugin aside
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import pluggy

from . import __version__, executors, hookspecs, noise
from .discovery import ENTRY_POINT_GROUP, PluginLoadError, discover, selected_plugins, strict_loading
from .executors import Executor
from .method import Method
from .registry import InvalidPluginError, Registry
from .task import Task

_HOOK_NAMES = ("register_methods", "register_tasks", "register_noise_kinds", "register_executors")
#: Modules of the host registered as plugins before any entry point (as pytest's built-ins and
#: tox's internal plugins are): the built-in noise kinds and executors.
INTERNAL_PLUGINS = {"benchsuite.noise": noise, "benchsuite.executors": executors}


@dataclass
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    methods: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    noise_kinds: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)


@dataclass
class FailedPlugin:
    name: str
    distribution: str | None
    version: str | None
    error: str
    traceback: str


class PluginHost:
    """Owns the pluggy manager, the registries, and the list of loaded and failed plugins."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._pm.add_hookspecs(hookspecs)
        self.methods: Registry[Method] = Registry("method", Method)
        self.tasks: Registry[Task] = Registry("task", Task)
        self.executors: Registry[Executor] = Registry("executor", Executor, listed_by="benchsuite plugins")
        #: Noise kind name -> kind, and the plugin that registered it.
        self.noise_kinds: dict[str, noise.NoiseKind] = {}
        self._noise_origin: dict[str, str] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.failed: dict[str, FailedPlugin] = {}
        for name, module in INTERNAL_PLUGINS.items():
            self.add_plugin(module, name, "benchsuite", __version__)

    # -- loading -----------------------------------------------------------------------------

    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Load every entry point of the group (or only those named in ``only``), one by one."""
        seen: set[str] = set()
        discovered = discover()
        if only is None:
            for broken in discovered.unreadable:
                name = broken.distribution or "unnamed distribution"
                self._fail(name, broken.distribution, broken.version, broken.error)
        for found in discovered.entry_points:
            ep, dist, version = found.entry_point, found.distribution, found.version
            if only is not None and ep.name not in only:
                continue
            if ep.name in INTERNAL_PLUGINS:  # would otherwise be skipped below as already loaded, silently
                self._fail(ep.name, dist, version, f"entry point name {ep.name!r} is taken by one of the host's own plugins")
                continue
            if ep.name in seen:  # before the check below: the first one may have loaded
                self._fail(ep.name, dist, version, f"entry point name {ep.name!r} is provided by two distributions")
                continue
            if ep.name in self.plugins:  # loaded by an earlier call
                continue
            seen.add(ep.name)
            try:
                module = ep.load()
            except Exception as exc:  # any import-time error must not take the host down
                self._fail(ep.name, dist, version, f"import of {ep.value!r} failed: {exc!r}")
                continue
            self.add_plugin(module, ep.name, dist, version)
        for name in sorted((only or set()) - seen - set(self.plugins)):
            self._fail(name, None, None, f"BENCHSUITE_PLUGINS names {name!r}, but no such entry point is installed")

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str | None = None, version: str | None = None
    ) -> bool:
        """Register one plugin and collect its noise kinds and classes; on any error set it aside.
        True if loaded."""
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, distribution, version, f"invalid plugin: {exc}")
            return False
        try:
            self._check_hook_names(plugin)
            kinds, staged = self._stage(plugin)
        except Exception as exc:
            self._pm.unregister(plugin)
            self._fail(name, distribution, version, str(exc) or repr(exc))
            return False
        for kind_name, kind in kinds.items():
            self.noise_kinds[kind_name], self._noise_origin[kind_name] = kind, name
        for cls in staged["methods"]:
            self.methods.add(cls, name)
        for cls in staged["tasks"]:
            self.tasks.add(cls, name)
        for cls in staged["executors"]:
            self.executors.add(cls, name)
        self.plugins[name] = PluginInfo(
            name,
            distribution,
            version,
            [c.name for c in staged["methods"]],
            [c.name for c in staged["tasks"]],
            list(kinds),
            [c.name for c in staged["executors"]],
        )
        self.failed.pop(name, None)
        return True

    def _stage(self, plugin: object) -> tuple[dict[str, noise.NoiseKind], dict[str, list[type]]]:
        """Everything ``plugin`` registers, checked but not yet added: noise kinds first, so that
        its tasks may accept the kinds it brings."""
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        kinds: dict[str, noise.NoiseKind] = {}

        def register_kind(kind_name: str, kind: noise.NoiseKind) -> None:
            noise.check_noise_kind(kind_name, kind)
            if kind_name in kinds or kind_name in self.noise_kinds:
                owner = self._noise_origin.get(kind_name)
                raise InvalidPluginError(f"noise kind {kind_name!r} already registered" + (f" by plugin {owner!r}" if owner else ""))
            kinds[kind_name] = kind

        self._pm.subset_hook_caller("register_noise_kinds", remove_plugins=others)(register=register_kind)
        staged: dict[str, list[type]] = {"methods": [], "tasks": [], "executors": []}
        registries: tuple[tuple[str, str, Registry[Any]], ...] = (
            ("register_methods", "methods", self.methods),
            ("register_tasks", "tasks", self.tasks),
            ("register_executors", "executors", self.executors),
        )
        for hook, kind, registry in registries:
            self._pm.subset_hook_caller(hook, remove_plugins=others)(register=self._stager(staged[kind], registry))
            names = [cls.name for cls in staged[kind]]
            clash = {n for n in names if names.count(n) > 1 or n in registry}
            if clash:
                raise InvalidPluginError("; ".join(
                    f"{kind[:-1]} {n!r} is already registered by plugin {registry.origin(n)!r}" if n in registry
                    else f"{kind[:-1]} {n!r} is registered twice by this plugin"
                    for n in sorted(clash)
                ))  # fmt: skip
        for task in staged["tasks"]:
            unknown = [k for k in task.noise_kinds if k != "none" and k not in kinds and k not in self.noise_kinds]
            if unknown:
                known = ", ".join(["none", *sorted({*self.noise_kinds, *kinds})])
                raise InvalidPluginError(f"task {task.name!r} accepts noise kinds {unknown} that no plugin registered; known: {known}")
        return kinds, staged

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and everything it registered (used by tests and plugin authors)."""
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        self.methods.remove_origin(name)
        self.tasks.remove_origin(name)
        self.executors.remove_origin(name)
        for kind_name in [k for k, origin in self._noise_origin.items() if origin == name]:
            del self.noise_kinds[kind_name], self._noise_origin[kind_name]
        self.plugins.pop(name, None)
        self.failed.pop(name, None)

    # -- queries -----------------------------------------------------------------------------

    def method_class(self, name: str) -> type[Method]:
        return self.methods.get(name)

    def task_class(self, name: str) -> type[Task]:
        return self.tasks.get(name)

    def executor_class(self, name: str) -> type[Executor]:
        return self.executors.get(name)

    def plugin_of(self, kind: str, name: str) -> PluginInfo:
        registry = self.methods if kind == "method" else self.tasks
        return self.plugins[registry.origin(name)]

    # -- internals ---------------------------------------------------------------------------

    def _stager(self, staged: list[type], registry: Registry[Any]) -> Callable[[type], None]:
        def register(cls: type) -> None:
            staged.append(registry.check(cls))

        return register

    def _check_hook_names(self, plugin: object) -> None:
        for attr in dir(plugin):
            if self._pm.parse_hookimpl_opts(plugin, attr) is not None and attr not in _HOOK_NAMES:
                raise InvalidPluginError(
                    f"implements unknown hook {attr!r}; benchsuite hooks are: {', '.join(_HOOK_NAMES)}"
                )

    def _fail(self, name: str, distribution: str | None, version: str | None, error: str) -> None:
        tb = traceback.format_exc()
        self.failed[name] = FailedPlugin(name, distribution, version, error, "" if tb.startswith("NoneType") else tb)
        if self.strict:
            raise PluginLoadError(f"plugin {name!r} failed to load: {error}")


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loaded on first use according to the environment."""
    global _host
    if _host is None:
        host = PluginHost(strict=strict_loading())
        host.load_entry_points(selected_plugins())
        noise.publish_kinds(host.noise_kinds)
        _host = host
    return _host


def reset_host() -> None:
    """Forget the loaded plugins; the next ``get_host()`` loads them again."""
    global _host
    _host = None
    noise.publish_kinds(noise.BUILTIN_NOISE_KINDS)
