"""Synthetic label noise, as a pure function of the labels, the kind's inputs and a seed.

``corrupt_labels`` returns the noisy labels, the mask of examples whose label changed, and the
realised rate. Kinds, and the sampling each uses by default, follow the reference
implementations (``docs/reference.md`` §6):

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
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from .params import close_matches

SAMPLINGS = ("exact_classbalanced", "exact_global", "bernoulli")


class NoiseError(ValueError):
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


@dataclass(frozen=True)
class NoiseKind:
    """A noise family: its default sampling, how it moves labels, and what it requires.

    ``plan(num_classes, rng, **inputs)`` returns the ``FlipPlan``. ``inputs`` names the
    data-derived inputs the kind needs (supplied by the task, e.g. ``coarse_of``), with docs.
    ``num_classes`` is the class count the kind is defined for (``None``: any).
    """

    default_sampling: str
    plan: Callable[..., FlipPlan]
    doc: str
    inputs: Mapping[str, str] = field(default_factory=dict)
    num_classes: int | None = None


NOISE_KINDS: dict[str, NoiseKind] = {
    "symmetric": NoiseKind("exact_classbalanced", _symmetric_plan, "to one of the other classes, uniformly"),
    "uniform": NoiseKind("bernoulli", _uniform_plan, "redrawn from all classes (may stay correct)"),
    "cifar10_asymmetric": NoiseKind(
        "exact_classbalanced",
        _cifar10_plan,
        "truck→automobile, bird→airplane, deer→horse, cat↔dog (SL; sources from the clean labels)",
        num_classes=10,
    ),
    "cifar100_block5_pairswap": NoiseKind(
        "bernoulli",
        _block5_pairswap_plan,
        "two seeded classes swap within each block of 5 consecutive fine indices (SL code; blocks are not superclasses)",
        num_classes=100,
    ),
    "cifar100_block5_circular": NoiseKind(
        "bernoulli",
        _block5_circular_plan,
        "class i → the next class of its block of 5 consecutive fine indices (APL code; blocks are not superclasses)",
        num_classes=100,
    ),
    "cifar100_superclass_pairswap": NoiseKind(
        "exact_classbalanced",
        _superclass_pairswap_plan,
        "two seeded fine classes swap within each true superclass (ProSelfLC code)",
        inputs={"coarse_of": "the superclass of every class (CIFAR-100: from the pickle's coarse labels)"},
        num_classes=100,
    ),
}


def corrupt_labels(
    labels: Any,
    num_classes: int,
    kind: str,
    rate: float,
    seed: int,
    sampling: str | None = None,
    **kind_params: Any,
) -> NoisyLabels:
    """Corrupt ``labels`` (array-like of ints in [0, num_classes)) with ``kind`` noise at ``rate``.

    ``kind_params`` are the kind's inputs (``NOISE_KINDS[kind].inputs``). The same arguments and
    seed always give the same labels.
    """
    if kind not in NOISE_KINDS:
        raise NoiseError(f"unknown noise kind {kind!r}; {close_matches(kind, list(NOISE_KINDS))}")
    family = NOISE_KINDS[kind]
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise NoiseError(f"noise rate must be a number in [0, 1], got {rate!r}")
    sampling = sampling or family.default_sampling
    if sampling not in SAMPLINGS:
        raise NoiseError(f"unknown sampling {sampling!r}; {close_matches(sampling, list(SAMPLINGS))}")
    unknown = sorted(set(kind_params) - set(family.inputs))
    if unknown:
        accepted = ", ".join(family.inputs) or "none"
        raise NoiseError(f"noise kind {kind!r} takes no input {unknown[0]!r}; it accepts: {accepted}")
    missing = [name for name in family.inputs if kind_params.get(name) is None]
    if missing:
        raise NoiseError(
            f"noise kind {kind!r} needs {missing[0]!r} ({family.inputs[missing[0]]}); "
            "the task supplies it when its data has it"
        )
    if num_classes < 2:
        raise NoiseError("label noise needs at least 2 classes")
    if family.num_classes is not None and num_classes != family.num_classes:
        raise NoiseError(
            f"noise kind {kind!r} is defined for {family.num_classes} classes, not {num_classes}; "
            "use 'symmetric' or 'uniform' for other label sets"
        )
    clean = np.asarray(labels, dtype=np.int64)
    if clean.ndim != 1 or (len(clean) and (clean.min() < 0 or clean.max() >= num_classes)):
        raise NoiseError(f"labels must be a 1-d array of ints in [0, {num_classes})")
    rng = np.random.default_rng(seed)
    plan = family.plan(num_classes, rng, **kind_params)
    chosen = select_examples(clean, num_classes, float(rate), sampling, rng, sources=plan.sources)
    noisy = _apply(plan, clean, chosen, rng)
    is_noisy = noisy != clean
    return NoisyLabels(
        labels=noisy,
        is_noisy=is_noisy,
        realised_rate=float(is_noisy.mean()) if len(clean) else 0.0,
        kind=kind,
        rate=float(rate),
        seed=seed,
        sampling=sampling,
        details=plan.details,
    )
