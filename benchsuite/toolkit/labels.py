"""The label pipeline every task with labels runs: hold out → trusted set → corrupt → noise record.

``split_labels`` takes the clean training labels of a data set and what the run asks
(``PrepareRequest``), and decides, from the run's seed and in this order:

1. the clean validation split (need ``clean_validation``, ``request.val_fraction`` > 0): a
   stratified share of the examples, removed from the training set (``stratified_holdout``);
2. the trusted set (need ``trusted_set``, ``request.trusted_per_class`` > 0): that many clean
   examples of every class, drawn from what is left and removed from the training set before any
   noise is drawn (IEG's protocol, ``docs/reference.md`` §5) — or, for a data set that ships a
   clean subset of its own (Clothing1M), drawn from that ``trusted_pool`` instead;
3. the label noise: ``request.noise_kind`` at ``request.noise_rate`` on the remaining labels
   (``benchsuite.noise.corrupt_labels``), with the noise inputs the task knows of its label set;
4. the ``NoiseRecord`` stored with the run: kind, rate, seed, the realised rate and count, the
   sampling used and what the draw decided (e.g. which classes swap). For a data set whose own
   labels are noisy (noise kind ``none``), the task gives the ``truth`` it knows (none at all for
   ANIMAL-10N, part of it for Clothing1M): the realised rate is measured there, NaN where nothing
   is known, and the split says which training rows have a known clean label, so that nothing
   downstream counts an unchecked human label as clean.

Tasks hand the rows and labels to their own data sources (in-memory tensors, image files,
tracklets), so that every task records the same provenance. ``benchsuite.prepare_in_memory``
runs it for data sets that fit in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..noise import corrupt_labels, noise_kind

if TYPE_CHECKING:
    from ..task import PrepareRequest


@dataclass
class NoiseRecord:
    """The label noise of one run, as realised: stored with the run."""

    kind: str
    rate: float
    seed: int
    realised_rate: float
    num_noisy: int
    params: dict[str, Any] = field(default_factory=dict)


def draw_trusted(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced trusted subset: ``per_class`` examples of every class, seeded."""
    rng = np.random.default_rng([seed, 0x7275])  # a stream of its own, apart from the noise's
    picked = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} training examples, fewer than {per_class} trusted asked")
        picked.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified, seeded ``fraction`` of the examples (at least one per class)."""
    rng = np.random.default_rng([seed, 0x76616C])  # its own stream, apart from noise and trusted
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        size = max(1, round(fraction * len(members)))
        picked.append(rng.choice(members, size=min(size, len(members) - 1), replace=False))
    return np.sort(np.concatenate(picked))


@dataclass
class LabelSplit:
    """The outcome of the label pipeline for one run. Row indices point into the labels given to
    ``split_labels`` (``trusted``: into ``trusted_pool`` when one was given)."""

    #: Rows that train, in increasing order.
    train: np.ndarray
    #: Their clean labels (where unknown, the label the method sees), and the labels the method sees.
    clean: np.ndarray
    noisy: np.ndarray
    noise: NoiseRecord
    #: Whether each training row's clean label is known: every row unless ``truth`` said otherwise.
    truth_known: np.ndarray
    #: Rows of the clean validation split, or ``None``.
    val: np.ndarray | None = None
    #: Rows of the trusted set, or ``None``.
    trusted: np.ndarray | None = None
    #: What the run records about the split: ``num_val``, ``trusted_indices``.
    info: dict[str, Any] = field(default_factory=dict)


def _noise_record(
    request: PrepareRequest,
    clean: np.ndarray,
    train_rows: np.ndarray,
    num_classes: int,
    noise_inputs: Mapping[str, Any] | None,
) -> tuple[np.ndarray, NoiseRecord]:
    """The labels the method sees and the record of the noise drawn on ``clean``, the labels at
    ``train_rows`` (given to the kinds that ask for ``train_index``, e.g. per-example annotations)."""
    noise_params = dict(request.noise_params)
    if request.noise_kind == "none":
        noisy, realised, num_noisy = clean, 0.0, 0
    else:
        wanted = noise_kind(request.noise_kind).inputs
        inputs = {k: v for k, v in {**(noise_inputs or {}), "train_index": train_rows}.items() if k in wanted}
        corrupted = corrupt_labels(
            clean, num_classes, request.noise_kind, request.noise_rate, request.seed, **{**inputs, **noise_params}
        )
        noisy, realised, num_noisy = corrupted.labels, corrupted.realised_rate, corrupted.num_noisy
        if corrupted.sampling is not None:
            noise_params["sampling"] = corrupted.sampling
        noise_params.update(corrupted.details)
    record = NoiseRecord(
        kind=request.noise_kind,
        rate=request.noise_rate,
        seed=request.seed,
        realised_rate=realised,
        num_noisy=num_noisy,
        params=noise_params,
    )
    return noisy, record


def measured_real_noise(record: NoiseRecord, labels: np.ndarray, truth: np.ndarray, source: str) -> NoiseRecord:
    """``record`` of a run on a data set's own noisy ``labels``, with the noise measured where the
    truth is known (``truth`` ≥ 0): its count and rate over those examples, and where it comes from."""
    known = truth >= 0
    num_noisy = int((labels[known] != truth[known]).sum())
    record.realised_rate = num_noisy / int(known.sum()) if known.any() else math.nan
    record.num_noisy = num_noisy
    record.params = {**record.params, "source": source}
    return record


def split_labels(
    request: PrepareRequest,
    labels: np.ndarray,
    num_classes: int,
    *,
    noise_inputs: Mapping[str, Any] | None = None,
    trusted_pool: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    truth_source: str = "",
) -> LabelSplit:
    """Run the label pipeline (module docstring) on the clean training ``labels`` of a data set.

    ``noise_inputs``: what the task knows about its label set that some noise kinds need (e.g.
    ``coarse_of``); each kind receives only the inputs it declares, and they are not recorded.
    ``trusted_pool``: the labels of a clean set the data set ships, to draw the trusted set from
    instead of the training set (which then keeps all its examples).
    ``truth``: for a data set whose ``labels`` are its own noisy ones (noise kind ``none``), the
    clean label of every example where known and −1 where not; the noise is measured there
    (``measured_real_noise``, recording ``truth_source``) and ``truth_known`` marks those rows.
    """
    if truth is not None and request.noise_kind != "none":
        raise ValueError(f"synthetic {request.noise_kind!r} noise on labels that are noisy already: use noise kind 'none'")
    info: dict[str, Any] = {}
    keep = np.arange(len(labels))
    val = None
    if request.val_fraction > 0:
        val = stratified_holdout(labels, request.val_fraction, request.seed)
        keep = np.setdiff1d(keep, val)
        info["num_val"] = len(val)
    trusted = None
    if request.trusted_per_class > 0:
        if trusted_pool is None:
            trusted = keep[draw_trusted(labels[keep], num_classes, request.trusted_per_class, request.seed)]
            keep = np.setdiff1d(keep, trusted)
        else:
            trusted = draw_trusted(trusted_pool, num_classes, request.trusted_per_class, request.seed)
        info["trusted_indices"] = trusted.tolist()
    noisy, record = _noise_record(request, labels[keep], keep, num_classes, noise_inputs)
    known = np.ones(len(keep), dtype=bool)
    clean = labels[keep]
    if truth is not None:
        record = measured_real_noise(record, noisy, truth[keep], truth_source)
        known = truth[keep] >= 0
        clean = np.where(known, truth[keep], noisy)
    return LabelSplit(
        train=keep, clean=clean, noisy=noisy, noise=record, truth_known=known, val=val, trusted=trusted, info=info
    )
