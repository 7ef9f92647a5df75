"""The leaderboards' statistics against scipy's reference tests and a plain re-implementation."""

import warnings

import numpy as np
import pytest
from scipy import stats as sps

from benchsuite.stats import (
    BOOTSTRAP_RESAMPLES,
    average_ranks,
    paired_worse,
    rank_intervals,
    significantly_worse,
    t_half_width,
)


def test_t_half_width_is_scipys_t_interval():
    values = np.array([0.91, 0.95, 0.88, 0.93, 0.90])
    low, high = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
    assert t_half_width(values) == pytest.approx((high - low) / 2, rel=1e-12)
    assert np.isnan(t_half_width(np.array([0.9])))


def test_paired_test_uses_the_seeds_both_rows_have():
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0.7, 0.1, size=6)  # large: it hides a small, consistent gap from an unpaired test
    best = dict(enumerate(seed_effect + 0.02))
    worse = dict(enumerate(seed_effect + 0.01 + rng.normal(0, 0.002, size=6)))
    assert sps.ttest_ind(list(worse.values()), list(best.values()), equal_var=False).pvalue > 0.05
    assert sps.ttest_rel(list(worse.values()), list(best.values())).pvalue < 0.05
    assert significantly_worse(worse, best, higher_is_better=True) is True
    # the same gap counts as better when lower is better
    assert significantly_worse(worse, best, higher_is_better=False) is False
    noisy = dict(enumerate(seed_effect + 0.02 + rng.normal(0, 0.05, size=6)))
    assert sps.ttest_rel(list(noisy.values()), list(best.values())).pvalue > 0.05
    assert significantly_worse(noisy, best, higher_is_better=True) is False
    # only seeds 0-2 pair up: the test runs on them alone
    partial = {0: worse[0], 1: worse[1], 2: worse[2], 9: 5.0}
    expected = bool(sps.ttest_rel([worse[s] for s in (0, 1, 2)], [best[s] for s in (0, 1, 2)]).pvalue < 0.05)
    assert significantly_worse(partial, best, True) is expected


def test_unpaired_rows_fall_back_to_welch_and_single_runs_are_not_tested():
    best = {0: 0.90, 1: 0.92, 2: 0.91}
    elsewhere = {5: 0.80, 6: 0.82, 7: 0.79}
    assert sps.ttest_ind([0.80, 0.82, 0.79], [0.90, 0.92, 0.91], equal_var=False).pvalue < 0.05
    assert significantly_worse(elsewhere, best, True) is True
    assert significantly_worse({5: 0.10}, best, True) is None
    assert significantly_worse({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}, True) is False  # identical: not worse
    assert significantly_worse({0: 0.4, 1: 0.5}, {0: 0.5, 1: 0.6}, True) is True  # a constant gap


def test_average_ranks_share_ties_and_skip_missing_values():
    means = np.array([[0.9, 0.5], [0.9, np.nan], [0.7, 0.6]])
    # column 0: rows 0 and 1 tie for 1st (1.5 each), row 2 is 3rd; column 1: row 2 1st, row 0 2nd
    assert average_ranks(means, higher_is_better=True).tolist() == [1.75, 1.5, 2.0]
    # lower is better: column 0 row 2 1st, rows 0 and 1 tie (2.5 each); column 1 row 0 1st, row 2 2nd
    assert average_ranks(means, higher_is_better=False).tolist() == [1.75, 2.5, 1.5]


def test_rank_intervals_are_the_plain_bootstrap_and_deterministic():
    rng = np.random.default_rng(0)
    values = rng.normal(0.8, 0.05, size=(4, 3, 5)) + np.array([0.0, 0.01, 0.03, -0.05])[:, None, None]
    values[1, 2, 4] = np.nan  # a run that did not complete
    point, low, high = rank_intervals(values, higher_is_better=True, resamples=300, seed=7)
    draws = np.random.default_rng(7).integers(0, 5, size=(300, 5))
    boot = []
    for draw in draws:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a draw without seed 4 leaves row 1 empty there
            means = np.nanmean(values[:, :, draw], axis=2)
        boot.append(average_ranks(means, True))
    boot = np.array(boot)
    assert np.allclose(low, np.nanpercentile(boot, 2.5, axis=0), atol=1e-12)
    assert np.allclose(high, np.nanpercentile(boot, 97.5, axis=0), atol=1e-12)
    assert np.allclose(point, average_ranks(np.nanmean(values, axis=2), True))
    assert np.all(low <= point) and np.all(point <= high)
    again = rank_intervals(values, higher_is_better=True, resamples=300, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((point, low, high), again))
    assert BOOTSTRAP_RESAMPLES >= 1000


