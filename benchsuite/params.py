"""Declared, validated hyper-parameters and named presets of plugins.

A plugin class lists its parameters as ``Param`` objects and its presets as ``Preset`` objects;
the host validates every value before anything runs, so a typo in a grid file fails in
milliseconds with a message that names the parameter, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from .errors import UsageError
from .validation import range_text


class ParameterError(UsageError, ValueError):
    """A plugin parameter is unknown, of the wrong type or out of range."""


def close_matches(word: str, candidates: list[str]) -> str:
    """A human hint listing the candidates closest to ``word`` (or all of them when few)."""
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known: " + ", ".join(sorted(candidates)) if candidates else "none are known"


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: default, type, and the allowed range or choices.

    ``low``/``high`` bound numeric values; ``low_open``/``high_open`` make a bound strict.
    ``choices`` restricts any type to a finite set. ``type`` defaults to the default's type.
    ``nullable`` allows ``None`` (used for optional paths such as a dataset root).
    ``identity=False`` marks a parameter that cannot change results (a data root, a worker
    count): it is left out of the run's identity hash, so moving a data set re-runs nothing.
    """

    default: Any
    doc: str = ""
    type: type | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    identity: bool = True

    @property
    def kind(self) -> type:
        if self.type is not None:
            return self.type
        if self.default is None:
            return str
        return type(self.default)

    def allowed(self) -> str:
        """What values are allowed, in words (used in error messages and ``benchsuite methods``)."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        text = _TYPE_NAMES.get(self.kind, self.kind.__name__)
        if self.low is not None or self.high is not None:
            text += ", " + range_text(self.low, self.high, self.low_open, self.high_open)
        return text + (" or None" if self.nullable else "")

    def validate(self, owner: str, name: str, value: Any) -> Any:
        """Return ``value`` coerced to the declared type, or raise ``ParameterError``."""

        def fail(why: str) -> ParameterError:
            return ParameterError(
                f"{owner}: parameter {name!r} = {value!r} {why}; allowed: {self.allowed()}"
            )

        if value is None:
            if self.nullable:
                return None
            raise fail("may not be None")
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool and not isinstance(value, bool):
            raise fail("is not a bool")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise fail("is not an int")
        if not isinstance(value, kind):
            raise fail(f"has type {type(value).__name__}")
        if kind is float and not math.isfinite(value):
            raise fail("is not finite")
        if self.choices is not None and value not in self.choices:
            raise fail("is not allowed")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise fail("is out of range")
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise fail("is out of range")
        return value

    def describe(self) -> dict[str, Any]:
        return {"default": self.default, "allowed": self.allowed(), "doc": self.doc}


@dataclass(frozen=True)
class Preset:
    """A named setting of some parameters, with the source it comes from (paper, table)."""

    values: Mapping[str, Any]
    source: str = ""
    doc: str = ""

    def describe(self) -> dict[str, Any]:
        return {"values": dict(self.values), "source": self.source, "doc": self.doc}


@dataclass(frozen=True)
class ParamSpace:
    """The parameters and presets of one plugin class; resolves user values into a full setting."""

    owner: str
    params: Mapping[str, Param] = field(default_factory=dict)
    presets: Mapping[str, Preset] = field(default_factory=dict)

    def resolve(self, values: Mapping[str, Any], preset: str | None = None) -> dict[str, Any]:
        """Defaults, overlaid by the preset, overlaid by ``values``; every value validated."""
        resolved = {name: p.default for name, p in self.params.items()}
        if preset is not None:
            if preset not in self.presets:
                raise ParameterError(
                    f"{self.owner}: unknown preset {preset!r}; "
                    + close_matches(preset, list(self.presets))
                )
            for name, value in self.presets[preset].values.items():
                if name not in self.params:
                    raise ParameterError(
                        f"{self.owner}: preset {preset!r} sets unknown parameter {name!r}; "
                        + close_matches(name, list(self.params))
                    )
                resolved[name] = value
        for name, value in values.items():
            if name not in self.params:
                raise ParameterError(
                    f"{self.owner}: unknown parameter {name!r}; "
                    + close_matches(name, list(self.params))
                )
            resolved[name] = value
        return {name: self.params[name].validate(self.owner, name, v) for name, v in resolved.items()}

    def check_declaration(self) -> None:
        """Raise ``ParameterError`` when defaults or presets violate the declared ranges."""
        for name, param in self.params.items():
            if not isinstance(param, Param):
                raise ParameterError(f"{self.owner}: parameter {name!r} is not a Param")
            param.validate(self.owner, name, param.default)
        for preset_name, preset in self.presets.items():
            if not isinstance(preset, Preset):
                raise ParameterError(f"{self.owner}: preset {preset_name!r} is not a Preset")
            self.resolve({}, preset=preset_name)


class Configurable:
    """Base of every plugin class: a name, declared parameters, presets and validated values.

    ``cls(preset=None, **values)`` resolves defaults < preset < values, validates all of them,
    and exposes each value as an attribute (``self.q``) and in ``self.config``.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: Bump when the plugin's behaviour changes, so that stored results are not reused.
    version: ClassVar[str] = "1"
    parameters: ClassVar[Mapping[str, Param]] = {}
    presets: ClassVar[Mapping[str, Preset]] = {}

    def __init__(self, preset: str | None = None, **values: Any) -> None:
        self.preset_name = preset
        self.config: dict[str, Any] = self.param_space().resolve(values, preset)
        for key, value in self.config.items():
            setattr(self, key, value)

    @classmethod
    def check_class(cls) -> None:
        """Raise ``ValueError`` when the class's declarations are inconsistent (run at registration)."""

    @classmethod
    def param_space(cls) -> ParamSpace:
        return ParamSpace(cls.name or cls.__name__, cls.parameters, cls.presets)

    def identity_config(self) -> dict[str, Any]:
        """The resolved values that define results (those with ``identity=True``)."""
        return {k: v for k, v in self.config.items() if self.parameters[k].identity}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"
