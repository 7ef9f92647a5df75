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
from scipy import stats as sps

CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def t_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the ``confidence`` t-interval of the mean of ``values`` (NaN below two values)."""
    n = len(values)
    if n < 2:
        return math.nan
    sd = float(np.std(values, ddof=1))
    return _t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)


@functools.lru_cache(maxsize=256)
def _t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """Student's t quantile, computed once per degrees of freedom (a board asks for a few, thousands of times)."""
    return float(sps.t.ppf(probability, degrees_of_freedom))


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
    p_value = 2 * float(sps.t.sf(abs(mean / se), df))
    return p_value < alpha and mean < 0


def average_ranks(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Per row, the mean over columns of its rank among the rows with a value in that column
    (1 = best, ties share their mean rank); ``means`` is (rows, columns[, resamples]), NaN = no value."""
    score = -means if higher_is_better else means
    missing = np.isnan(score)
    ranks = sps.rankdata(np.where(missing, np.inf, score), axis=0, method="average")
    ranks[missing] = np.nan
    with _quiet():
        return np.nanmean(ranks, axis=1)


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
    the mean over its drawn runs, and its average rank is recomputed from those means.
    """
    rows, columns, num_seeds = values.shape
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    with _quiet():
        point = average_ranks(np.nanmean(values, axis=2), higher_is_better)
    draws = np.random.default_rng(seed).integers(0, num_seeds, size=(resamples, num_seeds))
    counts = np.stack([np.bincount(draw, minlength=num_seeds) for draw in draws]).astype(float)  # (resamples, seeds)
    sums = np.zeros((rows, columns, resamples))
    runs = np.zeros((rows, columns, resamples))
    for s in range(num_seeds):  # a fixed order of additions: the same bits on every machine
        sums += filled[:, :, s, None] * counts[None, None, :, s]
        runs += present[:, :, s, None] * counts[None, None, :, s]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(runs > 0, sums / runs, np.nan)
    boot = average_ranks(means, higher_is_better)  # (rows, resamples)
    tail = 100 * (1 - confidence) / 2
    with _quiet():
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=1)
    return point, low, high


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's warnings about all-NaN slices (a row without a value: its result is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
