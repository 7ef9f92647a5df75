"""One label pipeline (hold out → trusted set → corrupt → noise record) for every task with labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fake_mars import make_fake_mars

import benchsuite
from benchsuite.noise import corrupt_labels
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.labels import measured_real_noise, split_labels

CPU = torch.device("cpu")
LABELS = np.repeat(np.arange(4), 25)  # 100 examples, 4 classes


def request(kind="symmetric", rate=0.4, seed=3, **asked) -> PrepareRequest:
    return PrepareRequest(kind, rate, seed, CPU, batch_size=8, **asked)


def test_holds_out_validation_then_trusted_then_corrupts_the_rest():
    split = split_labels(request(needs={"clean_validation": {"fraction": 0.2}, "trusted_set": {"per_class": 2}}), LABELS, 4)
    assert len(split.val) == 20 and len(split.trusted) == 8 and len(split.train) == 72
    assert set(split.val).isdisjoint(split.trusted) and set(split.train).isdisjoint(set(split.val) | set(split.trusted))
    assert np.bincount(LABELS[split.trusted]).tolist() == [2, 2, 2, 2]
    np.testing.assert_array_equal(split.clean, LABELS[split.train])
    # the noise is the generator's, on the labels left after both hold-outs, from the run's seed
    expected = corrupt_labels(LABELS[split.train], 4, "symmetric", 0.4, 3)
    np.testing.assert_array_equal(split.noisy, expected.labels)
    assert split.noise.num_noisy == expected.num_noisy == 28 and split.noise.realised_rate == pytest.approx(28 / 72)
    assert split.noise.params == {"sampling": "exact_classbalanced"}
    assert split.info == {"num_val": 20, "trusted_indices": split.trusted.tolist()}


def test_trusted_set_from_a_clean_pool_leaves_the_training_set_whole():
    pool = np.repeat(np.arange(4), 5)
    split = split_labels(request("none", 0.0, needs={"trusted_set": {"per_class": 3}}), LABELS, 4, trusted_pool=pool)
    assert len(split.train) == 100 and np.bincount(pool[split.trusted]).tolist() == [3, 3, 3, 3]
    assert split.noise.num_noisy == 0 and np.array_equal(split.noisy, LABELS)


def test_real_noise_is_measured_where_the_truth_is_known():
    labels = np.array([0, 1, 2, 3, 0, 1])
    truth = np.array([0, 2, -1, 3, 1, -1])  # 4 known, 2 of them wrong
    record = measured_real_noise(split_labels(request("none", 0.0), labels, 4).noise, labels, truth, "real")
    assert (record.num_noisy, record.realised_rate, record.params) == (2, 0.5, {"source": "real"})


def test_a_data_sets_own_noisy_labels_keep_what_is_known_of_their_truth():
    labels = np.repeat(np.arange(4), 25)
    truth = np.where(np.arange(100) % 2 == 0, labels, -1)  # every other example checked ...
    truth[::10] = (labels[::10] + 1) % 4  # ... and a fifth of the checked ones wrong
    split = split_labels(request("none", 0.0, needs={"clean_validation": {"fraction": 0.2}}), labels, 4, truth=truth, truth_source="real")
    known = truth[split.train] >= 0
    np.testing.assert_array_equal(split.truth_known, known)
    np.testing.assert_array_equal(split.noisy, labels[split.train])  # the method sees the data set's labels
    np.testing.assert_array_equal(split.clean[known], truth[split.train][known])
    np.testing.assert_array_equal(split.clean[~known], labels[split.train][~known])
    wrong = int((truth[split.train][known] != labels[split.train][known]).sum())
    assert wrong > 0 and (split.noise.num_noisy, split.noise.realised_rate) == (wrong, pytest.approx(wrong / known.sum()))
    assert split.noise.params == {"source": "real"}
    nothing = split_labels(request("none", 0.0), labels, 4, truth=np.full(100, -1), truth_source="unknown")
    assert not nothing.truth_known.any() and np.isnan(nothing.noise.realised_rate) and nothing.noise.num_noisy == 0
    assert split_labels(request(), labels, 4).truth_known.all()  # synthetic noise: every clean label is known
    with pytest.raises(ValueError, match="noisy already"):
        split_labels(request("symmetric", 0.2), labels, 4, truth=truth)


def test_what_the_draw_decided_is_recorded():
    coarse = np.arange(100) // 5  # CIFAR-100-sized label set, superclasses of 5
    split = split_labels(
        request("cifar100_superclass_pairswap", 0.4, 0), np.repeat(np.arange(100), 3), 100, noise_inputs={"coarse_of": coarse}
    )
    assert split.noise.params["sampling"] == "exact_classbalanced" and len(split.noise.params) > 1


def test_mars_records_the_same_provenance_as_an_in_memory_task(tmp_path):
    """MARS (tracklets read from files) and digits (tensors) record their noise the same way."""
    mars = benchsuite.load_task(
        "mars", root=str(make_fake_mars(tmp_path).root), arch="resnet18", weights="random", height=64, width=32,
        seq_len=2, test_frames=3, epoch_iterations=2, num_workers=0,
    )  # fmt: skip
    asked = request("symmetric", 0.5, 0, needs={"clean_validation": {"fraction": 0.25}})
    data = mars.prepare(asked)
    fields = {f.name for f in dataclasses.fields(data.noise)}
    digits = benchsuite.load_task("digits").prepare(asked)
    assert set(data.noise.params) == set(digits.noise.params) == {"sampling"}
    assert {k for k in digits.info if k in ("num_val", "trusted_indices")} <= set(data.info)
    assert fields == {"kind", "rate", "seed", "realised_rate", "num_noisy", "params"}
    assert data.noise.num_noisy == int(data.is_noisy.sum()) > 0
