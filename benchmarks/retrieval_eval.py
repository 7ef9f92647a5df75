"""Time of ``benchsuite.toolkit.retrieval`` beside a straightforward per-query Python evaluator, MARS-size.

The synthetic problem has MARS's shape (``docs/reference.md`` §7): 1,980 queries,
9,330 gallery tracklets (6,082 of 620 identities plus 3,248 distractors with pid 0), 6 cameras,
1,024-d features built as identity centre + camera offset + per-tracklet noise. The per-query
evaluator is the torchreid rules written the plain way (NumPy argsort of the matrix, then a
Python loop over queries, as ``eval_market1501`` does). Both run in this one process on the same
float32 cosine distance matrix; the script prints the two times, the speed-up and the largest
difference of their CMC and mAP. Target: >= 20x, identical numbers (float32 rounding aside).

    python benchmarks/retrieval_eval.py [--repeats 3] [--loop-repeats 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchsuite.toolkit.retrieval import cosine_distance, evaluate_ranking, feature_cmc_map

NUM_QUERIES, NUM_GALLERY, NUM_DISTRACTORS, DIM, NUM_CAMS = 1980, 9330, 3248, 1024, 6
NUM_GALLERY_IDS, NUM_QUERY_IDS = 620, 626


def synthetic_mars(seed: int) -> dict[str, np.ndarray]:
    """Ids, cameras and features of a MARS-shaped problem (query ids 1..626, gallery ids 1..620)."""
    rng = np.random.default_rng(seed)
    # Each query identity is seen by 2-6 cameras; one query per (identity, camera), 1,980 in all.
    pairs: list[tuple[int, int]] = []
    for pid in range(1, NUM_QUERY_IDS + 1):
        cams = rng.choice(NUM_CAMS, size=rng.integers(2, NUM_CAMS + 1), replace=False)
        pairs += [(pid, int(c)) for c in cams]
    chosen = np.sort(rng.choice(len(pairs), size=NUM_QUERIES, replace=False))
    q_pids, q_cams = np.array(pairs)[chosen].T
    gallery_pairs = np.array([p for p in pairs if p[0] <= NUM_GALLERY_IDS])
    drawn = gallery_pairs[rng.integers(0, len(gallery_pairs), NUM_GALLERY - NUM_DISTRACTORS)]
    g_pids = np.concatenate([np.zeros(NUM_DISTRACTORS, dtype=np.int64), drawn[:, 0]])
    g_cams = np.concatenate([rng.integers(0, NUM_CAMS, NUM_DISTRACTORS), drawn[:, 1]])
    centres = rng.standard_normal((NUM_QUERY_IDS + 1, DIM), dtype=np.float32)
    offsets = rng.standard_normal((NUM_CAMS, DIM), dtype=np.float32)

    def features(pids: np.ndarray, cams: np.ndarray) -> np.ndarray:
        centre = np.where((pids == 0)[:, None], rng.standard_normal((len(pids), DIM), dtype=np.float32), centres[pids])
        scale = np.exp(0.35 * rng.standard_normal((len(pids), 1))).astype(np.float32)
        return 0.38 * centre + 0.1 * offsets[cams] + scale * rng.standard_normal((len(pids), DIM), dtype=np.float32)

    return {
        "q_feats": features(q_pids, q_cams), "g_feats": features(g_pids, g_cams),
        "q_pids": q_pids, "g_pids": g_pids, "q_camids": q_cams, "g_camids": g_cams,
    }


def per_query_loop(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The torchreid rules the straightforward way: argsort, then one Python iteration per query."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q in range(len(q_pids)):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        hits = raw.cumsum()
        precision = np.asarray([h / (i + 1.0) for i, h in enumerate(hits)]) * raw
        all_ap.append(precision.sum() / raw.sum())
    return np.asarray(all_cmc, dtype=np.float32).sum(0) / len(all_cmc), float(np.mean(all_ap))


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of our evaluator (median reported)")
    parser.add_argument("--loop-repeats", type=int, default=1, help="runs of the per-query loop (slow)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = synthetic_mars(args.seed)
    ids = [data[k] for k in ("q_pids", "g_pids", "q_camids", "g_camids")]
    distmat = cosine_distance(data["q_feats"], data["g_feats"]).numpy()
    print(f"problem: {len(distmat)} queries x {distmat.shape[1]} gallery, {DIM}-d, {NUM_CAMS} cameras, "
          f"{len(np.unique(data['g_pids'][data['g_pids'] > 0]))} gallery ids; torch threads {torch.get_num_threads()}")

    t_loop, (cmc_loop, map_loop) = timed(lambda: per_query_loop(distmat, *ids), args.loop_repeats)
    t_ours, ours = timed(lambda: evaluate_ranking(distmat, *ids), args.repeats)
    t_feat, (cmc_feat, map_feat) = timed(lambda: feature_cmc_map(data["q_feats"], data["g_feats"], *ids), args.repeats)
    t_topk, (cmc_topk, _) = timed(
        lambda: feature_cmc_map(data["q_feats"], data["g_feats"], *ids, cmc_only=True), args.repeats
    )
    t_off, official = timed(lambda: evaluate_ranking(distmat, *ids, rules="official"), args.repeats)

    for label, seconds in (
        ("per-query Python loop (torchreid rules, incl. argsort)", t_loop),
        ("benchsuite evaluate_ranking on the distance matrix", t_ours),
        ("benchsuite feature_cmc_map (cosine distance + ranking)", t_feat),
        ("benchsuite feature_cmc_map cmc_only (faiss top-k)", t_topk),
        ("benchsuite evaluate_ranking, official rules", t_off),
    ):
        print(f"{label + ':':57s}{seconds:8.3f} s   speed-up vs the loop {t_loop / seconds:6.1f}x")
    print(f"max |CMC difference| ours vs loop: {np.abs(ours.cmc - cmc_loop).max():.2e}; "
          f"|mAP difference|: {abs(ours.mAP - map_loop):.2e}")
    print(f"features path vs loop: CMC {np.abs(cmc_feat - cmc_loop).max():.2e}, mAP {abs(map_feat - map_loop):.2e}; "
          f"faiss top-k CMC vs loop: {np.abs(cmc_topk - cmc_loop).max():.2e}")
    print(f"torchreid rules: R1 {ours.cmc[0]:.4f} R5 {ours.cmc[4]:.4f} R10 {ours.cmc[9]:.4f} R20 {ours.cmc[19]:.4f} "
          f"mAP {ours.mAP:.4f} ({int(ours.valid.sum())} valid queries)")
    print(f"official rules:  R1 {official.cmc[0]:.4f} mAP {official.mAP:.4f} (all {len(official.valid)} queries)")


if __name__ == "__main__":
    main()
