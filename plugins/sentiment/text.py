"""Sentiment classification on PV-DBOW document vectors: the shared half of ``imdb`` and ``rt_reviews``.

The protocol is the DM paper's (appendix E), built on the iclr15 recipe of Mesnil et al. (2015):

* **Preprocessing** (iclr15 ``scripts/data.sh``): lower-case, every ``<br />`` becomes a space,
  spaces around ``. " , ( ) ! ? ; :`` so that they become tokens, split on whitespace.
* **Document vectors**: PV-DBOW trained by gensim's ``Doc2Vec(dm=0, dbow_words=1)``, the gensim
  equivalent of word2vec.c ``-cbow 0 -sentence-vectors 1`` with the flags of iclr15's first
  commit, the set the DM paper quotes (100-d, window 10, negative 5, no hierarchical softmax,
  sample 1e-4, min_count 1, 20 epochs). The vectors are learned on every document at once —
  training, test and unlabelled — as the protocol does (transductive: no labels are used, but
  the test texts shape the vectors). The documents are fed in one seeded shuffled order
  (iclr15's final commit added the shuffle: with a single stream of documents sorted by label,
  the drift of the shared word vectors can imprint the label block into the document vectors).
  One worker and a fixed seed make the vectors bit-for-bit deterministic.
* **Cache**: vectors are stored under ``$BENCHSUITE_CACHE_DIR/pvdbow/`` (default
  ``~/.cache/benchsuite``), keyed by a SHA-256 fingerprint of the raw texts in order, the
  preprocessing version, the PV-DBOW parameters and the gensim version; a grid computes them
  once, and any change to the corpus or the parameters builds new ones.
* **Dependency**: gensim is the ``sentiment`` extra (``pip install 'benchsuite[sentiment]'``), imported
  only where vectors are built; without it both tasks load and are listed, and say what to install.
* **Classifier** (DM Figure 4 / ``solver.prototxt``; the open points fixed from the Caffe template
  the paper cites, shaform/experiments ``caffe_sentiment_analysis``): 100 → 8 → ReLU → 2 with
  Caffe's Xavier initialisation (uniform ±sqrt(3 / fan_in), zero biases), no per-layer
  lr/decay multipliers, training batch 250; SGD lr 0.01, momentum 0.9, weight decay 0.002,
  Caffe's "inv" policy (γ = 1e-5, power 0.75), 10,000 iterations; evaluated on the whole
  balanced test set.
* **Protocols**: symmetric label noise (with two classes a flip) on the training labels, and
  sample imbalance: every positive training review plus round(P / ``pn_ratio``) negatives, a
  seeded random subset whose indices are recorded (DM: 12,500 positives with 1,250 or 250
  negatives). The test set stays balanced.

A task built on this module only says how to read its corpus (``SentimentTask.read_corpus``).
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import numpy as np

from benchsuite.atomic import atomic_open, write_text_atomically
from benchsuite.needs import CLEAN_VALIDATION
from benchsuite.params import Param, Preset
from benchsuite.task import (
    Metric,
    PreparedData,
    PrepareRequest,
    Recipe,
    Task,
    evaluate_classification,
    prepare_in_memory,
)
from benchsuite.toolkit.extras import missing_extra, require_extra

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

#: The extra that installs gensim, and the module it provides.
EXTRA, GENSIM = "sentiment", "gensim"

#: Bump when ``iclr15_tokens`` changes: it is part of the vector cache key.
PREPROCESSING_VERSION = "iclr15-1"

_PUNCTUATION = re.compile(r'([.",()!?;:])')


def iclr15_tokens(text: str) -> list[str]:
    """Tokens of ``text`` under the iclr15 normalisation (lower-case, no ``<br />``, split punctuation)."""
    return _PUNCTUATION.sub(r" \1 ", text.lower().replace("<br />", " ")).split()


def cache_dir() -> Path:
    """Root of benchsuite's on-disk caches: ``$BENCHSUITE_CACHE_DIR``, else ``~/.cache/benchsuite``."""
    configured = os.environ.get("BENCHSUITE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "benchsuite"


@dataclass(frozen=True)
class PVDBOW:
    """Hyper-parameters of the PV-DBOW document vectors (defaults: iclr15 as quoted by the DM paper)."""

    vector_size: int = 100
    window: int = 10
    negative: int = 5
    hs: int = 0
    sample: float = 1e-4
    min_count: int = 1
    epochs: int = 20
    #: Train word vectors by skip-gram alongside (word2vec.c ``-sentence-vectors`` does).
    dbow_words: bool = True
    alpha: float = 0.025
    seed: int = 0

    def gensim_kwargs(self) -> dict[str, Any]:
        return {
            "dm": 0,
            "dbow_words": int(self.dbow_words),
            "vector_size": self.vector_size,
            "window": self.window,
            "negative": self.negative,
            "hs": self.hs,
            "sample": self.sample,
            "min_count": self.min_count,
            "epochs": self.epochs,
            "alpha": self.alpha,
            "seed": self.seed,
            "workers": 1,  # more workers make the result depend on thread scheduling
        }


def corpus_fingerprint(texts: Sequence[str], config: PVDBOW) -> str:
    """SHA-256 of the raw texts in order, the preprocessing, the parameters and the gensim version."""
    import gensim

    digest = hashlib.sha256()
    header = {
        "preprocessing": PREPROCESSING_VERSION,
        "pvdbow": asdict(config),
        "gensim": gensim.__version__,
        "num_documents": len(texts),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in texts:
        raw = text.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def train_pvdbow(texts: Sequence[str], config: PVDBOW, workdir: Path) -> np.ndarray:
    """PV-DBOW vectors (float32, one row per text, in the order given), trained with gensim.

    The tokenised corpus is streamed from a temporary file in ``workdir`` (one document per line)
    rather than held as Python token lists, which for IMDB would take gigabytes.
    """
    from gensim.models.doc2vec import Doc2Vec, TaggedLineDocument

    order = np.random.default_rng([config.seed, 0x706476]).permutation(len(texts))
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=workdir, suffix=".txt", delete=False) as handle:
        corpus_path = Path(handle.name)
        for i in order:
            handle.write(" ".join(iclr15_tokens(texts[i])) + "\n")
    try:
        model = Doc2Vec(TaggedLineDocument(str(corpus_path)), **config.gensim_kwargs())
    finally:
        corpus_path.unlink()
    vectors = np.empty((len(texts), config.vector_size), dtype=np.float32)
    vectors[order] = model.dv.vectors[: len(texts)]  # line j of the file is document order[j]
    return vectors


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (POSIX), so parallel runs build a cache entry once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent builders just both build; the write stays atomic
        yield
        return
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def document_vectors(texts: Sequence[str], config: PVDBOW) -> tuple[np.ndarray, dict[str, Any]]:
    """PV-DBOW vectors of ``texts`` from the on-disk cache, trained (and stored) on a miss.

    Returns the vectors and a record of where they came from (fingerprint, cache hit, build time).
    """
    require_extra(EXTRA, GENSIM)  # the fingerprint names the gensim version, even for a cache hit
    fingerprint = corpus_fingerprint(texts, config)
    folder = cache_dir() / "pvdbow"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fingerprint}.npy"
    record: dict[str, Any] = {"fingerprint": fingerprint, "cache_file": str(path)}
    with _exclusive(folder / f"{fingerprint}.lock"):
        if path.is_file():
            vectors = np.load(path)
            if vectors.shape == (len(texts), config.vector_size):
                meta_path = path.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                return vectors, {**record, "cache_hit": True, "build_seconds": meta.get("build_seconds")}
            logger.warning("ignoring %s: shape %s, expected %s", path, vectors.shape, (len(texts), config.vector_size))
        logger.info("training PV-DBOW vectors of %d documents (cached at %s)", len(texts), path)
        tic = time.perf_counter()
        cpu = time.process_time()
        vectors = train_pvdbow(texts, config, folder)
        build = {"build_seconds": time.perf_counter() - tic, "build_cpu_seconds": time.process_time() - cpu}
        with atomic_open(path, "wb") as handle:  # a second process may read the cache meanwhile
            np.save(handle, vectors)
        meta = {"num_documents": len(texts), "pvdbow": asdict(config), **build}
        write_text_atomically(path.with_suffix(".json"), json.dumps(meta, indent=1))
    return vectors, {**record, "cache_hit": False, **build}


