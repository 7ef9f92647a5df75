"""The retrieval evaluator against torchreid's outputs, hand-computed cases and per-query loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchsuite.toolkit import retrieval as metrics
from benchsuite.toolkit.retrieval import cmc_map, cosine_distance, evaluate_ranking, feature_cmc_map

#: torchreid's eval_market1501 outputs (distances, CMC, mAP, per-query AP) on a MARS-shaped
#: sub-problem of 196 queries and 1,215 gallery tracklets, with the features they came from.
REFERENCE = Path(__file__).parent / "data" / "reid_small_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def _ids(ref: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [ref[k] for k in ("q_pids", "g_pids", "q_camids", "g_camids")]


# -- loops: one query at a time, straight from the two rule sets' definitions --------------------


def torchreid_loop(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """eval_market1501's algorithm, with a stable sort and a CMC padded past the kept entries."""
    cmcs, aps = [], []
    for q in range(len(q_pids)):
        order = np.argsort(dist[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q]))
        hits = (g_pids[order] == q_pids[q])[keep]
        if not hits.any():
            continue
        curve = np.minimum(np.cumsum(hits), 1)
        cmcs.append(np.pad(curve, (0, max(0, max_rank - len(curve))), constant_values=1)[:max_rank])
        aps.append(np.mean([np.cumsum(hits)[k] / (k + 1) for k in np.flatnonzero(hits)]))
    return np.mean(cmcs, axis=0), float(np.mean(aps))


def official_loop(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """compute_AP.m's walk: junk skipped, trapezoid AP from precision 1, every query counted."""
    cmcs, aps = [], []
    for q in range(len(q_pids)):
        order = np.argsort(dist[q], kind="stable")
        good = (g_pids == q_pids[q]) & (g_cams != q_cams[q])
        junk = (g_pids == -1) | ((g_pids == q_pids[q]) & (g_cams == q_cams[q]))
        num_good = good.sum()
        cmc = np.zeros(len(order))
        ap, old_recall, old_precision, hits, kept, skipped = 0.0, 0.0, 1.0, 0, 0, 0
        for n, g in enumerate(order):
            if good[g] and hits == 0:
                cmc[n - skipped :] = 1
            if junk[g]:
                skipped += 1
                continue
            hits += int(good[g])
            kept += 1
            recall, precision = hits / max(num_good, 1), hits / kept
            ap += (recall - old_recall) * (old_precision + precision) / 2
            old_recall, old_precision = recall, precision
            if hits == num_good:
                break
        cmcs.append(np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")[:max_rank])
        aps.append(ap)
    return np.mean(cmcs, axis=0), float(np.mean(aps))


def random_problem(seed: int, num_q: int = 40, num_g: int = 120, ties: bool = True):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, 12, num_q)
    g_pids = rng.integers(-1, 12, num_g)  # includes junk (-1) and distractors (0)
    q_cams, g_cams = rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)
    dist = rng.random((num_q, num_g)).astype(np.float32)
    if ties:
        dist = np.round(dist * 8) / 8  # many exact ties: the stable order decides
    return dist, q_pids, g_pids, q_cams, g_cams


# -- torchreid's own outputs ---------------------------------------------------------------------


def test_equals_torchreid_eval_market1501_on_reference(reference):
    result = evaluate_ranking(reference["distmat"], *_ids(reference), max_rank=50)
    assert result.cmc.shape == (50,)
    np.testing.assert_allclose(result.cmc, reference["cmc"], atol=1e-6, rtol=0)
    assert abs(result.mAP - float(reference["mAP"])) < 1e-6
    np.testing.assert_array_equal(result.valid, reference["valid_query_mask"])
    np.testing.assert_allclose(result.ap[result.valid], reference["per_query_ap"][result.valid], atol=1e-9)
    assert result.cmc[0] == pytest.approx(0.9247, abs=1e-4) and result.mAP == pytest.approx(0.77924, abs=1e-5)
    cmc, mAP = cmc_map(reference["distmat"], *_ids(reference))
    np.testing.assert_array_equal(cmc, result.cmc)
    assert mAP == result.mAP


def test_features_path_recomputes_torchreid_distances(reference):
    dist = cosine_distance(reference["q_feats"], reference["g_feats"])
    assert dist.dtype == torch.float32
    np.testing.assert_allclose(dist.numpy(), reference["distmat"], atol=1e-5, rtol=0)
    cmc, mAP = feature_cmc_map(reference["q_feats"], reference["g_feats"], *_ids(reference))
    np.testing.assert_allclose(cmc, reference["cmc"], atol=1e-6, rtol=0)
    assert abs(mAP - float(reference["mAP"])) < 1e-6


