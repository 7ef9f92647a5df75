"""Label noise, as a pure function of the labels, the kind's inputs and a seed.

``corrupt_labels`` returns the noisy labels, the mask of examples whose label changed, and the
realised rate. A kind is a ``NoiseKind`` registered under a name through the plugin hook
``register_noise_kinds``: ``FlipNoise`` draws synthetic noise from a flip pattern, ``GivenLabels``
takes labels the task supplies per training example (human annotations such as CIFAR-N's; they
run at rate 0 only). This module registers the built-in synthetic kinds through the same hook, as
an internal plugin of the host. Kinds, and the sampling each uses by default, follow the
reference implementations (``docs/reference.md`` §6):

* ``symmetric`` — the label moves to one of the *other* classes, uniformly (GR, DM, IMAE, SL);
  default sampling ``exact_classbalanced`` (the SL protocol the DM/IMAE papers copy).
* ``uniform`` — the label is redrawn from *all* classes and may stay correct (IEG's protocol);
  default ``bernoulli``. Its realised rate is about r·(1 − 1/C).
* ``cifar10_asymmetric`` — truck→automobile, bird→airplane, deer→horse, cat↔dog; the other
  classes stay clean. Sources are picked from the clean labels, so nothing cascades (SL's
  semantics; APL's code picks dogs among cats already flipped). Default ``exact_classbalanced``.
* ``cifar100_block5_pairswap`` — in each block of 5 consecutive fine indices [5b, 5b+5), two
  classes drawn from the seed swap labels (the SL code, which the DM/IMAE CIFAR-100 asymmetric
  tables follow). Default ``bernoulli``.
* ``cifar100_block5_circular`` — in each block, class i goes to the next class of the block,
  cyclically (the APL code). Default ``bernoulli``.
* ``cifar100_superclass_pairswap`` — in each *true* superclass, two fine classes drawn from the
  seed swap labels (the ProSelfLC code). It needs ``coarse_of``, the superclass of every class,
  which the CIFAR-100 task reads from the pickle's coarse labels. Default ``exact_classbalanced``.

CIFAR-100's fine indices are alphabetical, so a block of 5 consecutive indices is **not** a
superclass (indices 0–4 belong to superclasses 4, 1, 14, 8, 0): the two ``block5`` kinds flip
between unrelated classes. They exist, under honest names, to reproduce the papers that used them.

For the asymmetric kinds the rate is per *source* class (the classes the kind moves); the
realised rate over the whole training set is lower (e.g. 5/10·r for ``cifar10_asymmetric``).

Sampling decides which examples of the source classes are corrupted: ``exact_classbalanced``
takes floor(r·N) of the N source examples, spread over the source classes in proportion to their
sizes (largest remainders get the leftovers), so balanced data gets exactly floor(r·n) per class;
``exact_global`` takes floor(r·N) of them uniformly; ``bernoulli`` takes each with probability r.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .errors import UsageError
from .hookspecs import hookimpl
from .params import close_matches

SAMPLINGS = ("exact_classbalanced", "exact_global", "bernoulli")


class NoiseError(UsageError, ValueError):
    """Invalid noise kind, rate, sampling, kind input or labels."""


@dataclass(frozen=True)
class NoisyLabels:
    """Result of ``corrupt_labels``. ``details`` holds what the draw decided beyond the labels
    (e.g. the swapped class pairs), to be recorded with the run."""

    labels: np.ndarray
    is_noisy: np.ndarray
    realised_rate: float
    kind: str
    rate: float
    seed: int
    sampling: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def num_noisy(self) -> int:
        return int(self.is_noisy.sum())


@dataclass(frozen=True)
class FlipPlan:
    """What a kind does to a chosen example of class c: ``target[c]`` is its new label, or
    ``OTHER`` (a uniformly drawn other class) or ``ANY`` (a uniformly drawn class, maybe c)."""

    target: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def sources(self) -> np.ndarray:
        """Boolean mask of the classes whose examples may be corrupted."""
        return self.target != np.arange(len(self.target))


OTHER = -1
ANY = -2


def _exact_count(rate: float, n: int) -> int:
    return math.floor(rate * n + 1e-9)


def select_examples(
    labels: np.ndarray,
    num_classes: int,
    rate: float,
    sampling: str,
    rng: np.random.Generator,
    sources: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of the examples to corrupt under ``sampling``, among those whose class is in
    ``sources`` (a boolean mask over classes; all classes when ``None``)."""
    eligible = np.ones(len(labels), dtype=bool) if sources is None else sources[labels]
    members_all = np.flatnonzero(eligible)
    chosen = np.zeros(len(labels), dtype=bool)
    if sampling == "bernoulli":
        chosen[members_all] = rng.random(len(members_all)) < rate
        return chosen
    if sampling == "exact_global":
        chosen[rng.choice(members_all, size=_exact_count(rate, len(members_all)), replace=False)] = True
        return chosen
    counts = np.bincount(labels[members_all], minlength=num_classes)
    quota = rate * counts
    per_class = np.floor(quota + 1e-9).astype(np.int64)
    leftover = _exact_count(rate, len(members_all)) - int(per_class.sum())
    if leftover > 0:  # largest remainders first, ties by class index
        order = np.lexsort((np.arange(num_classes), -(quota - per_class)))
        per_class[order[:leftover]] += 1
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(labels == c)
        chosen[rng.choice(members, size=min(per_class[c], len(members)), replace=False)] = True
    return chosen


