"""The statistics of the leaderboards, as pure functions of arrays of per-seed results.

* ``t_half_width``: the half-width of the 95 % Student-t confidence interval of a mean over seeds.
* ``significantly_worse``: the test behind bold — is a row worse than the column's best? A paired
  t-test over the seeds both rows completed (a seed fixes the noisy labels, the initialisation
  and the batch order, so runs of one seed are paired); with fewer than two shared seeds, Welch's
  unpaired t-test; with fewer than two runs on a side, no test.
* ``rank_intervals``: the average rank over columns and its 95 % bootstrap interval: seeds are
  resampled with replacement, the same draw for every row and column (the pairing again), from a
  generator with a fixed seed, so the output is a deterministic function of the input.

Every test is two-sided at ``ALPHA`` = 5 %, with no correction for the number of comparisons.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from typing import Iterator, Mapping

import numpy as np
from scipy import special  # the t distribution's functions without scipy.stats (a second of imports)

CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: Output elements summed per block of resamples in ``rank_intervals``: the running sums (128 KB)
#: and each seed's gathered contributions stay in the processor's cache while every seed is added
#: (measured on a 10^5-run board: half the time of blocks twice this size).
_BLOCK_ELEMENTS = 1 << 14


def t_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the ``confidence`` t-interval of the mean of ``values`` (NaN below two values)."""
    n = len(values)
    if n < 2:
        return math.nan
    sd = float(np.std(values, ddof=1))
    return _t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)