@pytest.mark.parametrize("rules", ["torchreid", "official"])
def test_topk_path_gives_the_full_cmc_without_map(reference, rules):
    q_feats = torch.from_numpy(reference["q_feats"])
    full, _ = feature_cmc_map(q_feats, reference["g_feats"], *_ids(reference), rules=rules)
    cmc, mAP = feature_cmc_map(q_feats, reference["g_feats"], *_ids(reference), rules=rules, cmc_only=True)
    assert mAP is None
    np.testing.assert_allclose(cmc, full, atol=1e-12)
    if rules == "torchreid":
        np.testing.assert_allclose(cmc, reference["cmc"], atol=1e-6, rtol=0)


# -- hand-computed cases ---------------------------------------------------------------------------


def _one_query_case():
    # Ranked gallery, best first: same id+camera (junk), other id, match, junk id -1, other id, match.
    g_pids = np.array([1, 2, 1, -1, 3, 1])
    g_cams = np.array([0, 0, 1, 2, 1, 2])
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], dtype=np.float32)
    return dist, np.array([1]), g_pids, np.array([0]), g_cams


def test_official_rules_hand_computed():
    result = evaluate_ranking(*_one_query_case(), max_rank=6, rules="official")
    # Kept: 2 (P=0), match (P=1/2), 3, match (P=2/4). Trapezoid: 1/2·(0+1/2)/2 + 1/2·(1/3+1/2)/2.
    assert result.mAP == pytest.approx(0.5 * 0.25 + 0.5 * (1 / 3 + 1 / 2) / 2)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1, 1])
    assert result.first_hit.tolist() == [2]


def test_torchreid_rules_hand_computed():
    result = evaluate_ranking(*_one_query_case(), max_rank=6, rules="torchreid")
    # pid -1 is an ordinary miss here: kept 2, match, -1, 3, match -> AP = (1/2 + 2/5) / 2.
    assert result.mAP == pytest.approx((1 / 2 + 2 / 5) / 2)
    np.testing.assert_array_equal(result.cmc, [0, 1, 1, 1, 1, 1])


def test_first_place_hit_counts_fully_under_the_trapezoid_rule():
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    result = evaluate_ranking(dist, np.array([5]), np.array([5, 7, 8]), np.array([0]), np.array([1, 1, 1]), 3, "official")
    assert result.mAP == 1.0 and result.cmc.tolist() == [1, 1, 1]


def test_query_without_match_skipped_by_torchreid_counted_as_miss_by_official():
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], dtype=np.float32)
    q_pids, q_cams = np.array([5, 9]), np.array([0, 0])
    g_pids, g_cams = np.array([5, 7, 9]), np.array([1, 1, 0])  # query 9's only match shares its camera
    reid = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, 3, "torchreid")
    assert reid.valid.tolist() == [True, False] and reid.mAP == 1.0 and reid.cmc.tolist() == [1, 1, 1]
    assert np.isnan(reid.ap[1])
    official = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, 3, "official")
    assert official.valid.tolist() == [True, True] and official.mAP == 0.5 and official.cmc.tolist() == [0.5] * 3


def test_ties_are_broken_by_gallery_index():
    dist = np.zeros((1, 4), dtype=np.float32)  # every entry tied: the ranking is the gallery order
    g_pids = np.array([3, 1, 3, 1])
    result = evaluate_ranking(dist, np.array([1]), g_pids, np.array([0]), np.array([1, 1, 1, 1]), 4)
    assert result.first_hit.tolist() == [2]
    assert result.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    # Negative zero ties with zero, as a float comparison says.
    signed = np.array([[0.0, -0.0, 0.0, -0.0]], dtype=np.float32)
    assert evaluate_ranking(signed, np.array([1]), g_pids, np.array([0]), np.array([1] * 4), 4).mAP == result.mAP


def test_cmc_is_padded_where_fewer_than_max_rank_entries_remain():
    # 3 gallery entries, one of them removed (same id and camera): 2 remain, max_rank 10.
    dist = np.array([[0.3, 0.1, 0.2]], dtype=np.float32)
    result = evaluate_ranking(dist, np.array([1]), np.array([1, 2, 1]), np.array([0]), np.array([1, 0, 0]), 10)
    np.testing.assert_array_equal(result.cmc, [0, 1] + [1] * 8)
    assert len(result.cmc) == 10