def caffe_xavier_(layer: nn.Linear) -> nn.Linear:
    """Caffe's ``xavier`` filler (uniform ±sqrt(3 / fan_in)) on the weights, zero biases."""
    from torch import nn

    bound = math.sqrt(3.0 / layer.in_features)
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.zeros_(layer.bias)
    return layer


def sentiment_classifier(in_features: int = 100, hidden: int = 8, num_classes: int = 2) -> nn.Sequential:
    """The DM paper's IMDB network: ``in_features`` → ``hidden`` → ReLU → ``num_classes``, Caffe init."""
    from torch import nn

    return nn.Sequential(
        caffe_xavier_(nn.Linear(in_features, hidden)),
        nn.ReLU(),
        caffe_xavier_(nn.Linear(hidden, num_classes)),
    )


#: The DM paper's Caffe solver for IMDB (appendix E.3), with the template's training batch of 250.
DM_SOLVER = Recipe(
    epochs=100,  # 10,000 iterations × 250 = 100 passes over 25,000 reviews; ``iterations`` rules
    iterations=10_000,
    batch_size=250,
    lr=0.01,
    optimizer="sgd",
    momentum=0.9,
    weight_decay=0.002,
    schedule="inv",
    inv_gamma=1e-5,
    inv_power=0.75,
    eval_batch_size=250,
)


