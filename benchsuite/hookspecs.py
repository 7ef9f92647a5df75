"""The hooks a benchsuite plugin may implement (register-callback style, as in llm).

A plugin is a module that implements some of these functions, marked with ``@hookimpl``::

    from benchsuite import hookimpl

    @hookimpl
    def register_methods(register):
        register(MyMethod)

The host passes ``register``; the plugin calls it with its classes (or, for noise kinds, a name
and an instance). The host validates each, owns the registries, and stages a plugin's
registrations so that one invalid registration leaves none of them behind. The host's own noise
kinds and executors come through the same hooks: ``benchsuite.noise`` and ``benchsuite.executors``
are registered as internal plugins before any entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from .executors import Executor
    from .noise import NoiseKind

hookspec = pluggy.HookspecMarker("benchsuite")
hookimpl = pluggy.HookimplMarker("benchsuite")


@hookspec
def register_methods(register: Callable[[type], None]) -> None:
    """Register training methods: call ``register(MethodClass)`` once per method."""


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register tasks (data set + model + evaluation): call ``register(TaskClass)`` once per task."""


@hookspec
def register_noise_kinds(register: Callable[[str, "NoiseKind"], None]) -> None:
    """Register label-noise kinds: call ``register(name, kind)`` once per kind.

    :param register: takes the kind's name, a lowercase identifier with an optional
        ``:variant`` (``"my_noise"``, ``"cifar10n:worst"``), and an instance of a subclass of
        ``benchsuite.noise.NoiseKind`` (``FlipNoise`` for a synthetic flip pattern,
        ``GivenLabels`` for labels the task supplies, or your own ``draw``).

    A task accepts a kind by naming it in ``Task.noise_kinds``; the kind must be registered by
    the host, by a plugin loaded earlier, or by the task's own plugin (its kinds are staged
    before its tasks are checked). Names are global: registering a name twice sets the second
    plugin aside. Kinds whose ``inputs`` the task does not supply fail when the cell prepares
    its data, with a message naming the input.
    """


@hookspec
def register_executors(register: Callable[[type["Executor"]], None]) -> None:
    """Register executors (where the cells of a grid run): call ``register(ExecutorClass)`` once
    per executor.

    :param register: takes a subclass of ``benchsuite.executors.Executor`` whose ``name`` is a
        lowercase identifier (what ``--executor`` and a grid file's ``executor`` key name) and
        whose ``parameters`` are its options.

    An executor runs each cell by calling ``self.cells.execute`` (or ``run_in_worker`` in a
    remote worker): the driver hands it the functions that run a cell, so an executor never
    imports the plugin host. Names are global: registering a built-in's name (``local``,
    ``pool``, ``ray``, ``slurm``) or one another plugin registered sets the plugin aside.
    """