def _reference_rank_intervals(values, higher_is_better, resamples, seed):
    """The per-resample formulation ``rank_intervals`` replaced: counts per draw, sums over seeds in
    seed order, ranks by ``scipy.stats.rankdata``, percentiles row by row."""
    from scipy import stats as sps

    def ranks(means):
        score = -means if higher_is_better else means
        missing = np.isnan(score)
        r = sps.rankdata(np.where(missing, np.inf, score), axis=0, method="average")
        r[missing] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(r, axis=1)

    rows, columns, num_seeds = values.shape
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        point = ranks(np.nanmean(values, axis=2))
    draws = np.random.default_rng(seed).integers(0, num_seeds, size=(resamples, num_seeds))
    counts = np.stack([np.bincount(draw, minlength=num_seeds) for draw in draws]).astype(float)
    sums, runs = np.zeros((rows, columns, resamples)), np.zeros((rows, columns, resamples))
    for s in range(num_seeds):
        sums += filled[:, :, s, None] * counts[None, None, :, s]
        runs += present[:, :, s, None] * counts[None, None, :, s]
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = ranks(np.where(runs > 0, sums / runs, np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        tail = 100 * (1 - 0.95) / 2  # as the module computes it: 2.5000000000000022
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=1)
    return point, low, high


@pytest.mark.parametrize("trial", range(6))
def test_rank_intervals_are_the_per_resample_bootstrap_bit_for_bit(trial):
    """The batched bootstrap draws the same seeds and adds them in the same order as the loop it
    replaced: every bound is the same float (boards regenerate byte for byte). Values are rounded
    so that rows tie, and in half the trials some runs are missing."""
    rng = np.random.default_rng(trial)
    rows, columns, seeds = int(rng.integers(2, 40)), int(rng.integers(1, 5)), int(rng.integers(2, 12))
    values = np.round(rng.random((rows, columns, seeds)), int(rng.integers(1, 3)))
    if trial % 2:  # half the trials: some runs missing; the others complete (a board at scale's usual case)
        values[rng.random(values.shape) < 0.2] = np.nan
    for higher_is_better in (True, False):
        expected = _reference_rank_intervals(values, higher_is_better, 400, trial)
        got = rank_intervals(values, higher_is_better, resamples=400, seed=trial)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(expected, got))


def test_rank_intervals_bit_for_bit_on_a_board_sized_table_with_empty_rows_and_infinite_values():
    """A table of many blocks of resamples (the last one partial), rows in no particular order,
    a row without any run, a row with a run of one seed only, an infinite value that scores best
    (drawn zero times it makes its cell's mean NaN, as the reference's ``0 * inf``), and whole
    rows tied."""
    rng = np.random.default_rng(11)
    values = np.round(rng.random((90, 3, 9)) - 0.3, 2)  # negative values too: their products with a count of 0 are -0.0
    values[5] = values[17]  # tied rows
    values[8] = np.nan  # a row without a run
    values[9, :, 1:] = np.nan  # a row with one seed
    values[rng.random(values.shape) < 0.1] = np.nan
    for higher_is_better in (True, False):
        values[30, 1, 4] = np.inf if higher_is_better else -np.inf
        with np.errstate(invalid="ignore"):  # the reference's 0 * inf
            expected = _reference_rank_intervals(values, higher_is_better, 1000, 5)
        got = rank_intervals(values, higher_is_better, resamples=1000, seed=5)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(expected, got))
        assert np.isnan(got[0][8]) and not np.isnan(got[0][9])


def test_the_batched_paired_test_decides_as_the_single_one():
    rng = np.random.default_rng(3)
    best = rng.normal(0.8, 0.02, size=8)
    candidates = best[None, :] + rng.normal(-0.01, 0.02, size=(50, 8))
    candidates[0] = best  # the best itself: not worse
    candidates[1] = best - 0.05  # a constant gap: worse when higher is better
    candidates[2] = best + 0.05  # and when lower is better
    for higher_is_better in (True, False):
        batched = paired_worse(candidates, best, higher_is_better)
        single = [significantly_worse(dict(enumerate(c)), dict(enumerate(best)), higher_is_better) for c in candidates]
        assert batched.tolist() == single
        assert 0 < sum(single) < len(single)  # both outcomes occur


def test_tied_ranks_are_scipys_average_ranks_with_many_ties_and_infinite_scores():
    """Ranks along the last axis for many rows at once, as ``scipy.stats.rankdata(method="average")``
    gives them: groups of ties anywhere in a row (first, middle, last), whole rows tied, and
    infinite scores (no value) whose ranks are discarded by the caller."""
    from scipy import stats as sps

    from benchsuite.stats import _tied_ranks

    rng = np.random.default_rng(3)
    scores = np.round(rng.random((7, 50, 23)), 1)  # 11 distinct values over 23 entries: many ties
    scores[0, 0] = 0.5  # a row of one tie group
    scores[1, :, :4] = np.inf  # infinite scores come last
    ranks = _tied_ranks(scores)
    expected = sps.rankdata(scores, axis=-1, method="average")
    finite = np.isfinite(scores)
    assert np.array_equal(ranks[finite], expected[finite])
    assert ranks[0, 0].tolist() == [12.0] * 23
