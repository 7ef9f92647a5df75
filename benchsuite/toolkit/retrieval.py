"""Retrieval metrics: CMC curve and mAP under the torchreid or the official MARS rules.

Every retrieval task scores its rankings here, so that all of them agree on one definition.
Queries and gallery entries carry a person id (``pid``) and a camera id. Two rule sets:

* ``"torchreid"`` (``eval_market1501`` of KaiyangZhou/deep-person-reid): gallery entries with the
  query's pid *and* camera are removed from its ranking; a query without any remaining match is
  skipped; AP is the mean of the precisions at the hits; means are over the valid queries.
* ``"official"`` (liangzheng06/MARS-evaluation, ``evaluation_mars.m`` and ``compute_AP.m``): junk
  entries (pid -1, and same pid with the same camera) are skipped; AP is the trapezoid rule with
  the precision before the first entry taken as 1; every query counts in the means.

The ranking is the stable ascending sort of each row (ties go to the lower gallery index, as
MATLAB's sort does). A query's metrics depend only on where its matches and junk entries fall in
that ranking, a few dozen pairs out of thousands, so the rows are sorted by value only (a SIMD
sort, no index permutation) and those pairs are located by batched binary search; every step is
an array operation over all queries of a chunk, none loops over queries. The CMC always has
``max_rank`` entries. Where fewer than ``max_rank`` gallery entries remain for a
query, its curve stays at its final value (1 for a query with a match); torchreid's Python path
crashes there and its Cython path reads stale memory.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from .extras import missing_extra

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Rules = Literal["torchreid", "official"]
RULES: tuple[str, ...] = ("torchreid", "official")

#: Query rows per chunk are chosen so that a chunk holds about this many distances (bounds memory).
CHUNK_PAIRS = 1 << 22

ArrayLike: TypeAlias = "np.ndarray | torch.Tensor"


@dataclass(frozen=True)
class RankingResult:
    """Metrics of one evaluation, with the per-query detail behind the means.

    ``ap`` is NaN for queries the rules skip (``valid`` False); ``first_hit`` is the 1-based rank
    of a query's first correct match among the entries its rules keep (0: none).
    """

    cmc: np.ndarray
    mAP: float
    ap: np.ndarray
    valid: np.ndarray
    first_hit: np.ndarray
    rules: str

    def ranks(self, *ks: int) -> dict[int, float]:
        """CMC at the given 1-based ranks, e.g. ``ranks(1, 5, 10, 20)``."""
        return {k: float(self.cmc[k - 1]) for k in ks}

    def named(self, ranks: tuple[int, ...], prefix: str = "test_", suffix: str = "") -> dict[str, float]:
        """Task metrics: ``{prefix}rank{k}{suffix}`` for each k and ``{prefix}map{suffix}``."""
        named = {f"{prefix}rank{k}{suffix}": v for k, v in self.ranks(*ranks).items()}
        named[f"{prefix}map{suffix}"] = self.mAP
        return named


def _check_inputs(
    shape: tuple[int, ...], q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray,
    max_rank: int, rules: str,
) -> None:
    if rules not in RULES:
        raise ValueError(f"unknown rules {rules!r}; use 'torchreid' or 'official'")
    if not isinstance(max_rank, int) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive int, got {max_rank!r}")
    num_q, num_g = shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"empty retrieval problem: {num_q} queries, {num_g} gallery entries")
    for name, ids, n in (("q_pids", q_pids, num_q), ("q_camids", q_camids, num_q),
                         ("g_pids", g_pids, num_g), ("g_camids", g_camids, num_g)):
        if len(ids) != n:
            raise ValueError(f"{name} has {len(ids)} entries but the distance matrix is {num_q} x {num_g}")
    if rules == "official" and bool((q_pids == -1).any()):
        raise ValueError("a query has pid -1 (junk); the official rules treat pid -1 as junk, so it cannot be a query")


def _chunk_rows(num_q: int, num_g: int) -> int:
    return max(1, min(num_q, CHUNK_PAIRS // max(num_g, 1)))


@dataclass(frozen=True)
class _Candidates:
    """The (query, gallery) pairs that can change a query's metrics: its matches and its junk.

    Every other gallery entry is a plain miss, so a query's CMC and AP follow from where these
    few pairs fall in its ranking. Pairs are grouped by query, in query order.
    """

    query: np.ndarray
    gallery: np.ndarray
    junk: np.ndarray

    @property
    def good(self) -> np.ndarray:
        return ~self.junk

    def per_query(self, num_q: int, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.query[mask], minlength=num_q)


def _candidates(
    q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray, rules: str
) -> _Candidates:
    """Pairs of each query with the gallery entries of its pid, plus (official rules) pid -1."""
    by_pid = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[by_pid]
    lo = np.searchsorted(sorted_pids, q_pids, "left")
    counts = np.searchsorted(sorted_pids, q_pids, "right") - lo
    query = np.repeat(np.arange(len(q_pids)), counts)
    offset = np.arange(len(query)) - np.repeat(np.cumsum(counts) - counts, counts)
    gallery = by_pid[np.repeat(lo, counts) + offset]
    junk = g_camids[gallery] == q_camids[query]
    if rules == "official":
        junk_ids = np.flatnonzero(g_pids == -1)
        query = np.concatenate([query, np.repeat(np.arange(len(q_pids)), len(junk_ids))])
        gallery = np.concatenate([gallery, np.tile(junk_ids, len(q_pids))])
        junk = np.concatenate([junk, np.ones(len(q_pids) * len(junk_ids), dtype=bool)])
        grouped = np.argsort(query, kind="stable")
        query, gallery, junk = query[grouped], gallery[grouped], junk[grouped]
    return _Candidates(query, gallery, junk)


def _stable_positions(dist: np.ndarray, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """0-based position of each (query, gallery) pair in its row's stable ascending sort.

    One SIMD sort of the values per row, then a batched binary search: the position is the
    number of smaller distances plus the number of equal ones at lower gallery indices.
    """
    import torch

    num_q, num_g = dist.shape
    counts = np.bincount(query, minlength=num_q)
    slot = np.arange(len(query)) - np.repeat(np.cumsum(counts) - counts, counts)
    values = np.full((num_q, max(int(counts.max(initial=0)), 1)), np.inf, dtype=dist.dtype)
    values[query, slot] = dist[query, gallery]
    sorted_rows = np.sort(dist, axis=1)
    position = torch.searchsorted(torch.from_numpy(sorted_rows), torch.from_numpy(values)).numpy()[query, slot]
    # The pair's own value sits at ``position``; another equal value right after it means a tie.
    tied = np.flatnonzero(sorted_rows[query, np.minimum(position + 1, num_g - 1)] == values[query, slot])
    tied = tied[position[tied] + 1 < num_g]
    if len(tied):  # equal distances rank by gallery index, as a stable sort leaves them
        rows, cols = query[tied], gallery[tied]
        equal = dist[rows] == dist[rows, cols][:, None]
        position[tied] += (equal & (np.arange(num_g) < cols[:, None])).sum(1)
    return position


def _segmented_cumsum(flags: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Inclusive running count of ``flags`` that restarts at each segment start."""
    total = np.cumsum(flags)
    return total - (total - flags)[starts]


