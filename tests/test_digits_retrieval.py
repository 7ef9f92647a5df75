"""digits_retrieval: classes 0-4 train, test images of 5-9 each query all the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import benchsuite
from benchsuite.engine import train
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.models.embedding import EmbeddingClassifier
from benchsuite_plugins.digits.digits_retrieval import load_seen_unseen, random_shift

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def task():
    return benchsuite.load_task("digits_retrieval")


def test_declaration_and_split(task):
    described = task.describe()
    assert described["evaluation"] == "retrieval" and described["in_default_grid"] is True
    assert described["primary_metric"] == "test_map" and "test_rank1" in described["metrics"]
    x_seen, y_seen, x_unseen, y_unseen = load_seen_unseen()
    assert x_seen.shape == (675, 64) and x_unseen.shape == (224, 64)
    assert set(y_seen.tolist()) == {0, 1, 2, 3, 4} and set(y_unseen.tolist()) == {5, 6, 7, 8, 9}


def brute_force_map(feats: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    """Each image queries all the others by cosine similarity: (mAP, rank-1), one query at a time."""
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    aps, firsts = [], []
    for i in range(len(classes)):
        others = np.delete(np.arange(len(classes)), i)
        order = others[np.argsort(-(unit[others] @ unit[i]), kind="stable")]
        hits = classes[order] == classes[i]
        aps.append(np.mean(np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)))
        firsts.append(hits[0])
    return float(np.mean(aps)), float(np.mean(firsts))


def test_each_image_queries_all_the_others(task):
    data = task.prepare(PrepareRequest("none", 0.0, 0, CPU, batch_size=128))
    pixels = EmbeddingClassifier(nn.Identity(), nn.Linear(64, 5))  # the raw pixels as the embedding
    metrics = task.evaluate(pixels, data, CPU)
    _, _, x_unseen, y_unseen = load_seen_unseen()
    expected_map, expected_rank1 = brute_force_map(x_unseen.astype(np.float64), y_unseen)
    assert metrics["test_map"] == pytest.approx(expected_map, abs=1e-6)
    assert metrics["test_rank1"] == pytest.approx(expected_rank1)
    assert 0.6 < metrics["test_map"] < 0.8  # raw pixels retrieve digits decently, not perfectly


def test_random_shift_moves_whole_images_by_one_pixel():
    image = torch.arange(1, 65, dtype=torch.float32).view(1, 64).repeat(400, 1)
    shifted = random_shift(image, torch.Generator().manual_seed(0)).view(400, 8, 8)
    padded = F.pad(image[0].view(8, 8), (1, 1, 1, 1))
    candidates = torch.stack([padded[dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)])
    which = (shifted[:, None] == candidates[None]).all(-1).all(-1)
    assert which.sum(1).eq(1).all()  # every output is exactly one of the 9 shifts
    assert which.any(0).all()  # and all 9 occur
    again = random_shift(image, torch.Generator().manual_seed(0)).view(400, 8, 8)
    assert torch.equal(shifted, again)


def test_training_under_noise_through_the_engine(task):
    method = benchsuite.load_method("cce")
    spec = CellSpec(
        "cce", {}, task.name, task.identity_config(), "symmetric", 0.4, 0, "1", task.version,
        budget={"epochs": 6}, val_fraction=0.1,
    )
    record = train(method, task, spec, CPU)
    assert record.status == "completed" and len(record.curves) == 6
    final = record.final
    assert set(task.metrics) | {"val_acc"} <= set(final)
    assert 0.6 < final["test_map"] < 0.9 and final["test_rank1"] > 0.9
    assert record.curves[0]["test_map"] != final["test_map"]  # the embedding trains
    assert record.info["noise"]["realised_rate"] == pytest.approx(0.4, abs=0.01)
    assert final["val_acc"] > 0.6  # clean validation split of classes 0-4 (chance 0.2), despite 40% noise