def _apply(plan: FlipPlan, clean: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New labels: each chosen example gets its class's target (drawing OTHER/ANY in one go)."""
    num_classes = len(plan.target)
    noisy = clean.copy()
    target = plan.target[clean[chosen]]
    drawn = np.flatnonzero(target < 0)
    if len(drawn):
        # A shift in [1, C) moves to another class; in [0, C) it may stay (exactly what ANY means).
        low = np.where(target[drawn] == OTHER, 1, 0)
        shift = rng.integers(low, num_classes)
        target[drawn] = (clean[chosen][drawn] + shift) % num_classes
    noisy[chosen] = target
    return noisy


def _symmetric_plan(num_classes: int, rng: np.random.Generator) -> FlipPlan:
    return FlipPlan(np.full(num_classes, OTHER))


def _uniform_plan(num_classes: int, rng: np.random.Generator) -> FlipPlan:
    return FlipPlan(np.full(num_classes, ANY))


#: CIFAR-10 class indices: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
#: 7 horse, 8 ship, 9 truck.
CIFAR10_ASYMMETRIC_MAP = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}


def _cifar10_plan(num_classes: int, rng: np.random.Generator) -> FlipPlan:
    target = np.arange(num_classes)
    for source, dest in CIFAR10_ASYMMETRIC_MAP.items():
        target[source] = dest
    return FlipPlan(target)


def _pairswap(groups: list[np.ndarray], num_classes: int, rng: np.random.Generator) -> FlipPlan:
    """In every group of classes, two classes drawn from ``rng`` swap labels."""
    target = np.arange(num_classes)
    pairs = []
    for group in groups:
        a, b = np.sort(rng.choice(group, size=2, replace=False))
        target[a], target[b] = b, a
        pairs.append([int(a), int(b)])
    return FlipPlan(target, {"pairs": pairs})


def _block5_groups(num_classes: int) -> list[np.ndarray]:
    return [np.arange(start, start + 5) for start in range(0, num_classes, 5)]


def _block5_pairswap_plan(num_classes: int, rng: np.random.Generator) -> FlipPlan:
    return _pairswap(_block5_groups(num_classes), num_classes, rng)


def _block5_circular_plan(num_classes: int, rng: np.random.Generator) -> FlipPlan:
    c = np.arange(num_classes)
    return FlipPlan(c - c % 5 + (c + 1) % 5)


def _superclass_pairswap_plan(num_classes: int, rng: np.random.Generator, coarse_of: Any = None) -> FlipPlan:
    coarse = np.asarray(coarse_of)
    if coarse.shape != (num_classes,) or not np.issubdtype(coarse.dtype, np.integer):
        raise NoiseError(
            f"coarse_of must give the integer superclass of each of the {num_classes} classes, "
            f"got an array of shape {coarse.shape} and dtype {coarse.dtype}"
        )
    groups = [np.flatnonzero(coarse == s) for s in np.unique(coarse)]
    lonely = [int(s) for s, g in zip(np.unique(coarse), groups) if len(g) < 2]
    if lonely:
        raise NoiseError(f"superclasses {lonely} have fewer than 2 classes, so no pair can swap within them")
    return _pairswap(groups, num_classes, rng)