def _score(
    cand: _Candidates, position: np.ndarray, num_q: int, num_g: int, rules: str, with_ap: bool
) -> tuple[np.ndarray, np.ndarray]:
    """First-hit rank (1-based among kept entries, 0: no match) and AP of every query.

    ``position`` is each candidate pair's 0-based place in its query's full ranking (at most
    ``num_g``); a truncated ranking may give one position past its end to all pairs it misses.
    """
    order = np.argsort(cand.query * (num_g + 1) + position, kind="stable")  # by query, then rank
    query, junk, pos = cand.query[order], cand.junk[order], position[order]
    counts = np.bincount(query, minlength=num_q)
    segment_start = np.repeat(np.cumsum(counts) - counts, counts)
    kept_rank = pos - (_segmented_cumsum(junk, segment_start) - junk) + 1
    good = ~junk
    hit_rows, hit_kept = query[good], kept_rank[good]
    first_hit = np.zeros(num_q, dtype=np.int64)
    earliest = np.flatnonzero(np.diff(hit_rows, prepend=-1))  # the first hit of each query
    first_hit[hit_rows[earliest]] = hit_kept[earliest]
    ap = np.full(num_q, np.nan)
    if with_ap:
        hits = _segmented_cumsum(good, segment_start)[good].astype(np.float64)
        kept = hit_kept.astype(np.float64)
        precision = hits / kept
        if rules == "official":  # trapezoid: mean of the precision one kept entry earlier and here
            before = np.where(kept > 1, (hits - 1) / np.maximum(kept - 1, 1), 1.0)
            precision = (before + precision) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = np.bincount(hit_rows, weights=precision, minlength=num_q) / np.bincount(hit_rows, minlength=num_q)
    return first_hit, ap


