"""benchsuite: a plugin-based benchmark suite for training deep networks under label noise.

Public API (a stable contract)::

    import benchsuite
    benchsuite.list_methods(); benchsuite.list_tasks()
    method = benchsuite.load_method("gce", q=0.7)
    task = benchsuite.load_task("digits")

For method plugins: ``Method``, ``LossMethod``, ``LossOutput``, ``StepOutput``, ``Canonical``,
``TrainContext`` (what ``Method.train_step`` receives) and ``Batch`` (one training batch); for task
plugins: ``Task``, ``Metric``, ``Recipe``, ``PrepareRequest`` (what ``Task.prepare`` is asked),
``PreparedData``, ``NoiseRecord``, ``TensorTrainSource``, ``prepare_in_memory`` (validation split,
trusted set and label noise of an in-memory data set, in that order) and
``evaluate_classification``; for both: ``Param``, ``Preset``, ``ParameterError``, ``hookimpl``, and
``Need`` (what a method needs from a task, matched by name: ``benchsuite.needs``).
``benchsuite.checks`` holds the contract checks of method plugins; ``benchsuite.toolkit`` the data
sources, networks and augmentation that task authors share.

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
    "PrepareRequest": "benchsuite.task",
    "NoiseRecord": "benchsuite.task",
    "Batch": "benchsuite.task",
    "prepare_in_memory": "benchsuite.task",
    "evaluate_classification": "benchsuite.task",
    "TrainContext": "benchsuite.engine",
    "UnknownNameError": "benchsuite.registry",
    "Need": "benchsuite.needs",
}

if TYPE_CHECKING:
    from .hookspecs import hookimpl
    from .method import Canonical, LossMethod, LossOutput, Method, StepOutput
    from .needs import Need
    from .params import Param, ParameterError, Preset
    from .registry import UnknownNameError
    from .engine import TrainContext
    from .task import (
        Batch,
        Metric,
        NoiseRecord,
        PreparedData,
        PrepareRequest,
        Recipe,
        Task,
        TensorTrainSource,
        evaluate_classification,
        prepare_in_memory,
    )


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