@dataclass
class SentimentCorpus:
    """A binary sentiment corpus: labelled training and test texts (1 = positive, 0 = negative)
    and unlabelled texts that only help learn the document vectors."""

    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    unlabelled_texts: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def all_texts(self) -> list[str]:
        """Every document, in the order the vectors are indexed: train, test, unlabelled."""
        return self.train_texts + self.test_texts + self.unlabelled_texts

    def check(self, source: str) -> None:
        for split, texts, labels in (("train", self.train_texts, self.train_labels), ("test", self.test_texts, self.test_labels)):
            if len(texts) != len(labels):
                raise ValueError(f"{source}: {len(texts)} {split} texts but {len(labels)} labels")
            counts = np.bincount(labels, minlength=2)
            if len(counts) != 2 or counts.min() == 0:
                raise ValueError(f"{source}: the {split} split needs positive and negative reviews, has {counts.tolist()}")


@dataclass(frozen=True)
class SentimentFeatures:
    """Document vectors and labels of one corpus, as the classifier sees them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict[str, Any]


def imbalance_subset(labels: np.ndarray, pn_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices kept under the DM imbalance protocol: every positive and round(P / pn_ratio) seeded
    negatives. Returns (kept indices in corpus order, the negatives kept)."""
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels == 0)
    wanted = max(1, round(len(positives) / pn_ratio))
    if wanted > len(negatives):
        raise ValueError(
            f"P:N = {pn_ratio:g} needs {wanted} negatives but the training set has {len(negatives)}; "
            f"use pn_ratio >= {len(positives) / len(negatives):.3g}"
        )
    rng = np.random.default_rng([seed, 0x696D62])  # a stream of its own, apart from noise and splits
    kept_negatives = np.sort(rng.choice(negatives, size=wanted, replace=False))
    return np.sort(np.concatenate([positives, kept_negatives])), kept_negatives