# -- against the loops, and properties --------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rules", ["torchreid", "official"])
def test_equals_per_query_loop(seed, rules):
    problem = random_problem(seed, ties=seed % 2 == 0)
    loop = torchreid_loop if rules == "torchreid" else official_loop
    expected_cmc, expected_map = loop(*problem, max_rank=30)
    result = evaluate_ranking(*problem, max_rank=30, rules=rules)
    np.testing.assert_allclose(result.cmc, expected_cmc, atol=1e-12)
    assert result.mAP == pytest.approx(expected_map, abs=1e-12)


def test_chunking_does_not_change_results(monkeypatch):
    problem = random_problem(11, num_q=37, num_g=90)
    whole = evaluate_ranking(*problem, max_rank=20, rules="official")
    monkeypatch.setattr(metrics, "CHUNK_PAIRS", 200)  # two queries per chunk
    chunked = evaluate_ranking(*problem, max_rank=20, rules="official")
    np.testing.assert_array_equal(chunked.cmc, whole.cmc)
    np.testing.assert_array_equal(chunked.ap, whole.ap)


def test_perfect_ranking_scores_one_and_cmc_is_monotone():
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(3, num_q=60, num_g=25, ties=False)
    perfect = np.where(q_pids[:, None] == g_pids[None, :], 0.0, 1.0) + dist * 1e-3
    has_match = ((q_pids[:, None] == g_pids) & (q_cams[:, None] != g_cams)).any(1)
    assert 0 < has_match.sum() < len(q_pids)  # some queries have only same-camera matches
    reid = evaluate_ranking(perfect, q_pids, g_pids, q_cams, g_cams, 20, "torchreid")
    assert reid.mAP == pytest.approx(1.0) and np.all(reid.cmc == 1.0)
    np.testing.assert_array_equal(reid.valid, has_match)
    official = evaluate_ranking(perfect, q_pids, g_pids, q_cams, g_cams, 20, "official")
    assert official.mAP == pytest.approx(has_match.mean()) and np.allclose(official.cmc, has_match.mean())
    for rules in ("torchreid", "official"):
        random = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, 20, rules)
        assert np.all(np.diff(random.cmc) >= 0) and 0 <= random.cmc[0] <= random.cmc[-1] <= 1
        assert random.mAP < 0.5


def test_gallery_order_does_not_matter_without_ties():
    dist, q_pids, g_pids, q_cams, g_cams = random_problem(4, ties=False)
    perm = np.random.default_rng(0).permutation(len(g_pids))
    for rules in ("torchreid", "official"):
        a = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, 25, rules)
        b = evaluate_ranking(dist[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm], 25, rules)
        np.testing.assert_allclose(a.cmc, b.cmc)
        assert a.mAP == pytest.approx(b.mAP, abs=1e-12)


def test_torch_inputs_match_numpy_inputs():
    problem = random_problem(5)
    as_torch = [torch.from_numpy(np.asarray(a)) for a in problem]
    a, b = evaluate_ranking(*problem, max_rank=10), evaluate_ranking(*as_torch, max_rank=10)
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert a.mAP == b.mAP and a.ranks(1, 5) == {1: a.cmc[0], 5: a.cmc[4]}


# -- errors name the problem -------------------------------------------------------------------------


def test_clear_errors():
    dist, q_pids, g_pids, q_cams, g_cams = _one_query_case()
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(np.full_like(dist, np.nan), q_pids, g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match="g_pids has 5 entries"):
        evaluate_ranking(dist, q_pids, g_pids[:5], q_cams, g_cams)
    with pytest.raises(ValueError, match="unknown rules 'matlab'"):
        evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, rules="matlab")
    with pytest.raises(ValueError, match="cannot be a query"):
        evaluate_ranking(dist, np.array([-1]), g_pids, q_cams, g_cams, rules="official")
    with pytest.raises(ValueError, match="no query has a correct match"):
        evaluate_ranking(dist, np.array([42]), g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match="integer ids"):
        evaluate_ranking(dist, q_pids.astype(float), g_pids, q_cams, g_cams)
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=0)
    for cmc_only in (False, True):
        with pytest.raises(ValueError, match="matrices of one d"):
            feature_cmc_map(np.ones((1, 3)), np.ones((6, 4)), q_pids, g_pids, q_cams, g_cams, cmc_only=cmc_only)
