"""benchsuite_plugins.sentiment.text: iclr15 preprocessing, deterministic cached PV-DBOW, classifier, solver, imbalance."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchsuite_plugins.sentiment import text
from benchsuite_plugins.sentiment.text import (
    DM_SOLVER,
    PVDBOW,
    document_vectors,
    iclr15_tokens,
    imbalance_subset,
    sentiment_classifier,
)

SMALL = PVDBOW(vector_size=16, epochs=5)
WORDS = "the a movie film plot actor scene story great awful fine dull".split()


def corpus(n: int = 60, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=12)) + "." for _ in range(n)]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(tmp_path / "cache"))


def test_iclr15_tokens_lowercase_drop_br_and_split_punctuation():
    review = 'A GREAT film!<br /><br />I loved it, (really): "yes"; didn\'t you? 10/10.'
    assert iclr15_tokens(review) == [
        "a", "great", "film", "!", "i", "loved", "it", ",", "(", "really", ")", ":",
        '"', "yes", '"', ";", "didn't", "you", "?", "10/10", ".",
    ]  # fmt: skip


def test_cache_dir_defaults_to_home_cache(monkeypatch):
    monkeypatch.delenv("BENCHSUITE_CACHE_DIR")
    assert text.cache_dir() == text.Path.home() / ".cache" / "benchsuite"


def test_pvdbow_is_deterministic_and_seeded(tmp_path):
    texts = corpus()
    first = text.train_pvdbow(texts, SMALL, tmp_path)
    assert first.shape == (60, 16) and first.dtype == np.float32 and np.isfinite(first).all()
    assert np.array_equal(first, text.train_pvdbow(texts, SMALL, tmp_path))
    assert not np.allclose(first, text.train_pvdbow(texts, replace(SMALL, seed=1), tmp_path))
    assert list(tmp_path.iterdir()) == []  # the temporary corpus file is gone


def test_pvdbow_does_not_depend_on_the_python_hash_seed(tmp_path):
    """The cache key leaves out the process's string-hash seed, so the vectors must not depend on it."""
    script = (
        "import sys; from benchsuite_plugins.sentiment import text; "
        "texts = [line for line in sys.stdin.read().split('\\n') if line]; "
        "sys.stdout.buffer.write(text.train_pvdbow(texts, text.PVDBOW(vector_size=16, epochs=5), text.Path(sys.argv[1])).tobytes())"
    )
    other_hash_seed = str(int(os.environ.get("PYTHONHASHSEED") or 0) + 1)
    child = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        input="\n".join(corpus()).encode(),
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": other_hash_seed},
    ).stdout
    assert child == text.train_pvdbow(corpus(), SMALL, tmp_path).tobytes()


def test_vectors_are_cached_by_corpus_and_parameters(monkeypatch, tmp_path):
    texts = corpus()
    vectors, record = document_vectors(texts, SMALL)
    assert record["cache_hit"] is False and record["build_seconds"] > 0
    cached = tmp_path / "cache" / "pvdbow" / f"{record['fingerprint']}.npy"
    assert record["cache_file"] == str(cached) and cached.is_file()
    assert json.loads(cached.with_suffix(".json").read_text())["num_documents"] == 60

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should have served these vectors")

    monkeypatch.setattr(text, "train_pvdbow", no_training)
    again, record_again = document_vectors(texts, SMALL)
    assert record_again["cache_hit"] is True and np.array_equal(again, vectors)
    assert record_again["build_seconds"] == pytest.approx(record["build_seconds"])
    # a changed document, a changed order or a changed parameter is a different entry
    for other_texts, config in ((texts[:-1] + ["an extra review ."], SMALL), (texts[::-1], SMALL), (texts, replace(SMALL, epochs=6))):
        with pytest.raises(AssertionError, match="cache should have served"):
            document_vectors(other_texts, config)


def test_fingerprint_separates_document_boundaries():
    assert text.corpus_fingerprint(["ab", "c"], SMALL) != text.corpus_fingerprint(["a", "bc"], SMALL)


def test_imbalance_keeps_every_positive_and_seeded_negatives():
    labels = np.r_[np.ones(500, np.int64), np.zeros(500, np.int64)]
    kept, negatives = imbalance_subset(labels, 10.0, seed=3)
    assert len(negatives) == 50 and (labels[negatives] == 0).all()
    assert np.array_equal(kept, np.sort(np.r_[np.arange(500), negatives]))
    assert np.array_equal(negatives, imbalance_subset(labels, 10.0, seed=3)[1])
    assert not np.array_equal(negatives, imbalance_subset(labels, 10.0, seed=4)[1])
    assert len(imbalance_subset(labels, 50.0, seed=3)[1]) == 10
    with pytest.raises(ValueError, match="needs 1000 negatives but the training set has 500"):
        imbalance_subset(np.r_[np.ones(1000, np.int64), np.zeros(500, np.int64)], 1.0, seed=0)


def test_classifier_is_the_dm_network_with_caffe_xavier_init():
    torch.manual_seed(0)
    model = sentiment_classifier()
    first, relu, last = model
    assert (first.in_features, first.out_features, last.out_features) == (100, 8, 2) and isinstance(relu, torch.nn.ReLU)
    assert sum(p.numel() for p in model.parameters()) == 100 * 8 + 8 + 8 * 2 + 2
    for layer in (first, last):
        bound = math.sqrt(3.0 / layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert torch.count_nonzero(layer.bias) == 0


def test_solver_is_caffe_inv_policy():
    assert (DM_SOLVER.iterations, DM_SOLVER.batch_size, DM_SOLVER.lr, DM_SOLVER.weight_decay) == (10_000, 250, 0.01, 0.002)
    # Caffe: base_lr * (1 + gamma * iter) ** -power, 0.01 -> 0.00931 at the last iteration
    assert DM_SOLVER.lr * DM_SOLVER.lr_factor(10_000, 10_000) == pytest.approx(0.01 * 1.1**-0.75)
    assert DM_SOLVER.lr * DM_SOLVER.lr_factor(10_000, 10_000) == pytest.approx(0.00931, abs=1e-5)