def _summarise(
    first_hit: np.ndarray, ap: np.ndarray, max_rank: int, rules: str, has_match: np.ndarray
) -> RankingResult:
    if rules == "torchreid":
        valid = has_match
        if not valid.any():
            raise ValueError(
                "no query has a correct match in the gallery (same pid, other camera); "
                "check that query and gallery ids come from the same identities"
            )
    else:
        valid = np.ones(len(first_hit), dtype=bool)
        ap = np.where(has_match, ap, 0.0)  # MATLAB's 0/0 = NaN would poison the mean: count as a miss
    in_range = (first_hit > 0) & (first_hit <= max_rank) & valid
    cmc = np.cumsum(np.bincount(first_hit[in_range] - 1, minlength=max_rank)[:max_rank]) / valid.sum()
    ap = np.where(valid, ap, np.nan)
    return RankingResult(
        cmc=cmc.astype(np.float64), mAP=float(ap[valid].mean()), ap=ap, valid=valid, first_hit=first_hit, rules=rules
    )


def _as_ids(q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike, g_camids: ArrayLike) -> list[np.ndarray]:
    import torch

    out = []
    for name, values in (("q_pids", q_pids), ("g_pids", g_pids), ("q_camids", q_camids), ("g_camids", g_camids)):
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-d array of integer ids, got {array.dtype} of shape {array.shape}")
        out.append(array.astype(np.int64, copy=False))
    return out


def evaluate_ranking(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    rules: Rules = "torchreid",
) -> RankingResult:
    """CMC, mAP and per-query detail of a (queries × gallery) distance matrix (smaller = closer).

    The ranking of each query is the stable ascending sort of its row. Only the positions of its
    matches and junk entries are needed, so each row is sorted by value (a SIMD sort, no index
    permutation) and those few pairs are located by binary search, chunk by chunk.
    """
    import torch

    dist = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must be 2-d (queries x gallery), got shape {dist.shape}")
    if not np.issubdtype(dist.dtype, np.floating):
        dist = dist.astype(np.float64)
    ids = _as_ids(q_pids, g_pids, q_camids, g_camids)
    _check_inputs(dist.shape, *ids, max_rank=max_rank, rules=rules)
    if np.isnan(dist).any():
        raise ValueError("distmat contains NaN; the features probably diverged (check the model's outputs)")
    dist = np.add(dist, 0.0, order="C")  # row-major, and -0.0 becomes 0.0 so that sort and == agree
    num_q, num_g = dist.shape
    cand = _candidates(*ids, rules=rules)
    position = np.empty(len(cand.query), dtype=np.int64)
    bounds = np.searchsorted(cand.query, np.arange(0, num_q + 1))
    step = _chunk_rows(num_q, num_g)
    for start in range(0, num_q, step):
        stop = min(start + step, num_q)
        pairs = slice(bounds[start], bounds[stop])
        position[pairs] = _stable_positions(dist[start:stop], cand.query[pairs] - start, cand.gallery[pairs])
    first_hit, ap = _score(cand, position, num_q, num_g, rules, with_ap=True)
    return _summarise(first_hit, ap, max_rank, rules, has_match=cand.per_query(num_q, cand.good) > 0)


def cmc_map(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    rules: Rules = "torchreid",
) -> tuple[np.ndarray, float]:
    """``(cmc, mAP)`` of a distance matrix: ``cmc[k - 1]`` is the rank-k matching rate.

    ``rules="torchreid"`` equals torchreid's ``eval_market1501`` (to float32 rounding of its CMC);
    ``rules="official"`` follows the MARS MATLAB code. See the module docstring for both.
    """
    result = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, rules)
    return result.cmc, result.mAP


def _check_features(q: torch.Tensor, g: torch.Tensor) -> None:
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be (n, d) matrices of one d, got {tuple(q.shape)} and {tuple(g.shape)}")


def cosine_distance(q_feats: ArrayLike, g_feats: ArrayLike) -> torch.Tensor:
    """1 − cosine similarity in float32 (torchreid's ``cosine_distance``), on the features' device."""
    import torch
    import torch.nn.functional as F

    q, g = torch.as_tensor(q_feats).detach().float(), torch.as_tensor(g_feats).detach().float()
    _check_features(q, g)
    return 1.0 - F.normalize(q, dim=1) @ F.normalize(g.to(q.device), dim=1).T


