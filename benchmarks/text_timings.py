"""Timings of the text protocol: PV-DBOW build, one IMDB classifier run, rt_reviews cells.

Measured in one process, side by side with a reference (one default ``digits`` cell), so that the
numbers can be read as ratios on a busy machine; wall and CPU seconds are both printed.

1. PV-DBOW build (uncached) per 1,000 documents, on the real rt_reviews corpus (short snippets)
   and on a synthetic corpus of IMDB-length documents (``--imdb-docs`` documents of 270 tokens
   drawn from a Zipf law over 50,000 words; an aclImdb review has about 230 words before
   punctuation becomes tokens — an estimate, aclImdb is not on this machine); extrapolated to the
   100,000 aclImdb documents from the CPU time per token.
2. One full IMDB classifier run (DM solver: 10,000 iterations of batch 250, test accuracy every
   100 iterations) given cached vectors: random 100-d vectors of the real size (25,000 train,
   25,000 test) with a linear class signal stand in for the cached PV-DBOW vectors.
3. rt_reviews with its default budget and cached vectors: CCE at symmetric noise 0, 0.2, 0.4 over
   ``--seeds`` — accuracies and per-cell time.

    python benchmarks/text_timings.py [--imdb-docs 2000] [--seeds 0,1,2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import benchsuite
from benchsuite.engine import train
from benchsuite.spec import CellSpec
from benchsuite_plugins.sentiment import text
from benchsuite_plugins.sentiment.imdb import IMDB
from benchsuite_plugins.sentiment.rt_reviews import RTReviews

IMDB_TOKENS_PER_DOC = 270
IMDB_DOCS = 100_000


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run_cell(task: benchsuite.Task, noise: str, rate: float, seed: int, **budget):
    spec = CellSpec("cce", {}, task.name, task.identity_config(), noise, rate, seed, "1", task.version, budget=budget)
    return timed(lambda: train(benchsuite.load_method("cce"), task, spec, torch.device("cpu")))


def synthetic_imdb_corpus(num_docs: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(50_000)])
    frequency = 1.0 / np.arange(1, len(vocabulary) + 1)
    ranks = rng.choice(len(vocabulary), size=(num_docs, IMDB_TOKENS_PER_DOC), p=frequency / frequency.sum())
    return [" ".join(vocabulary[row]) for row in ranks]


class SyntheticIMDB(IMDB):
    """IMDB with stand-in vectors of the real size: measures the classifier run alone."""

    def features(self) -> text.SentimentFeatures:
        rng = np.random.default_rng(0)
        direction = rng.normal(size=100).astype(np.float32)

        def split(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = np.r_[np.ones(n // 2, np.int64), np.zeros(n // 2, np.int64)]
            x = rng.normal(size=(n, 100)).astype(np.float32) + np.outer(2 * y - 1, direction).astype(np.float32) * 0.15
            return x, y

        (x_train, y_train), (x_test, y_test) = split(25_000), split(25_000)
        return text.SentimentFeatures(x_train, y_train, x_test, y_test, info={"vectors": "synthetic stand-ins"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imdb-docs", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]

    _, wall, cpu = run_cell(benchsuite.load_task("digits"), "symmetric", 0.4, 0)
    reference = wall
    print(f"reference: one default digits cell (CCE, 60 epochs): {wall:.2f} s wall, {cpu:.2f} s CPU")

    rt = benchsuite.load_task("rt_reviews")
    if RTReviews.available() is not None:
        raise SystemExit(RTReviews.available())
    corpus = RTReviews.read_corpus(rt.corpus_source())
    rt_texts = corpus.all_texts()
    rt_tokens = sum(len(text.iclr15_tokens(t)) for t in rt_texts)
    with tempfile.TemporaryDirectory() as workdir:
        _, wall, cpu = timed(lambda: text.train_pvdbow(rt_texts, text.PVDBOW(), Path(workdir)))
        print(
            f"PV-DBOW build, rt_reviews ({len(rt_texts)} docs, {rt_tokens / len(rt_texts):.0f} tokens/doc): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU = {1000 * wall / len(rt_texts):.2f} s wall / "
            f"{1000 * cpu / len(rt_texts):.2f} s CPU per 1,000 docs ({wall / reference:.1f}x the digits cell)"
        )
        imdb_like = synthetic_imdb_corpus(args.imdb_docs)
        _, wall, cpu = timed(lambda: text.train_pvdbow(imdb_like, text.PVDBOW(), Path(workdir)))
        per_token_cpu = cpu / (args.imdb_docs * IMDB_TOKENS_PER_DOC)
        print(
            f"PV-DBOW build, synthetic IMDB-length ({args.imdb_docs} docs x {IMDB_TOKENS_PER_DOC} tokens): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU = {1000 * wall / args.imdb_docs:.1f} s wall / "
            f"{1000 * cpu / args.imdb_docs:.1f} s CPU per 1,000 docs; "
            f"100,000 aclImdb docs extrapolated: {per_token_cpu * IMDB_DOCS * IMDB_TOKENS_PER_DOC / 60:.0f} CPU minutes"
        )

    imdb = SyntheticIMDB(root="/unused")
    record, wall, cpu = run_cell(imdb, "none", 0.0, 0)
    print(
        f"IMDB classifier run with cached vectors (25k/25k, {record.curves[-1]['step']} iterations, "
        f"{len(record.curves)} evaluations): {wall:.1f} s wall, {cpu:.1f} s CPU ({wall / reference:.1f}x the digits cell)"
    )

    rt.features()  # vectors from the cache (built on first use)
    for rate in (0.0, 0.2, 0.4):
        final, best, walls, cpus = [], [], [], []
        for seed in seeds:
            record, wall, cpu = run_cell(rt, "symmetric", rate, seed)
            final.append(record.final["test_acc"])
            best.append(max(row["test_acc"] for row in record.curves))
            walls.append(wall)
            cpus.append(cpu)
        spread = statistics.stdev(final) if len(final) > 1 else 0.0
        print(
            f"rt_reviews CCE r={rate}: final test_acc {statistics.mean(final):.4f} ± {spread:.4f} "
            f"(best epoch {statistics.mean(best):.4f}), n={len(seeds)}; "
            f"cell {statistics.median(walls):.2f} s wall / {statistics.median(cpus):.2f} s CPU median "
            f"({statistics.median(walls) / reference:.2f}x the digits cell)"
        )


if __name__ == "__main__":
    main()
