"""benchsuite: a plugin-based benchmark suite for training deep networks under label noise.

Public API (a stable contract)::

    import benchsuite
    benchsuite.list_methods(); benchsuite.list_tasks()
    method = benchsuite.load_method("gce", q=0.7)
    task = benchsuite.load_task("digits")

Names are imported lazily so that ``import benchsuite`` (and its pytest plugin) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "hookimpl": "benchsuite.hookspecs",
    "Param": "benchsuite.params",
    "Preset": "benchsuite.params",
    "ParameterError": "benchsuite.params",
    "Method": "benchsuite.method",
    "Canonical": "benchsuite.method",
    "LossMethod": "benchsuite.method",
    "LossOutput": "benchsuite.method",
    "StepOutput": "benchsuite.method",
    "Task": "benchsuite.task",
    "Metric": "benchsuite.task",
    "Recipe": "benchsuite.task",
    "PreparedData": "benchsuite.task",
    "TensorTrainSource": "benchsuite.task",
    "UnknownNameError": "benchsuite.registry",
}

if TYPE_CHECKING:
    from .hookspecs import hookimpl
    from .method import Canonical, LossMethod, LossOutput, Method, StepOutput
    from .params import Param, ParameterError, Preset
    from .registry import UnknownNameError
    from .task import Metric, PreparedData, Recipe, Task, TensorTrainSource


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'benchsuite' has no attribute {name!r}")


def list_methods() -> list[str]:
    """Names of every registered method (built-in and third-party)."""
    from .plugins import get_host

    return get_host().methods.names()


def list_tasks() -> list[str]:
    """Names of every registered task."""
    from .plugins import get_host

    return get_host().tasks.names()


def load_method(name: str, preset: str | None = None, **params: Any) -> "Method":
    """A configured method; ``preset`` names a published setting, ``params`` override it.

    Raises ``UnknownNameError`` (with close matches) or ``ParameterError`` (naming the parameter,
    the value and what is allowed).
    """
    from .plugins import get_host

    return get_host().method_class(name)(preset=preset, **params)


def load_task(name: str, preset: str | None = None, **params: Any) -> "Task":
    """A configured task (same rules as ``load_method``)."""
    from .plugins import get_host

    return get_host().task_class(name)(preset=preset, **params)


__all__ = ["__version__", "list_methods", "list_tasks", "load_method", "load_task", *_LAZY]