@dataclass(frozen=True, kw_only=True)
class NoiseKind:
    """A kind of label noise, registered under a name by a plugin (hook ``register_noise_kinds``).

    ``inputs`` names the data-derived inputs the kind needs, with docs: the task supplies them
    (e.g. ``coarse_of``; ``prepare_in_memory`` adds ``train_index``, the position of every label
    in the task's full training set). ``num_classes`` is the class count the kind is defined for
    (``None``: any). ``takes_rate`` is False for kinds whose labels are given rather than drawn
    (human annotations): a grid runs them at rate 0 only, and the realised rate is what the
    given labels hold.
    """

    doc: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    num_classes: int | None = None
    takes_rate: bool = True

    def draw(
        self, clean: np.ndarray, num_classes: int, rate: float, seed: int, sampling: str | None, inputs: dict[str, Any]
    ) -> tuple[np.ndarray, str | None, dict[str, Any]]:
        """The noisy labels, the sampling used (``None``: the kind samples nothing) and what else
        the draw decided, to be recorded with the run. Arguments are checked by ``corrupt_labels``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement draw()")


@dataclass(frozen=True, kw_only=True)
class FlipNoise(NoiseKind):
    """Synthetic noise: ``plan(num_classes, rng, **inputs)`` says where a corrupted label of each
    class goes (a ``FlipPlan``); ``sampling`` (default ``default_sampling``) picks the examples."""

    default_sampling: str
    plan: Callable[..., FlipPlan]

    def draw(
        self, clean: np.ndarray, num_classes: int, rate: float, seed: int, sampling: str | None, inputs: dict[str, Any]
    ) -> tuple[np.ndarray, str | None, dict[str, Any]]:
        sampling = sampling or self.default_sampling
        if sampling not in SAMPLINGS:
            raise NoiseError(f"unknown sampling {sampling!r}; {close_matches(sampling, list(SAMPLINGS))}")
        rng = np.random.default_rng(seed)
        plan = self.plan(num_classes, rng, **inputs)
        chosen = select_examples(clean, num_classes, rate, sampling, rng, sources=plan.sources)
        return _apply(plan, clean, chosen, rng), sampling, plan.details


@dataclass(frozen=True, kw_only=True)
class GivenLabels(NoiseKind):
    """Noisy labels given for every example of the task's training set, as the array ``key`` of
    the mapping the task supplies as input ``source`` (e.g. one annotator's labels from a file of
    human annotations). The run's labels are that array at ``train_index``: the examples left
    after the validation split and trusted set were held out. Nothing is drawn."""

    source: str
    key: str
    takes_rate: bool = False

    def __post_init__(self) -> None:
        if "train_index" not in self.inputs or self.source not in self.inputs:
            raise NoiseError(f"a GivenLabels kind must declare the inputs 'train_index' and {self.source!r}")

    def draw(
        self, clean: np.ndarray, num_classes: int, rate: float, seed: int, sampling: str | None, inputs: dict[str, Any]
    ) -> tuple[np.ndarray, str | None, dict[str, Any]]:
        if sampling is not None:
            raise NoiseError(f"given labels ({self.key!r} of {self.source!r}) are not sampled: drop sampling")
        given = np.asarray(inputs[self.source][self.key])
        index = np.asarray(inputs["train_index"], dtype=np.int64)
        if index.shape != clean.shape or (len(index) and (index.min() < 0 or index.max() >= len(given))):
            raise NoiseError(f"train_index must hold {len(clean)} positions in [0, {len(given)})")
        noisy = given[index].astype(np.int64)
        if len(noisy) and (noisy.min() < 0 or noisy.max() >= num_classes):
            raise NoiseError(f"{self.key!r} of {self.source!r} holds labels outside [0, {num_classes})")
        return noisy, None, {"labels": self.key}


#: The kinds the host registers itself (through ``register_noise_kinds``, as a plugin would).
BUILTIN_NOISE_KINDS: dict[str, NoiseKind] = {
    "symmetric": FlipNoise(
        default_sampling="exact_classbalanced", plan=_symmetric_plan, doc="to one of the other classes, uniformly"
    ),
    "uniform": FlipNoise(
        default_sampling="bernoulli", plan=_uniform_plan, doc="redrawn from all classes (may stay correct)"
    ),
    "cifar10_asymmetric": FlipNoise(
        default_sampling="exact_classbalanced",
        plan=_cifar10_plan,
        doc="truck→automobile, bird→airplane, deer→horse, cat↔dog (SL; sources from the clean labels)",
        num_classes=10,
    ),
    "cifar100_block5_pairswap": FlipNoise(
        default_sampling="bernoulli",
        plan=_block5_pairswap_plan,
        doc="two seeded classes swap within each block of 5 consecutive fine indices (SL code; blocks are not superclasses)",
        num_classes=100,
    ),
    "cifar100_block5_circular": FlipNoise(
        default_sampling="bernoulli",
        plan=_block5_circular_plan,
        doc="class i → the next class of its block of 5 consecutive fine indices (APL code; blocks are not superclasses)",
        num_classes=100,
    ),
    "cifar100_superclass_pairswap": FlipNoise(
        default_sampling="exact_classbalanced",
        plan=_superclass_pairswap_plan,
        doc="two seeded fine classes swap within each true superclass (ProSelfLC code)",
        inputs={"coarse_of": "the superclass of every class (CIFAR-100: from the pickle's coarse labels)"},
        num_classes=100,
    ),
}

#: A noise kind's name: a lowercase identifier, optionally ``:variant`` (``cifar10n:worst``).
NOISE_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*(:[a-z0-9_]+)?$")


def check_noise_kind(name: object, kind: object) -> NoiseKind:
    """Raise ``NoiseError`` unless ``kind`` can be registered under ``name``."""
    if not isinstance(name, str) or not NOISE_KIND_NAME.match(name) or name == "none":
        raise NoiseError(
            f"noise kind name {name!r} must be a lowercase identifier, optionally with a ':variant' "
            "(such as 'my_noise' or 'cifar10n:worst'), and not 'none'"
        )
    if not isinstance(kind, NoiseKind) or type(kind).draw is NoiseKind.draw:
        raise NoiseError(f"noise kind {name!r}: expected an instance of a benchsuite.noise.NoiseKind subclass that implements draw(), got {kind!r}")
    return kind


@hookimpl
def register_noise_kinds(register: Callable[[str, NoiseKind], None]) -> None:
    for name, kind in BUILTIN_NOISE_KINDS.items():
        register(name, kind)


#: The kinds ``noise_kind`` finds by name: the built-in ones until this process's plugin host has
#: loaded, then every kind that host registered (``benchsuite.plugins.get_host`` publishes its
#: table here). Held below the host so that the label pipeline need not import the host, which
#: imports the task interface, which uses the label pipeline.
_published_kinds: Mapping[str, NoiseKind] = BUILTIN_NOISE_KINDS


def publish_kinds(kinds: Mapping[str, NoiseKind]) -> None:
    """Make ``kinds`` (the process-wide host's live table) what ``noise_kind`` looks names up in."""
    global _published_kinds
    _published_kinds = kinds


def noise_kind(name: str) -> NoiseKind:
    """The kind registered under ``name`` in this process's plugin host (the built-in kinds
    before the host has loaded)."""
    if name not in _published_kinds:
        hint = "" if _published_kinds is not BUILTIN_NOISE_KINDS else " (the plugins' kinds are known once benchsuite.plugins.get_host() has loaded them)"
        raise NoiseError(f"unknown noise kind {name!r}; {close_matches(name, list(_published_kinds))}{hint}")
    return _published_kinds[name]


def corrupt_labels(
    labels: Any,
    num_classes: int,
    kind: str | NoiseKind,
    rate: float,
    seed: int,
    sampling: str | None = None,
    **kind_params: Any,
) -> NoisyLabels:
    """Corrupt ``labels`` (array-like of ints in [0, num_classes)) with ``kind`` noise at ``rate``.

    ``kind`` is a registered name (or the ``NoiseKind`` itself); ``kind_params`` are its inputs
    (``NoiseKind.inputs``). The same arguments and seed always give the same labels.
    """
    family = kind if isinstance(kind, NoiseKind) else noise_kind(kind)
    name = kind if isinstance(kind, str) else type(kind).__name__
    _check_arguments(name, family, num_classes, rate, kind_params)
    clean = np.asarray(labels, dtype=np.int64)
    if clean.ndim != 1 or (len(clean) and (clean.min() < 0 or clean.max() >= num_classes)):
        raise NoiseError(f"labels must be a 1-d array of ints in [0, {num_classes})")
    noisy, sampling, details = family.draw(clean, num_classes, float(rate), seed, sampling, kind_params)
    is_noisy = noisy != clean
    return NoisyLabels(
        labels=noisy,
        is_noisy=is_noisy,
        realised_rate=float(is_noisy.mean()) if len(clean) else 0.0,
        kind=name,
        rate=float(rate),
        seed=seed,
        sampling=sampling,
        details=details,
    )


def _check_arguments(name: str, family: NoiseKind, num_classes: int, rate: Any, kind_params: dict[str, Any]) -> None:
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise NoiseError(f"noise rate must be a number in [0, 1], got {rate!r}")
    if not family.takes_rate and rate != 0:
        raise NoiseError(f"noise kind {name!r} gives its labels as they are: it takes only rate 0, got {rate!r}")
    unknown = sorted(set(kind_params) - set(family.inputs))
    if unknown:
        accepted = ", ".join(family.inputs) or "none"
        raise NoiseError(f"noise kind {name!r} takes no input {unknown[0]!r}; it accepts: {accepted}")
    missing = [input_name for input_name in family.inputs if kind_params.get(input_name) is None]
    if missing:
        raise NoiseError(
            f"noise kind {name!r} needs {missing[0]!r} ({family.inputs[missing[0]]}); "
            "the task supplies it when its data has it"
        )
    if num_classes < 2:
        raise NoiseError("label noise needs at least 2 classes")
    if family.num_classes is not None and num_classes != family.num_classes:
        raise NoiseError(
            f"noise kind {name!r} is defined for {family.num_classes} classes, not {num_classes}; "
            "use 'symmetric' or 'uniform' for other label sets"
        )