def t_half_widths(values: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """``t_half_width`` of each row of ``values`` (cells, n): each row's deviation is reduced along
    its own contiguous row, as for that row alone, so the numbers are the same bit for bit."""
    n = values.shape[1]
    if n < 2:
        return [math.nan] * len(values)
    quantile = _t_quantile(0.5 + confidence / 2, n - 1)
    return [quantile * sd / math.sqrt(n) for sd in np.ascontiguousarray(values).std(axis=1, ddof=1).tolist()]


@functools.lru_cache(maxsize=256)
def _t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """Student's t quantile (``scipy.stats.t.ppf``), computed once per degrees of freedom (a board
    asks for a few, thousands of times)."""
    return float(special.stdtrit(degrees_of_freedom, probability))


def _t_two_sided_p(statistic: float, degrees_of_freedom: float) -> float:
    """The two-sided p-value of a t statistic: twice ``scipy.stats.t.sf(|t|, df)``."""
    return 2 * float(special.stdtr(degrees_of_freedom, -abs(statistic)))


def significantly_worse(
    candidate: Mapping[int, float], best: Mapping[int, float], higher_is_better: bool, alpha: float = ALPHA
) -> bool | None:
    """Whether ``candidate`` is significantly worse than ``best`` (seed -> value, one value per seed).

    Paired t-test on the seeds both have (two or more), else Welch's t-test (two or more values on
    each side), else ``None``: not testable. Two-sided at ``alpha``; "worse" also needs the mean
    difference to point the wrong way. Constant differences are decided without a p-value: any
    difference in the wrong direction is significant, none is not.
    """
    sign = 1.0 if higher_is_better else -1.0
    common = sorted(set(candidate) & set(best))
    if len(common) >= 2:
        diff = sign * (np.array([candidate[s] for s in common]) - np.array([best[s] for s in common]))
        mean, se, df = float(diff.mean()), float(diff.std(ddof=1)) / math.sqrt(len(diff)), len(diff) - 1.0
    elif len(candidate) >= 2 and len(best) >= 2:
        a, b = np.array(list(candidate.values())), np.array(list(best.values()))
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        mean, se = sign * float(a.mean() - b.mean()), math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else 1.0
    else:
        return None
    if se == 0:
        return mean < 0
    return _t_two_sided_p(mean / se, df) < alpha and mean < 0


def paired_worse(candidates: np.ndarray, best: np.ndarray, higher_is_better: bool, alpha: float = ALPHA) -> np.ndarray:
    """``significantly_worse`` by the paired test for many rows at once: ``candidates`` is (rows,
    seeds) and ``best`` (seeds,), every row paired with ``best`` on all (two or more) seeds. Each
    row's mean and deviation are reduced along its own contiguous row, as for one row alone, so
    the decisions equal ``significantly_worse``'s bit for bit."""
    sign = 1.0 if higher_is_better else -1.0
    diff = np.ascontiguousarray(sign * (candidates - best[None, :]))
    n = diff.shape[1]
    mean = diff.mean(axis=1)
    se = diff.std(axis=1, ddof=1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = 2 * special.stdtr(n - 1.0, -np.abs(mean / se))
    return np.where(se == 0, mean < 0, (p_value < alpha) & (mean < 0))


def average_ranks(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Per row, the mean over columns of its rank among the rows with a value in that column
    (1 = best, ties share their mean rank); ``means`` is (rows, columns[, resamples]), NaN = no value."""
    score = -means if higher_is_better else means
    by_column = np.array(np.moveaxis(score, (0, 1), (-1, -2)), dtype=float)  # (..., columns, rows), a copy
    return np.moveaxis(_mean_ranks(by_column), -1, 0)


def _mean_ranks(scores: np.ndarray) -> np.ndarray:
    """Per row, the mean of its ranks over the columns where it has a score, (..., rows), from
    ``scores`` (..., columns, rows), NaN = no score, which it overwrites. Ranks are half-integers,
    so their sums are exact in any order: ``sum / count`` is ``mean`` and ``nanmean``'s value bit for bit."""
    missing = np.isnan(scores)
    some_missing = bool(missing.any())
    if some_missing:
        scores[missing] = np.inf
    ranks = _tied_ranks(scores)
    columns = scores.shape[-2]
    if not some_missing:
        return ranks.sum(axis=-2) / columns
    ranks[missing] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # a row without any value: 0 / 0 = NaN
        return ranks.sum(axis=-2) / (columns - missing.sum(axis=-2))


def _tied_ranks(scores: np.ndarray) -> np.ndarray:
    """The ranks (1 = smallest; ties share their mean rank, as ``scipy.stats.rankdata``'s
    ``average``) of ``scores`` along its last axis, for every leading index at once. Ranks are
    half-integers, exact in floating point whatever the order of any later sum over them. Ties
    among infinite scores (no value: their ranks are discarded) are left unresolved. numpy's
    default sorts: measured faster than its stable ones on rows nearly in order, and much faster on
    rows in any order."""
    shape = scores.shape
    flat = np.ascontiguousarray(scores.reshape(-1, shape[-1]))
    order = np.argsort(flat, axis=1)
    ordered = np.sort(flat, axis=1)  # the values in ``order`` (ties compare equal): a sort is cheaper than gathering them
    ranks_in_order = np.broadcast_to(np.arange(1.0, shape[-1] + 1), ordered.shape).copy()
    tied = (ordered[:, 1:] == ordered[:, :-1]) & np.isfinite(ordered[:, 1:])
    with_ties = np.flatnonzero(tied.any(axis=1))  # rows with finite ties: their groups share the mean rank
    if len(with_ties):
        ranks_in_order[with_ties] = _average_tied(tied[with_ties])
    ranks = np.empty(flat.size)
    # scattered through flat indices: numpy's 1-d indexing is about twice as fast as put_along_axis
    ranks[(order + np.arange(0, flat.size, shape[-1])[:, None]).ravel()] = ranks_in_order.ravel()
    return ranks.reshape(shape)


def _average_tied(tied: np.ndarray) -> np.ndarray:
    """The ranks of sorted rows whose entry ``i + 1`` ties entry ``i`` where ``tied[:, i]``: each
    group of tied entries, from position ``first`` to ``last``, has the rank ``(first + last) / 2 + 1``.
    The groups of all rows are numbered in one running count over the flattened rows (a group
    never spans two rows: each row's first entry starts one)."""
    rows, width = tied.shape[0], tied.shape[1] + 1
    starts = np.ones((rows, width), dtype=bool)
    starts[:, 1:] = ~tied
    flat = starts.ravel()
    group = np.cumsum(flat) - 1
    begins = np.flatnonzero(flat)
    first = begins % width
    last = first + np.diff(begins, append=flat.size) - 1
    return ((first + last) / 2 + 1)[group].reshape(rows, width)


@functools.lru_cache(maxsize=16)
def _resample_counts(num_seeds: int, resamples: int, seed: int) -> np.ndarray:
    """How often each seed is drawn in each resample, (resamples, seeds): the draws of a generator
    seeded with ``seed``, made in one call, so every table of a board with as many seeds shares them."""
    draws = np.random.default_rng(seed).integers(0, num_seeds, size=(resamples, num_seeds))
    offsets = (draws + num_seeds * np.arange(resamples)[:, None]).ravel()
    counts = np.bincount(offsets, minlength=resamples * num_seeds).reshape(resamples, num_seeds).astype(float)
    counts.flags.writeable = False
    return counts


def _bootstrap_ranks(values: np.ndarray, higher_is_better: bool, counts: np.ndarray) -> np.ndarray:
    """Per resample and row, the row's average rank over the columns from the means of its drawn
    runs, (resamples, rows); NaN for a row without a drawn run anywhere.

    Each mean's sum adds the seeds' contributions one seed after another, in seed order, from
    zero: the same bits on every machine and for every way of batching the resamples. A seed drawn
    ``k`` times contributes ``k * value``, read from a table of those products (one row per seed
    and count) rather than multiplied again per resample. A seed not drawn contributes zero, and
    adding zero leaves a sum's bits as they are (a sum from +0 is never -0): each resample adds
    only its drawn seeds (about 63 % of them), the resamples taken in order of how many they drew
    so that a block's resamples need about as many additions — unless a value is infinite, whose
    ``0 * inf`` is NaN and must be added. The resamples are summed, divided and ranked a block at
    a time, so the working arrays stay in the processor's cache."""
    rows, columns, num_seeds = values.shape
    cells = rows * columns
    by_seed = np.ascontiguousarray(values.transpose(2, 1, 0)).reshape(num_seeds, cells)  # (seeds, columns x rows)
    present = ~np.isnan(by_seed)
    filled = np.where(present, by_seed, 0.0)
    top = int(counts.max()) + 1
    with np.errstate(invalid="ignore"):  # 0 * inf = NaN: a cell with an infinite value has no mean without it
        products = (np.arange(float(top))[None, :, None] * filled[:, None, :]).reshape(num_seeds * top, cells)
    products = np.concatenate([products, np.zeros((1, cells))])  # the last row: nothing to add
    added, by_additions, additions = _additions(counts, top, bool(np.isfinite(filled).all()))
    present_runs = present.astype(float)
    resamples = len(counts)
    ranks = np.empty((resamples, rows))
    block = max(1, _BLOCK_ELEMENTS // max(cells, 1))
    buffer = np.empty((min(block, resamples), cells))
    for start in range(0, resamples, block):
        taken = by_additions[start : start + block]
        sums = buffer[: len(taken)]
        sums.fill(0.0)
        for step in range(additions[taken[-1]]):  # the block's most: its last, in this order
            sums += products[added[step, start : start + block]]
        runs = counts[taken] @ present_runs  # whole numbers: exact in any order
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(sums, runs, out=sums)  # no run drawn: 0 / 0 = NaN
        if higher_is_better:
            np.negative(sums, out=sums)
        ranks[taken] = _mean_ranks(sums.reshape(len(taken), columns, rows))
    return ranks


def _additions(counts: np.ndarray, top: int, skip_undrawn: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The product rows each resample adds, in seed order: ``added[step, i]`` is the row of the
    ``step``-th seed the ``i``-th resample of ``by_additions`` adds (``s * top + count``; past its
    last, the zero row ``len(counts[0]) * top``); ``by_additions`` orders the resamples by
    ``additions``, how many each adds: its drawn seeds, or every seed unless ``skip_undrawn``."""
    resamples, num_seeds = counts.shape
    rows_of = counts.astype(np.intp) + top * np.arange(num_seeds)
    adds = counts > 0 if skip_undrawn else np.ones(counts.shape, dtype=bool)
    additions = adds.sum(axis=1)
    by_additions = np.argsort(additions, kind="stable")
    first = np.argsort(~adds[by_additions], axis=1, kind="stable")  # the added seeds first, in seed order
    packed = np.where(adds[by_additions], rows_of[by_additions], num_seeds * top)
    added = np.ascontiguousarray(np.take_along_axis(packed, first, axis=1).T)  # (steps, resamples)
    return added, by_additions, additions


def rank_intervals(
    values: np.ndarray,
    higher_is_better: bool,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average rank per row, and the bounds of its percentile bootstrap interval over seeds.

    ``values`` is (rows, columns, seeds), NaN where a row has no run of that seed. Each resample
    draws the seeds with replacement once for the whole table; a row's mean in a column is then
    the mean over its drawn runs, and its average rank is recomputed from those means. All
    resamples are computed together, as arrays, with the rows in the order of their point
    estimate (a row's ranks do not depend on where it stands): each resample's sort then starts
    nearly in order.
    """
    num_seeds = values.shape[2]
    with _quiet():
        point = average_ranks(np.nanmean(values, axis=2), higher_is_better)
    order = np.argsort(point, kind="stable")
    boot = np.empty((len(point), resamples))  # (rows, resamples)
    boot[order] = _bootstrap_ranks(values[order], higher_is_better, _resample_counts(num_seeds, resamples, seed)).T
    tail = 100 * (1 - confidence) / 2
    low, high = np.full(len(boot), np.nan), np.full(len(boot), np.nan)
    complete = ~np.isnan(boot).any(axis=1)
    if complete.any():  # the rows ranked in every resample: one vectorised call
        low[complete], high[complete] = np.percentile(boot[complete], [tail, 100 - tail], axis=1)
    with _quiet():
        for row in np.flatnonzero(~complete):
            low[row], high[row] = np.nanpercentile(boot[row], [tail, 100 - tail])
    return point, low, high


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's warnings about all-NaN slices (a row without a value: its result is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
