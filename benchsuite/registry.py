"""Typed registries of method and task classes, with the checks a registered class must pass."""

from __future__ import annotations

import inspect
import re
from typing import Generic, TypeVar

from .errors import BenchsuiteError, UsageError
from .params import Configurable, ParameterError, close_matches

T = TypeVar("T", bound=Configurable)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownNameError(UsageError, LookupError):
    """No method or task of that name is registered."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class InvalidPluginError(BenchsuiteError, TypeError):
    """A plugin registered something that is not a valid method or task class."""


class Registry(Generic[T]):
    """Name -> class, for one kind of plugin object (methods or tasks)."""

    def __init__(self, kind: str, base: type[T], listed_by: str | None = None) -> None:
        self.kind = kind
        self.base = base
        #: The command that lists the registered names, for the message of an unknown name.
        self.listed_by = listed_by or f"benchsuite {kind}s"
        self._classes: dict[str, type[T]] = {}
        self._origin: dict[str, str] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._classes

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; {close_matches(name, self.names())} "
                f"(`{self.listed_by}` lists them; `benchsuite plugins` shows plugins that failed to load)"
            ) from None

    def origin(self, name: str) -> str:
        """Name of the plugin that registered ``name``."""
        return self._origin[name]

    def check(self, cls: object) -> type[T]:
        """Raise ``InvalidPluginError`` unless ``cls`` is a complete, well-declared class."""
        if not (inspect.isclass(cls) and issubclass(cls, self.base)):
            raise InvalidPluginError(
                f"register() expects a subclass of {self.base.__module__}.{self.base.__qualname__}, got {cls!r}"
            )
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidPluginError(
                f"{cls.__qualname__}.name = {name!r} must be a lowercase identifier such as 'my_method'"
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise InvalidPluginError(f"{self.kind} {name!r} does not implement: {missing}")
        for param in cls.parameters:
            if param in ("preset_name", "config") or (
                hasattr(cls, param) and not isinstance(getattr(cls, param), (int, float, str, bool, type(None)))
            ):
                raise InvalidPluginError(f"{self.kind} {name!r}: parameter name {param!r} shadows an attribute")
        try:
            cls.param_space().check_declaration()
            cls.check_class()
        except (ParameterError, ValueError, TypeError) as exc:
            raise InvalidPluginError(f"{self.kind} {name!r} has an invalid declaration: {exc}") from exc
        return cls

    def add(self, cls: type[T], origin: str) -> None:
        if cls.name in self._classes:
            raise InvalidPluginError(
                f"{self.kind} {cls.name!r} is already registered by plugin {self._origin[cls.name]!r}"
            )
        self._classes[cls.name] = cls
        self._origin[cls.name] = origin

    def remove_origin(self, origin: str) -> None:
        for name in [n for n, o in self._origin.items() if o == origin]:
            del self._classes[name], self._origin[name]
