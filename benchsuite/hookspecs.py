"""The hooks a benchsuite plugin may implement (register-callback style, as in llm).

A plugin is a module that implements some of these functions, marked with ``@hookimpl``::

    from benchsuite import hookimpl

    @hookimpl
    def register_methods(register):
        register(MyMethod)

The host passes ``register``; the plugin calls it with its classes. The host validates each class
(a method must subclass ``benchsuite.Method``, a task ``benchsuite.Task``) and owns the registry.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("benchsuite")
hookimpl = pluggy.HookimplMarker("benchsuite")


@hookspec
def register_methods(register: Callable[[type], None]) -> None:
    """Register training methods: call ``register(MethodClass)`` once per method."""


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register tasks (data set + model + evaluation): call ``register(TaskClass)`` once per task."""