class SentimentTask(Task):
    """Binary sentiment on PV-DBOW vectors with the DM classifier; subclasses read a corpus."""

    num_classes = 2
    input_kind = "text"
    provides = frozenset({CLEAN_VALIDATION})
    noise_kinds = ("none", "symmetric", "uniform")
    #: DM appendix E.1; with two classes a symmetric rate above 0.5 would invert the labels.
    default_noise = ("symmetric", (0.0, 0.2, 0.4))
    metrics = {
        "test_acc": Metric("accuracy on the balanced test set"),
        "val_acc": Metric("accuracy on the clean validation split (runs that carve one)"),
    }
    primary_metric = "test_acc"
    #: The PV-DBOW hyper-parameters, apart from the seed (a task parameter).
    vectors: ClassVar[PVDBOW] = PVDBOW()
    common_parameters: ClassVar[dict[str, Param]] = {
        "pn_ratio": Param(
            None,
            "sample imbalance: keep every positive training review and round(P / pn_ratio) seeded "
            "negatives (DM: 10 or 50); None keeps the corpus's own balance",
            type=float,
            low=1.0,
            nullable=True,
        ),
        "vector_seed": Param(0, "seed of the PV-DBOW document vectors (each seed is trained and cached once)", low=0),
    }
    common_presets: ClassVar[dict[str, Preset]] = {
        "label_noise": Preset({"pn_ratio": None}, "DM appendix E.1", "balanced training set; run with symmetric noise r in {0, 0.2, 0.4}"),
        "imbalance_10": Preset({"pn_ratio": 10.0}, "DM appendix E.2", "P:N = 10:1 (IMDB: 12,500 positives, 1,250 negatives)"),
        "imbalance_50": Preset({"pn_ratio": 50.0}, "DM appendix E.2", "P:N = 50:1 (IMDB: 12,500 positives, 250 negatives)"),
    }

    @classmethod
    def available(cls) -> str | None:
        return None if (why := missing_extra(EXTRA, GENSIM)) is None else f"{cls.name} {why}"

    @abc.abstractmethod
    def corpus_source(self) -> str:
        """A string that identifies the corpus on this machine (a path); keys the in-process cache."""

    @classmethod
    @abc.abstractmethod
    def read_corpus(cls, source: str) -> SentimentCorpus:
        """Read the corpus at ``source``; raise ``FileNotFoundError`` naming what was expected where."""

    def features(self) -> SentimentFeatures:
        return _features(type(self), self.corpus_source(), replace(self.vectors, seed=self.vector_seed))

    def prepare(self, request: PrepareRequest) -> PreparedData:
        import torch

        if request.noise_kind == "symmetric" and request.noise_rate > 0.5:
            raise ValueError(
                f"{self.name}: symmetric noise {request.noise_rate:g} flips most binary labels, which inverts the "
                "task; use rates up to 0.5"
            )
        feats = self.features()
        x_train, y_train = feats.x_train, feats.y_train
        info: dict[str, Any] = {**feats.info, "pn_ratio": self.pn_ratio}
        if self.pn_ratio is not None:
            kept, negatives = imbalance_subset(y_train, self.pn_ratio, request.seed)
            x_train, y_train = x_train[kept], y_train[kept]
            info["negatives_kept"] = negatives.tolist()
        info["train_counts"] = {"positive": int((y_train == 1).sum()), "negative": int((y_train == 0).sum())}
        return prepare_in_memory(
            request,
            torch.from_numpy(x_train),
            y_train,
            torch.from_numpy(feats.x_test),
            feats.y_test,
            self.num_classes,
            info=info,
        )

    def build_model(self) -> nn.Module:
        return sentiment_classifier(self.vectors.vector_size, 8, self.num_classes)

    def recipe(self) -> Recipe:
        return DM_SOLVER

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        return evaluate_classification(model, data, batch_size=self.recipe().eval_batch_size)


@lru_cache(maxsize=4)
def _features(task_cls: type[SentimentTask], source: str, config: PVDBOW) -> SentimentFeatures:
    """Corpus → cached vectors → arrays; once per process for each corpus and PV-DBOW setting."""
    corpus = task_cls.read_corpus(source)
    corpus.check(f"{task_cls.name} corpus at {source}")
    vectors, provenance = document_vectors(corpus.all_texts(), config)
    n_train, n_test = len(corpus.train_texts), len(corpus.test_texts)
    info = {
        **corpus.info,
        "num_unlabelled": len(corpus.unlabelled_texts),
        "num_test": n_test,
        "test_counts": {"positive": int((corpus.test_labels == 1).sum()), "negative": int((corpus.test_labels == 0).sum())},
        "preprocessing": PREPROCESSING_VERSION,
        "pvdbow": {**asdict(config), "fingerprint": provenance["fingerprint"]},
        "classifier": "100-8-2 MLP, ReLU, Caffe xavier init, batch 250 (DM appendix E; shaform/experiments template)",
    }
    return SentimentFeatures(
        x_train=vectors[:n_train],
        y_train=np.asarray(corpus.train_labels, dtype=np.int64),
        x_test=vectors[n_train : n_train + n_test],
        y_test=np.asarray(corpus.test_labels, dtype=np.int64),
        info=info,
    )
