"""Packages that only some tasks need, installed as extras of benchsuite (``pip install
'benchsuite[sentiment]'``), and what a task does when one is missing.

A plugin imports such a package only where it uses it, so the plugin still loads and is listed
without it. Its task's ``available()`` returns ``missing_extra(...)``: ``benchsuite tasks`` and
``benchsuite plugins`` then print what to install, the default grid leaves the task out, and a grid
that names it stops at validation (exit 2) before anything runs. Code reached by another road
(a script calling the task directly) calls ``require_extra`` first, which raises the same message
as a ``MissingExtraError`` instead of a ``ModuleNotFoundError`` from deep inside.

The check looks the package up (``importlib.util.find_spec``) without importing it: importing
gensim costs about a second per process, and ``available()`` runs on every ``benchsuite run``.
"""

from __future__ import annotations

import importlib.util

from ..errors import UsageError


class MissingExtraError(UsageError, ImportError):
    """A package that an extra of benchsuite installs is not installed; the message names the
    package and the pip command that installs it."""


def install_command(extra: str) -> str:
    """The pip command that installs benchsuite's ``extra``."""
    return f"pip install 'benchsuite[{extra}]'"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # imported by hand without a spec (``__spec__`` is None): it is there
        return True


def missing_extra(extra: str, *modules: str) -> str | None:
    """``None`` when every top-level ``module`` can be imported, else why not and how to fix it."""
    absent = [m for m in modules if not _installed(m)]
    if not absent:
        return None
    return f"needs the Python package {', '.join(absent)}, not installed here: {install_command(extra)}"


def require_extra(extra: str, *modules: str) -> None:
    """Raise ``MissingExtraError`` unless every top-level ``module`` can be imported."""
    if (why := missing_extra(extra, *modules)) is not None:
        raise MissingExtraError(why)
