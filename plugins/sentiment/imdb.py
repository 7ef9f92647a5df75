"""imdb: movie-review sentiment (aclImdb v1) on PV-DBOW document vectors, the DM paper's protocol.

Reads the official ``aclImdb`` release under ``root``: ``train/pos``, ``train/neg``, ``train/unsup``,
``test/pos`` and ``test/neg``, one review per ``<id>_<rating>.txt`` file (other files are ignored).
Documents are taken folder by folder in that order and by file name (code-point order) within a
folder, as iclr15's ``data.sh`` concatenates them; the 25,000 training and 25,000 test reviews are
labelled by their folder (pos = 1, neg = 0) and the 50,000 unlabelled ones only help learn the
vectors. Everything else — preprocessing, PV-DBOW, vector cache, classifier, solver, noise and
imbalance protocols — is ``benchsuite_plugins.sentiment.text``'s.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchsuite import Param, hookimpl
from benchsuite_plugins.sentiment.text import SentimentCorpus, SentimentTask

_REVIEW = re.compile(r"^\d+_\d+\.txt$")
FOLDERS = ("train/pos", "train/neg", "test/pos", "test/neg", "train/unsup")


def check_layout(root: Path) -> None:
    """Raise unless ``root`` has the aclImdb folders."""
    missing = [f for f in FOLDERS if not (root / f).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"imdb root {root} is not an aclImdb folder: missing {', '.join(missing)} "
            f"(expected {', '.join(FOLDERS)} with <id>_<rating>.txt files)"
        )


def read_reviews(folder: Path) -> list[str]:
    """The reviews in ``folder`` (files ``<id>_<rating>.txt``), in file-name order."""
    names = sorted(p.name for p in folder.iterdir() if _REVIEW.match(p.name))
    if not names:
        raise FileNotFoundError(f"{folder} holds no review files named <id>_<rating>.txt")
    return [(folder / name).read_text(encoding="utf-8", errors="replace") for name in names]


class IMDB(SentimentTask):
    name = "imdb"
    summary = "aclImdb movie-review sentiment on PV-DBOW vectors, 100-8-2 MLP (DM appendix E)"
    parameters = {
        "root": Param(
            None,
            "the aclImdb folder (holding train/ and test/) of the aclImdb_v1 release",
            type=str,
            nullable=True,
            identity=False,
        ),
        **SentimentTask.common_parameters,
    }
    presets = SentimentTask.common_presets

    def check_data(self) -> None:
        check_layout(Path(self.corpus_source()))

    def corpus_source(self) -> str:
        if self.root is None:
            raise FileNotFoundError(
                "imdb needs the aclImdb_v1 release: download https://ai.stanford.edu/~amaas/data/sentiment/"
                "aclImdb_v1.tar.gz, unpack it and pass its aclImdb folder, e.g. -t \"imdb{root = '/data/aclImdb'}\""
            )
        return str(Path(self.root).expanduser().resolve())

    @classmethod
    def read_corpus(cls, source: str) -> SentimentCorpus:
        root = Path(source)
        check_layout(root)
        train_pos, train_neg, test_pos, test_neg, unsup = (read_reviews(root / f) for f in FOLDERS)

        def labels(pos: list[str], neg: list[str]) -> np.ndarray:
            return np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])

        return SentimentCorpus(
            train_texts=train_pos + train_neg,
            train_labels=labels(train_pos, train_neg),
            test_texts=test_pos + test_neg,
            test_labels=labels(test_pos, test_neg),
            unlabelled_texts=unsup,
            info={"corpus": "aclImdb v1", "document_order": "train/pos, train/neg, test/pos, test/neg, train/unsup"},
        )


@hookimpl
def register_tasks(register):
    register(IMDB)
