"""Label-noise generators: exact counts, the maps of every kind, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from benchsuite.noise import NoiseError, corrupt_labels
from benchsuite_plugins.cifar.fake_release import CIFAR100_COARSE_OF_FINE

BALANCED10 = np.repeat(np.arange(10), 5000)  # CIFAR-10's training label counts
BALANCED100 = np.repeat(np.arange(100), 500)  # CIFAR-100's
COARSE = np.asarray(CIFAR100_COARSE_OF_FINE)


def per_class_noisy(result, clean: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(clean[result.is_noisy], minlength=num_classes)


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.6, 0.8])
def test_symmetric_exact_classbalanced_counts_and_never_same_class(rate):
    result = corrupt_labels(BALANCED10, 10, "symmetric", rate, seed=3)
    assert result.sampling == "exact_classbalanced"
    assert result.num_noisy == round(rate * 50_000)
    assert (per_class_noisy(result, BALANCED10, 10) == round(rate * 5000)).all()
    # every chosen label moved, so the realised rate is the requested one
    assert result.realised_rate == pytest.approx(rate)
    assert not (result.labels[result.is_noisy] == BALANCED10[result.is_noisy]).any()


def test_symmetric_targets_are_uniform_over_the_other_classes():
    result = corrupt_labels(BALANCED10, 10, "symmetric", 0.4, seed=0)
    flips = np.zeros((10, 10), dtype=int)
    np.add.at(flips, (BALANCED10[result.is_noisy], result.labels[result.is_noisy]), 1)
    assert (np.diag(flips) == 0).all()
    off = flips[~np.eye(10, dtype=bool)]
    # 2000 flips per class over 9 targets: 222 expected, binomial sd ~14
    assert off.min() > 222 - 70 and off.max() < 222 + 70


def test_exact_classbalanced_on_imbalanced_classes_hits_the_total():
    labels = np.repeat(np.arange(3), [101, 37, 12])
    result = corrupt_labels(labels, 3, "symmetric", 0.3, seed=1)
    assert result.num_noisy == 45  # floor(0.3 * 150)
    got = per_class_noisy(result, labels, 3)
    assert np.all(np.abs(got - 0.3 * np.array([101, 37, 12])) < 1)


def test_exact_global_and_bernoulli_sampling():
    glob = corrupt_labels(BALANCED10, 10, "symmetric", 0.37, seed=5, sampling="exact_global")
    assert glob.num_noisy == 18_500
    assert len(set(per_class_noisy(glob, BALANCED10, 10))) > 1  # not class-balanced
    bern = corrupt_labels(BALANCED10, 10, "symmetric", 0.37, seed=5, sampling="bernoulli")
    assert abs(bern.num_noisy - 18_500) < 5 * np.sqrt(50_000 * 0.37 * 0.63)


def test_uniform_may_keep_the_label():
    result = corrupt_labels(BALANCED10, 10, "uniform", 0.5, seed=0)
    assert result.sampling == "bernoulli"
    # the label is redrawn for about half the examples and stays right in 1/10 of those
    assert result.realised_rate == pytest.approx(0.5 * 0.9, abs=0.01)
    exact = corrupt_labels(BALANCED10, 10, "uniform", 0.5, seed=0, sampling="exact_global")
    assert 0.9 * 25_000 - 300 < exact.num_noisy < 0.9 * 25_000 + 300


def test_determinism_per_seed():
    for kind, labels, classes, inputs in [
        ("symmetric", BALANCED10, 10, {}),
        ("uniform", BALANCED10, 10, {}),
        ("cifar10_asymmetric", BALANCED10, 10, {}),
        ("cifar100_block5_pairswap", BALANCED100, 100, {}),
        ("cifar100_block5_circular", BALANCED100, 100, {}),
        ("cifar100_superclass_pairswap", BALANCED100, 100, {"coarse_of": COARSE}),
    ]:
        a = corrupt_labels(labels, classes, kind, 0.4, seed=11, **inputs)
        b = corrupt_labels(labels, classes, kind, 0.4, seed=11, **inputs)
        c = corrupt_labels(labels, classes, kind, 0.4, seed=12, **inputs)
        assert np.array_equal(a.labels, b.labels) and a.details == b.details, kind
        assert not np.array_equal(a.labels, c.labels), kind


def test_cifar10_asymmetric_map_exact_counts_no_cascade():
    result = corrupt_labels(BALANCED10, 10, "cifar10_asymmetric", 0.4, seed=0)
    pairs = set(zip(BALANCED10[result.is_noisy].tolist(), result.labels[result.is_noisy].tolist()))
    assert pairs == {(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)}
    counts = per_class_noisy(result, BALANCED10, 10)
    assert counts.tolist() == [0, 0, 2000, 2000, 2000, 2000, 0, 0, 0, 2000]
    # sources come from the clean labels: cat→dog and dog→cat are both exactly 40% of 5,000
    assert result.realised_rate == pytest.approx(0.2)


def test_block5_pairswap_swaps_one_seeded_pair_per_block():
    result = corrupt_labels(BALANCED100, 100, "cifar100_block5_pairswap", 0.4, seed=0)
    assert result.sampling == "bernoulli"
    pairs = result.details["pairs"]
    assert [a // 5 for a, _ in pairs] == list(range(20)) and all(a // 5 == b // 5 and a < b for a, b in pairs)
    swap = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    noisy_clean = BALANCED100[result.is_noisy]
    assert set(noisy_clean.tolist()) == set(swap)
    assert all(swap[c] == n for c, n in zip(noisy_clean.tolist(), result.labels[result.is_noisy].tolist()))
    # Bernoulli(0.4) over the 40 source classes: 8,000 expected
    assert abs(result.num_noisy - 8000) < 5 * np.sqrt(20_000 * 0.4 * 0.6)
    other_seed = corrupt_labels(BALANCED100, 100, "cifar100_block5_pairswap", 0.4, seed=1)
    assert other_seed.details["pairs"] != pairs


def test_block5_circular_moves_to_the_next_class_of_the_block():
    result = corrupt_labels(BALANCED100, 100, "cifar100_block5_circular", 0.3, seed=0)
    clean, noisy = BALANCED100[result.is_noisy], result.labels[result.is_noisy]
    assert np.array_equal(noisy, clean - clean % 5 + (clean + 1) % 5)
    assert set(noisy[clean == 4].tolist()) == {0} and set(noisy[clean == 99].tolist()) == {95}
    exact = corrupt_labels(BALANCED100, 100, "cifar100_block5_circular", 0.3, seed=0, sampling="exact_classbalanced")
    assert (per_class_noisy(exact, BALANCED100, 100) == 150).all()


def test_blocks_of_five_are_not_superclasses():
    assert COARSE[:5].tolist() == [4, 1, 14, 8, 0]
    assert (np.bincount(COARSE, minlength=20) == 5).all()


def test_superclass_pairswap_swaps_within_true_superclasses_exactly():
    result = corrupt_labels(BALANCED100, 100, "cifar100_superclass_pairswap", 0.4, seed=0, coarse_of=COARSE)
    assert result.sampling == "exact_classbalanced"
    pairs = result.details["pairs"]
    assert sorted(COARSE[a] for a, _ in pairs) == list(range(20))
    assert all(COARSE[a] == COARSE[b] for a, b in pairs)
    swap = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    counts = per_class_noisy(result, BALANCED100, 100)
    assert all(counts[c] == (200 if c in swap else 0) for c in range(100))
    clean, noisy = BALANCED100[result.is_noisy], result.labels[result.is_noisy]
    assert all(swap[c] == n for c, n in zip(clean.tolist(), noisy.tolist()))
    assert result.realised_rate == pytest.approx(0.4 * 40 / 100)


def test_rate_zero_and_one():
    assert corrupt_labels(BALANCED10, 10, "symmetric", 0.0, seed=0).num_noisy == 0
    assert corrupt_labels(BALANCED10, 10, "symmetric", 1.0, seed=0).num_noisy == 50_000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "symetric"}, "unknown noise kind 'symetric'; did you mean 'symmetric'"),
        ({"rate": 1.5}, "noise rate must be a number in [0, 1], got 1.5"),
        ({"rate": -0.1}, "noise rate must be a number in [0, 1]"),
        ({"rate": True}, "noise rate must be a number in [0, 1], got True"),
        ({"sampling": "exact"}, "unknown sampling 'exact'"),
        ({"coarse_of": COARSE}, "noise kind 'symmetric' takes no input 'coarse_of'; it accepts: none"),
        ({"kind": "cifar100_superclass_pairswap", "num_classes": 100}, "needs 'coarse_of'"),
        ({"kind": "cifar10_asymmetric", "num_classes": 100}, "is defined for 10 classes, not 100"),
        ({"kind": "cifar100_block5_pairswap"}, "is defined for 100 classes, not 10"),
        ({"labels": [0, 1, 10]}, "labels must be a 1-d array of ints in [0, 10)"),
    ],
)
def test_errors_name_the_problem(kwargs, message):
    args = {"labels": [0, 1, 2, 3], "num_classes": 10, "kind": "symmetric", "rate": 0.4, "seed": 0} | kwargs
    with pytest.raises(NoiseError) as err:
        corrupt_labels(**args)
    assert message in str(err.value)


def test_superclass_pairswap_validates_coarse_of():
    with pytest.raises(NoiseError, match="superclass of each of the 100 classes"):
        corrupt_labels(BALANCED100, 100, "cifar100_superclass_pairswap", 0.4, 0, coarse_of=COARSE[:50])
    lonely = COARSE.copy()
    lonely[0] = 7  # superclass 4 keeps 4 classes, fine; make superclass 19 a singleton instead
    lonely[np.flatnonzero(COARSE == 19)[1:]] = 18
    with pytest.raises(NoiseError, match=r"superclasses \[19\] have fewer than 2 classes"):
        corrupt_labels(BALANCED100, 100, "cifar100_superclass_pairswap", 0.4, 0, coarse_of=lonely)

