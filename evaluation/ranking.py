"""Ranking metrics over a full candidate ranking, in plain NumPy.

One *job* (query) is described by two 1-D arrays of equal length N, aligned by candidate (CV) index:

* ``relevance``: graded relevance of every CV for the job (cvrank uses 0, 1, 2; any finite value >= 0
  is accepted).
* ``scores``: the model's score of every CV for the job. Higher means ranked earlier.

Every CV of the index is ranked (full-candidate ranking); nothing here samples negatives.

Ranking and ties
    CVs are ordered by score, descending. Equal scores are broken by candidate index, ascending (a
    stable sort), so the ranking, and every metric below, is deterministic. NaN scores rank after every
    other score (among themselves, by index again): a model emitting NaNs is scored as if it had ranked
    those CVs last.

Relevant CV
    A CV is *relevant* for a job when ``relevance >= relevance_threshold`` (default 1; must be > 0).
    cvrank's Evaluator reports its metrics at two levels: lenient, threshold 1 (any relevant grade),
    and strict, threshold 2 (grade 2: the CV's occupation is the job's).

Per-job metrics (``rank`` is 1-based)
    * AP: mean, over the job's relevant CVs, of precision at the rank of that CV.
    * NDCG@k: DCG@k / IDCG@k with discount ``1 / log2(rank + 1)`` and gain ``2**relevance - 1`` for
      a relevant CV, 0 for any other; IDCG@k is the DCG@k of the CVs sorted by gain, descending.
      Relevant CVs keep their graded gains (with cvrank's grades and threshold 1, a grade-2 CV gains
      3 and a grade-1 CV 1: plain graded NDCG); with threshold 2 only grade-2 CVs gain anything.
    * precision@k: number of relevant CVs in the first k ranks divided by k (by k even when N < k).
    * recall@k: number of relevant CVs in the first k ranks divided by the job's number of relevant CVs.

Jobs without a relevant CV
    AP, NDCG and recall are undefined for a job without any relevant CV, and precision@k would be a
    constant 0 that says nothing about the model. Aggregates over several jobs therefore exclude such
    jobs from every metric, so all metrics average over the same set of jobs, and report how many
    were excluded (``RankingAggregate.num_jobs_without_relevant``). An aggregate over no evaluable job
    is NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, List, Optional

import numpy as np

DEFAULT_RELEVANCE_THRESHOLD = 1.0
# Strict relevance: only CVs of the job's own occupation (relevance 2) count as relevant.
STRICT_RELEVANCE_THRESHOLD = 2.0
DEFAULT_NDCG_K = 10
DEFAULT_PRECISION_K = 10
DEFAULT_RECALL_K = 100

# Names the Evaluator's metrics are stored under (evaluation.tfma_metrics), kept here, free of Beam and
# TFMA, for the readers of stored results: a strict metric is named like its lenient one plus the suffix.
MAP_NAME = "map"
NDCG_NAME = f"ndcg@{DEFAULT_NDCG_K}"
JOBS_WITHOUT_RELEVANT_NAME = "jobs_without_relevant"
STRICT_SUFFIX = "_strict"


def _as_job_arrays(relevance, scores) -> tuple[np.ndarray, np.ndarray]:
    """Returns (relevance, scores) as 1-D float64 arrays; raises ValueError on bad shapes or labels."""
    rel = np.asarray(relevance, dtype=np.float64).reshape(-1)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if rel.shape != sc.shape:
        raise ValueError(
            f"relevance and scores must have the same number of candidates: {rel.size} != {sc.size}"
        )
    if not np.all(np.isfinite(rel)):
        raise ValueError("relevance must be finite")
    return rel, sc


def check_relevance_threshold(relevance_threshold: float) -> float:
    """Returns the threshold as float; raises ValueError unless it is > 0."""
    t = float(relevance_threshold)
    # A threshold <= 0 would make CVs with zero gain "relevant" and NDCG's ideal DCG possibly 0.
    if not t > 0:
        raise ValueError(f"relevance_threshold must be > 0, got {relevance_threshold}")
    return t


def check_k(k: int) -> int:
    """Returns k as int; raises ValueError unless it is a positive integer."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    return int(k)


