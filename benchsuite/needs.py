"""Data needs: what a method trains on besides the noisy training set, matched by name.

A method declares what it requires (``Method.needs()``, a tuple of ``Need``), a task what it can
provide (``Task.provides``, a set of names). The host knows no need in particular: it matches the
two by name and wires them through.

* Grid validation: a cell whose method needs a name its task does not provide is not run (n/a,
  with the reason ``Method.applicability`` gives); the engine refuses such a pair outright
  (``NeedNotProvided``).
* Preparation: the engine passes every need's parameters to ``Task.prepare`` in
  ``PrepareRequest.needs`` (name -> parameters, e.g. ``{"trusted_set": {"per_class": 10}}``).
* Training: what the task hands over for a need goes in ``PreparedData.provided`` under the need's
  name; the method reads it with ``ctx.provided(name)``.
* Records and boards: each need's ``privileged`` entries are recorded with the run
  (``info["privileged"]``) and mark the method's rows on the boards (``benchsuite.leaderboard``):
  the built-in keys below in their words, any other key by its text value.

A plugin invents a need by naming it: a method returns ``Need("my_need", {...}, "what it is",
privileged={"my_need": "words for the boards"})`` and a task lists ``"my_need"`` in ``provides``,
reads ``request.needs["my_need"]`` in ``prepare`` and puts what it provides in
``PreparedData.provided["my_need"]``. The host is not edited.

The built-in needs, served by the toolkit's label pipeline (``benchsuite.toolkit.labels``) and
``prepare_in_memory``:

* ``trusted_set`` (``per_class``): a clean, class-balanced subset held out of the training set
  before the noise is drawn; provided as a ``TrainSource`` (``ctx.trusted_batches()`` streams it).
* ``strong_view``: the task's strong augmentation, a ``ViewFn``.
* ``clean_validation`` (``fraction``): a clean validation split carved from the training set,
  evaluated by the task as ``val_acc``; nothing is handed to the method. The grid's
  ``val_fraction`` asks for the same split for every method; the larger fraction wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import UsageError

TRUSTED_SET = "trusted_set"
STRONG_VIEW = "strong_view"
CLEAN_VALIDATION = "clean_validation"


@dataclass(frozen=True)
class Need:
    """One thing a method needs from the task, by name.

    ``params`` go to the task's ``prepare`` (``PrepareRequest.needs[name]``) and must be plain
    values (they are recorded with the run). ``what`` says what it is in words, for messages.
    ``privileged``: what the run records and the boards mark when training on it is an advantage
    over methods that see only the noisy training set (empty: not privileged).
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    what: str = ""
    privileged: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.what} ({self.name})" if self.what else self.name


class NeedNotProvided(UsageError):
    """A method was paired with a task that does not provide what it needs."""


def trusted_set(per_class: int) -> Need:
    """``per_class`` clean examples of every class, held out of the noisy training set."""
    return Need(TRUSTED_SET, {"per_class": per_class}, "a trusted clean subset", {"trusted_per_class": per_class})


def strong_view() -> Need:
    """The task's strong augmentation of the training inputs."""
    return Need(STRONG_VIEW, {}, "a strong augmentation of the inputs", {"strong_view": True})


def clean_validation(fraction: float) -> Need:
    """A clean validation split of ``fraction`` of the training set (the task reports ``val_acc``)."""
    return Need(CLEAN_VALIDATION, {"fraction": fraction}, "a clean validation split", {"clean_validation_fraction": fraction})


def unmet(method: str, needs: tuple[Need, ...], task: str, provides: frozenset[str]) -> str | None:
    """Why ``method`` with ``needs`` cannot run on ``task`` providing ``provides`` (``None``: it can)."""
    missing = [need.describe() for need in needs if need.name not in provides]
    if not missing:
        return None
    return f"{method} needs {', '.join(missing)}, which task {task!r} does not provide"


def request_needs(needs: tuple[Need, ...], val_fraction: float = 0.0) -> dict[str, dict[str, Any]]:
    """``PrepareRequest.needs`` for a method's needs and the grid's validation split: name ->
    parameters; a clean validation split asked by both gets the larger fraction."""
    asked = {need.name: dict(need.params) for need in needs}
    if val_fraction > 0:
        fraction = max(asked.get(CLEAN_VALIDATION, {}).get("fraction", 0.0), val_fraction)
        asked[CLEAN_VALIDATION] = {**asked.get(CLEAN_VALIDATION, {}), "fraction": fraction}
    return asked
