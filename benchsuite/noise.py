"""Synthetic label noise, as a pure function of the labels and a seed.

``corrupt_labels`` returns the noisy labels, the mask of examples whose label changed, and the
realised rate. Kinds and their default sampling follow the reference implementations
(``../shared/reference/methods.md`` §9):

* ``symmetric`` — the label moves to one of the *other* classes, uniformly (GR, DM, IMAE, SL);
  default sampling ``exact_classbalanced`` (the SL protocol the DM/IMAE papers copy).
* ``uniform`` — the label is redrawn from *all* classes and may stay correct (IEG's protocol);
  default sampling ``bernoulli``. Its realised rate is about r·(1 − 1/C).

Sampling decides which examples are corrupted: ``exact_classbalanced`` takes floor(r·N) examples
spread over the classes in proportion to their sizes (largest remainders get the leftovers),
``exact_global`` takes floor(r·N) examples uniformly, ``bernoulli`` takes each with probability r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .params import close_matches

SAMPLINGS = ("exact_classbalanced", "exact_global", "bernoulli")


class NoiseError(ValueError):
    """Invalid noise kind, rate, sampling or labels."""


@dataclass(frozen=True)
class NoisyLabels:
    labels: np.ndarray
    is_noisy: np.ndarray
    realised_rate: float
    kind: str
    rate: float
    seed: int
    sampling: str | None

    @property
    def num_noisy(self) -> int:
        return int(self.is_noisy.sum())


def _exact_count(rate: float, n: int) -> int:
    return math.floor(rate * n + 1e-9)


def select_examples(
    labels: np.ndarray, num_classes: int, rate: float, sampling: str, rng: np.random.Generator
) -> np.ndarray:
    """Boolean mask of the examples to corrupt under ``sampling``."""
    n = len(labels)
    chosen = np.zeros(n, dtype=bool)
    if sampling == "bernoulli":
        return rng.random(n) < rate
    if sampling == "exact_global":
        chosen[rng.choice(n, size=_exact_count(rate, n), replace=False)] = True
        return chosen
    counts = np.bincount(labels, minlength=num_classes)
    quota = rate * counts
    per_class = np.floor(quota + 1e-9).astype(np.int64)
    leftover = _exact_count(rate, n) - int(per_class.sum())
    if leftover > 0:  # largest remainders first, ties by class index
        order = np.lexsort((np.arange(num_classes), -(quota - per_class)))
        per_class[order[:leftover]] += 1
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        chosen[rng.choice(members, size=min(per_class[c], len(members)), replace=False)] = True
    return chosen


def _symmetric(labels: np.ndarray, chosen: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    noisy = labels.copy()
    shift = rng.integers(1, num_classes, size=int(chosen.sum()))
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy


def _uniform(labels: np.ndarray, chosen: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    noisy = labels.copy()
    noisy[chosen] = rng.integers(0, num_classes, size=int(chosen.sum()))
    return noisy


@dataclass(frozen=True)
class NoiseKind:
    """A noise family: its default sampling and how chosen labels are rewritten."""

    default_sampling: str
    corrupt: Callable[..., np.ndarray]
    doc: str


NOISE_KINDS: dict[str, NoiseKind] = {
    "symmetric": NoiseKind("exact_classbalanced", _symmetric, "to one of the other classes, uniformly"),
    "uniform": NoiseKind("bernoulli", _uniform, "redrawn from all classes (may stay correct)"),
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
    """Corrupt ``labels`` (array-like of ints in [0, num_classes)) with ``kind`` noise at ``rate``."""
    if kind not in NOISE_KINDS:
        raise NoiseError(f"unknown noise kind {kind!r}; {close_matches(kind, list(NOISE_KINDS))}")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise NoiseError(f"noise rate must be a number in [0, 1], got {rate!r}")
    family = NOISE_KINDS[kind]
    sampling = sampling or family.default_sampling
    if sampling not in SAMPLINGS:
        raise NoiseError(f"unknown sampling {sampling!r}; {close_matches(sampling, list(SAMPLINGS))}")
    clean = np.asarray(labels, dtype=np.int64)
    if clean.ndim != 1 or (len(clean) and (clean.min() < 0 or clean.max() >= num_classes)):
        raise NoiseError(f"labels must be a 1-d array of ints in [0, {num_classes})")
    if num_classes < 2:
        raise NoiseError("label noise needs at least 2 classes")
    rng = np.random.default_rng(seed)
    chosen = select_examples(clean, num_classes, float(rate), sampling, rng)
    noisy = family.corrupt(clean, chosen, num_classes, rng, **kind_params)
    is_noisy = noisy != clean
    return NoisyLabels(
        labels=noisy,
        is_noisy=is_noisy,
        realised_rate=float(is_noisy.mean()) if len(clean) else 0.0,
        kind=kind,
        rate=float(rate),
        seed=seed,
        sampling=sampling,
    )