def rank_order(scores) -> np.ndarray:
    """Returns candidate indices in rank order: score descending, ties by index ascending, NaN last."""
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    # argsort of -scores with a stable kind keeps equal scores in index order; NumPy sorts NaN last.
    return np.argsort(-sc, kind="stable")


def has_relevant(relevance, relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD) -> bool:
    """True when at least one candidate has relevance >= relevance_threshold."""
    t = check_relevance_threshold(relevance_threshold)
    rel = np.asarray(relevance, dtype=np.float64).reshape(-1)
    return bool(np.any(rel >= t))


def average_precision(
    relevance, scores, relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD
) -> float:
    """AP of one job; NaN when the job has no relevant CV.

    AP = (1 / R) * sum over relevant CVs c of precision@rank(c), R = number of relevant CVs.
    """
    rel, sc = _as_job_arrays(relevance, scores)
    t = check_relevance_threshold(relevance_threshold)
    hits = (rel[rank_order(sc)] >= t).astype(np.float64)
    num_relevant = hits.sum()
    if num_relevant == 0:
        return float("nan")
    precision_at_rank = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(np.sum(precision_at_rank * hits) / num_relevant)


def dcg_at_k(gains_in_rank_order: np.ndarray, k: int) -> float:
    """DCG of the first k gains of a ranked list: sum_{r=1..k} gain_r / log2(r + 1)."""
    g = np.asarray(gains_in_rank_order, dtype=np.float64)[: check_k(k)]
    return float(np.sum(g / np.log2(np.arange(2, g.size + 2))))


def ndcg_at_k(
    relevance, scores, k: int = DEFAULT_NDCG_K,
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD,
) -> float:
    """NDCG@k of one job: gain 2**relevance - 1 for CVs with relevance >= relevance_threshold, 0 for the
    others; NaN when the ideal DCG@k is 0 (no relevant CV)."""
    rel, sc = _as_job_arrays(relevance, scores)
    k = check_k(k)
    t = check_relevance_threshold(relevance_threshold)
    gains = np.where(rel >= t, np.exp2(rel) - 1.0, 0.0)
    ideal = dcg_at_k(np.sort(gains)[::-1], k)
    if ideal <= 0:
        return float("nan")
    return dcg_at_k(gains[rank_order(sc)], k) / ideal


def precision_at_k(
    relevance, scores, k: int = DEFAULT_PRECISION_K,
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD,
) -> float:
    """Relevant CVs among the first k ranks, divided by k (also when fewer than k CVs exist)."""
    rel, sc = _as_job_arrays(relevance, scores)
    k = check_k(k)
    t = check_relevance_threshold(relevance_threshold)
    return float(np.sum(rel[rank_order(sc)[:k]] >= t) / k)


def recall_at_k(
    relevance, scores, k: int = DEFAULT_RECALL_K,
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD,
) -> float:
    """Relevant CVs among the first k ranks, divided by all relevant CVs; NaN without relevant CVs."""
    rel, sc = _as_job_arrays(relevance, scores)
    k = check_k(k)
    t = check_relevance_threshold(relevance_threshold)
    num_relevant = np.sum(rel >= t)
    if num_relevant == 0:
        return float("nan")
    return float(np.sum(rel[rank_order(sc)[:k]] >= t) / num_relevant)


@dataclasses.dataclass(frozen=True)
class RankingAggregate:
    """A metric averaged over jobs.

    value: weighted mean of the per-job metric over jobs with at least one relevant CV (NaN if none).
    num_jobs: total weight (number, when unweighted) of the jobs that entered the mean.
    num_jobs_without_relevant: total weight of the jobs excluded for having no relevant CV.
    """

    value: float
    num_jobs: float
    num_jobs_without_relevant: float