@functools.cache
def _faiss() -> ModuleType | None:
    """The faiss module, or None (warned once per process) when the ``faiss`` extra is missing."""
    if (why := missing_extra("faiss", "faiss")) is not None:
        logger.warning("feature_cmc_map(cmc_only=True) takes the full ranking: its top-k search %s", why)
        return None
    import faiss

    return faiss


def feature_cmc_map(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    rules: Rules = "torchreid",
    cmc_only: bool = False,
) -> tuple[np.ndarray, float | None]:
    """``(cmc, mAP)`` of features: L2-normalised, ranked by cosine similarity in float32.

    ``cmc_only=True`` skips the full ranking, which mAP needs, for a faiss inner-product top-k
    search (``mAP`` is then ``None``): k is ``max_rank`` plus the largest number of junk entries
    of any query, so the CMC is exact up to ``max_rank`` except where float rounding or ties at the
    k-th neighbour order entries differently. It pays for very large galleries.

    faiss is the ``faiss`` extra. Without it ``cmc_only=True`` warns once and takes the full
    ranking, whose CMC is the one the top-k search approximates, so a caller gets the same numbers
    (``mAP`` still ``None``) at the full ranking's cost rather than an error for a speed option.
    """
    import torch
    import torch.nn.functional as F

    faiss = _faiss() if cmc_only else None
    if faiss is None:
        dist = cosine_distance(q_feats, g_feats)
        result = evaluate_ranking(dist, q_pids, g_pids, q_camids, g_camids, max_rank, rules)
        return result.cmc, (None if cmc_only else result.mAP)

    q_t, g_t = torch.as_tensor(q_feats).detach().float().cpu(), torch.as_tensor(g_feats).detach().float().cpu()
    _check_features(q_t, g_t)
    q, g = F.normalize(q_t, dim=1).numpy(), F.normalize(g_t, dim=1).numpy()
    ids = _as_ids(q_pids, g_pids, q_camids, g_camids)
    _check_inputs((len(q), len(g)), *ids, max_rank=max_rank, rules=rules)
    num_q, num_g = len(q), len(g)
    cand = _candidates(*ids, rules=rules)
    k = int(min(num_g, max_rank + cand.per_query(num_q, cand.junk).max(initial=0)))
    index = faiss.IndexFlatIP(q.shape[1])
    index.add(np.ascontiguousarray(g))
    sims, neighbours = index.search(np.ascontiguousarray(q), k)
    ranked = np.take_along_axis(neighbours, np.lexsort((neighbours, -sims), axis=1), axis=1)  # ties: lower index
    # Where each candidate pair sits in its query's top k (k: beyond it).
    keys = (np.arange(num_q)[:, None] * num_g + ranked).ravel()
    sorter = np.argsort(keys)
    at = np.searchsorted(keys, cand.query * num_g + cand.gallery, sorter=sorter).clip(max=len(keys) - 1)
    found = keys[sorter[at]] == cand.query * num_g + cand.gallery
    position = np.where(found, sorter[at] % k, k)
    first_hit, ap = _score(cand, position, num_q, num_g, rules, with_ap=False)
    return _summarise(first_hit, ap, max_rank, rules, has_match=cand.per_query(num_q, cand.good) > 0).cmc, None


@dataclass(frozen=True)
class RankedList:
    """One query's ranking as a picture shows it: the query's image and the top gallery entries'
    images, each with a caption, and whether each gallery entry is a hit (same pid).

    Images are uint8 arrays of shape (height, width, 3)."""

    query: np.ndarray
    query_caption: str
    gallery: list[np.ndarray]
    captions: list[str]
    hits: list[bool]


def top_ranked(
    distmat: ArrayLike, q_pids: ArrayLike, g_pids: ArrayLike, q_camids: ArrayLike, g_camids: ArrayLike, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` gallery entries of each query's ranking under the torchreid rules (the
    stable ascending sort of its row, entries with the query's pid and camera removed, as the
    metrics remove them): (gallery indices, hit flags), each (queries × k); where fewer than ``k``
    entries remain, the index is -1 and the flag False."""
    import torch

    dist = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    q_pids, g_pids, q_camids, g_camids = _as_ids(q_pids, g_pids, q_camids, g_camids)
    removed = (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] == g_camids[None, :])
    order = np.argsort(np.where(removed, np.inf, np.add(dist, 0.0)), axis=1, kind="stable")[:, :k]
    kept = ~np.take_along_axis(removed, order, axis=1)
    index = np.where(kept, order, -1)
    return index, kept & (g_pids[order] == q_pids[:, None])
