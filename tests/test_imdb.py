"""imdb: the aclImdb layout, and the whole protocol end to end on a tiny fake release."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_in_process

import benchsuite
from benchsuite.engine import train
from benchsuite.results import to_dataframe
from benchsuite.spec import CellSpec
from benchsuite_plugins.sentiment import text
from benchsuite_plugins.sentiment.imdb import IMDB

POSITIVE = "great superb wonderful loved brilliant moving".split()
NEGATIVE = "awful boring terrible hated dull worst".split()
NEUTRAL = "the a movie film plot actor scene story director ending music cast it was and".split()
PER_FOLDER = {"train/pos": 80, "train/neg": 80, "test/pos": 50, "test/neg": 50, "train/unsup": 60}


def review(rng: np.random.Generator, sentiment: list[str]) -> str:
    words = list(rng.choice(NEUTRAL, size=40)) + list(rng.choice(sentiment, size=20))
    rng.shuffle(words)
    return " ".join(words[:9]).capitalize() + ".<br /><br />" + " ".join(words[9:]) + "!"


def make_aclimdb(root: Path) -> Path:
    """A tiny aclImdb: the five review folders with <id>_<rating>.txt files, plus the release's
    other files (which the reader must ignore)."""
    rng = np.random.default_rng(0)
    for folder, count in PER_FOLDER.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            if folder.endswith("pos"):
                body, rating = review(rng, POSITIVE), 7 + i % 4
            elif folder.endswith("neg"):
                body, rating = review(rng, NEGATIVE), 1 + i % 4
            else:
                body, rating = review(rng, POSITIVE if i % 2 else NEGATIVE), 0
            (root / folder / f"{i}_{rating}.txt").write_text(body)
    (root / "train" / "urls_pos.txt").write_text("http://www.imdb.com/title/tt0000001/usercomments\n")
    (root / "train" / "pos" / "norm.txt").write_text("left over by iclr15's data.sh\n")
    (root / "imdb.vocab").write_text("\n".join(POSITIVE + NEGATIVE + NEUTRAL))
    return root


@pytest.fixture(scope="module")
def aclimdb(tmp_path_factory) -> Path:
    return make_aclimdb(tmp_path_factory.mktemp("aclImdb"))


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_reads_the_aclimdb_layout_in_protocol_order(aclimdb):
    corpus = IMDB.read_corpus(str(aclimdb))
    assert (len(corpus.train_texts), len(corpus.test_texts), len(corpus.unlabelled_texts)) == (160, 100, 60)
    assert corpus.train_labels.tolist() == [1] * 80 + [0] * 80
    assert corpus.test_labels.tolist() == [1] * 50 + [0] * 50
    # file-name order within a folder, as iclr15's `ls` loop: 0_7, 10_9, 11_10, ...
    assert corpus.train_texts[1] == (aclimdb / "train/pos/10_9.txt").read_text()


def test_layout_errors_name_what_was_expected_where(aclimdb, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"aclImdb_v1\.tar\.gz"):
        benchsuite.load_task("imdb").features()
    (tmp_path / "train" / "pos").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"not an aclImdb folder: missing train/neg, test/pos, test/neg, train/unsup"):
        IMDB.read_corpus(str(tmp_path))


def cell(task, noise: str, rate: float, seed: int = 0, **budget) -> CellSpec:
    return CellSpec(
        "cce", {}, "imdb", task.identity_config(), noise, rate, seed, "1", task.version,
        budget=budget, task_options={"root": task.root},
    )  # fmt: skip


def test_label_noise_protocol_end_to_end(aclimdb):
    task = benchsuite.load_task("imdb", "label_noise", root=str(aclimdb))
    clean = train(benchsuite.load_method("cce"), task, cell(task, "none", 0.0, iterations=300), torch.device("cpu"))
    assert clean.status == "completed", clean.error
    assert clean.final["test_acc"] >= 0.9  # the fake reviews are separable by their sentiment words
    data = clean.info["data"]
    assert data["num_test"] == 100 and data["num_unlabelled"] == 60 and data["pvdbow"]["vector_size"] == 100
    assert clean.info["recipe"]["schedule"] == "inv" and clean.info["recipe"]["batch_size"] == 250
    noisy = train(benchsuite.load_method("cce"), task, cell(task, "symmetric", 0.4, iterations=20), torch.device("cpu"))
    noise = noisy.info["noise"]
    assert noise["num_noisy"] == 64 and noise["realised_rate"] == pytest.approx(0.4)  # floor(0.4 × 160) flips
    assert 0.0 <= noisy.final["noisy_memorised"] <= 1.0


def test_imbalance_protocol_records_the_negatives_it_kept(aclimdb):
    task = benchsuite.load_task("imdb", "imbalance_10", root=str(aclimdb))
    assert task.pn_ratio == 10.0
    record = train(benchsuite.load_method("cce"), task, cell(task, "none", 0.0, seed=5, iterations=2), torch.device("cpu"))
    data = record.info["data"]
    assert data["train_counts"] == {"positive": 80, "negative": 8} and record.info["num_train"] == 88
    assert len(data["negatives_kept"]) == 8 and all(80 <= i < 160 for i in data["negatives_kept"])
    assert data["test_counts"] == {"positive": 50, "negative": 50}  # the test set stays balanced
    other_seed = train(benchsuite.load_method("cce"), task, cell(task, "none", 0.0, seed=6, iterations=2), torch.device("cpu"))
    assert other_seed.info["data"]["negatives_kept"] != data["negatives_kept"]


def test_vectors_are_built_once_per_corpus(aclimdb, monkeypatch):
    task = benchsuite.load_task("imdb", root=str(aclimdb))
    first = task.features()  # trained here, or served by the disk cache an earlier test filled
    text._features.cache_clear()  # as in a fresh process
    monkeypatch.setattr(text, "train_pvdbow", lambda *a: pytest.fail("vectors should come from the disk cache"))
    again = task.features()
    assert again.x_train.shape == (160, 100) and again.x_test.shape == (100, 100)
    assert np.array_equal(again.x_train, first.x_train) and np.array_equal(again.x_test, first.x_test)


def test_protocols_through_the_cli(aclimdb, tmp_path, tmp_path_factory):
    results = tmp_path / "results.sqlite"
    # In this process, cells in the driver (one torch thread: cache_in_tmp): a new process and a
    # pool's spawned workers cost more than these four small cells.
    result = cli_in_process(
        "run", "-m", "cce", "-t", f"imdb@label_noise{{root = '{aclimdb}'}}", "-t", f"imdb@imbalance_10{{root = '{aclimdb}'}}",
        "--noise", "symmetric:0,0.4", "--iterations", "300", "--seeds", "0", "--results", str(results), "--no-progress",
        "--executor", "local", env={"BENCHSUITE_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = to_dataframe(results).sort_values(["task_params", "noise_rate"]).reset_index(drop=True)
    assert list(runs.status) == ["completed"] * 4 and list(runs.noise_rate) == [0.0, 0.4, 0.0, 0.4]
    pn_ratio = [json.loads(params)["pn_ratio"] for params in runs.task_params]
    assert pn_ratio == [10.0, 10.0, None, None]
    num_train = [json.loads(info)["num_train"] for info in runs["info"]]
    assert num_train == [88, 88, 160, 160]
    assert runs.test_acc[2] >= 0.9  # balanced and clean: the fake reviews are separable