def mean_over_jobs(
    per_job_metric: Callable[[np.ndarray, np.ndarray], float],
    relevance_rows: Iterable,
    score_rows: Iterable,
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD,
    weights: Optional[Iterable[float]] = None,
) -> RankingAggregate:
    """Averages ``per_job_metric(relevance, scores)`` over jobs, excluding jobs without relevant CVs.

    Rows may differ in length between jobs (each job is ranked on its own). ``weights`` are per-job
    weights (default 1 each).
    """
    relevance_rows = list(relevance_rows)
    score_rows = list(score_rows)
    if len(relevance_rows) != len(score_rows):
        raise ValueError("relevance_rows and score_rows must have the same number of jobs")
    weights = [1.0] * len(relevance_rows) if weights is None else [float(w) for w in weights]
    if len(weights) != len(relevance_rows):
        raise ValueError("weights must have one value per job")
    total = used = excluded = 0.0
    for rel, sc, w in zip(relevance_rows, score_rows, weights):
        if has_relevant(rel, relevance_threshold):
            total += w * per_job_metric(rel, sc)
            used += w
        else:
            excluded += w
    return RankingAggregate(total / used if used > 0 else float("nan"), used, excluded)


def mean_average_precisions(relevance: np.ndarray, scores: np.ndarray,
                             relevance_thresholds: Iterable[float]) -> List[float]:
    """MAP at each of `relevance_thresholds` for jobs that share their candidates: `relevance` and
    `scores` are [n_jobs, n_candidates] matrices. Each value is what ``mean_average_precision`` gives
    for the rows at that threshold, up to floating-point rounding (NaN when no job has a relevant CV).

    Faster for many score matrices (a grid search): a row is sorted once, without its indices, and only
    the relevant candidates are ranked in it; a row where a relevant candidate's score is tied or NaN is
    ranked in full, as ``rank_order`` does."""
    rel = np.asarray(relevance, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    if rel.ndim != 2 or rel.shape != sc.shape:
        raise ValueError(f"relevance and scores must be matrices of one shape: {rel.shape} != {sc.shape}")
    thresholds = [check_relevance_threshold(t) for t in relevance_thresholds]
    n = rel.shape[1]
    ascending = np.sort(sc, axis=1)  # NaN last
    totals, used = [0.0] * len(thresholds), [0] * len(thresholds)
    for row in range(rel.shape[0]):
        candidates = np.flatnonzero(rel[row] >= min(thresholds))
        if candidates.size == 0:
            continue
        values = sc[row, candidates]
        right = np.searchsorted(ascending[row], values, side="right")
        if np.isnan(ascending[row, -1]) or np.any(right - np.searchsorted(ascending[row], values, side="left") > 1):
            ranks = np.empty(n, dtype=np.int64)
            ranks[rank_order(sc[row])] = np.arange(1, n + 1)
            ranks = ranks[candidates]
        else:  # 1 + the number of candidates scored higher
            ranks = n - right + 1
        grades = rel[row, candidates]
        for k, threshold in enumerate(thresholds):
            ranked = np.sort(ranks[grades >= threshold]).astype(np.float64)
            if ranked.size:  # AP: precision at the rank of each relevant candidate, averaged
                totals[k] += float(np.sum(np.arange(1, ranked.size + 1) / ranked) / ranked.size)
                used[k] += 1
    return [total / count if count else float("nan") for total, count in zip(totals, used)]


def mean_average_precision(
    relevance_rows: Iterable, score_rows: Iterable,
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD,
    weights: Optional[Iterable[float]] = None,
) -> RankingAggregate:
    """MAP: mean AP over jobs with at least one relevant CV; see ``mean_over_jobs``."""
    return mean_over_jobs(
        lambda r, s: average_precision(r, s, relevance_threshold),
        relevance_rows, score_rows, relevance_threshold, weights,
    )
