"""The pytest plugin of benchsuite (entry point ``pytest11``): a thin layer over ``benchsuite.checks``.

Run the contract checks on a method plugin, one test per (method, check) pair::

    from benchsuite.testing import parametrize_with_method_checks

    @parametrize_with_method_checks(["gce", MyMethod(alpha=0.5)])
    def test_method_contract(method, check):
        check(method)

A check that does not apply to a method is a skipped test whose reason starts with ``benchsuite
check not applicable``; at the end of the session the plugin lists those reasons in a section of
its own, so that a skip is never silent (no ``-rs`` needed). The fixture ``benchsuite_host`` gives a
fresh plugin host, installed as the process-wide one for the test, to register a plugin with
``add_plugin`` and load its methods by name.

Only this module imports pytest; nothing benchsuite runs outside a test session imports it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterable

import pytest

from .checks import (  # noqa: F401  (re-exported: the names tests of method plugins import from here)
    ALL_CHECKS,
    Check,
    CheckFailed,
    MethodSpec,
    NotApplicable,
    check_batch_behaviour,
    check_declaration,
    check_extreme_logits,
    check_fitted_batch,
    check_gradient,
    check_method,
    check_parameter_ranges,
    check_presets,
    check_weights,
    method_id,
    resolve_method,
)

if TYPE_CHECKING:
    from .method import Method
    from .plugins import PluginHost

#: How the reason of a skipped contract check starts (the terminal summary collects them by it).
NOT_APPLICABLE = "benchsuite check not applicable"


def as_test(check: Check) -> Check:
    """``check`` with ``NotApplicable`` turned into a pytest skip that names the check and the reason."""

    @functools.wraps(check)
    def run(method: "Method") -> None:
        try:
            check(method)
        except NotApplicable as exc:
            pytest.skip(f"{NOT_APPLICABLE}: {check.__name__}: {exc}")

    return run


def parametrize_with_method_checks(methods: Iterable[MethodSpec]) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize("method, check", ...)`` over every (method, check) pair."""
    params = []
    for spec in methods:
        instance = resolve_method(spec)
        for check in ALL_CHECKS:
            params.append(pytest.param(instance, as_test(check), id=f"{method_id(instance)}-{check.__name__}"))
    return pytest.mark.parametrize("method, check", params)


def not_applicable_reasons(terminalreporter: Any) -> list[str]:
    """``test id: reason`` of every contract check the session skipped as not applicable."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if NOT_APPLICABLE in reason:
            reasons.append(f"{report.nodeid}: {reason.split(NOT_APPLICABLE + ': ', 1)[-1]}")
    return reasons


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report the contract checks that did not apply, with their reasons, even without ``-rs``."""
    reasons = not_applicable_reasons(terminalreporter)
    if reasons:
        terminalreporter.section(f"benchsuite contract checks not applicable ({len(reasons)})")
        for line in reasons:
            terminalreporter.write_line(line)


@pytest.fixture
def benchsuite_host(monkeypatch: pytest.MonkeyPatch) -> "PluginHost":
    """A fresh plugin host with the installed plugins, serving ``load_method`` during the test."""
    from . import plugins

    host = plugins.PluginHost()
    host.load_entry_points()
    monkeypatch.setattr(plugins, "_host", host)
    return host
