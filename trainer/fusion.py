"""Fits how the served ranking fuses the embedding cosine with BM25 and pseudo-relevance feedback.

The served score is defined in `serving.model` (module docstring); `fused_scores` computes it in NumPy
from the embedding and BM25 scores and the CVs' TF-IDF vectors. `fit_fusion` picks the parameters on the
eval jobs by grid search: every `LEXICAL_WEIGHTS` x `FEEDBACK_WEIGHTS` x `FEEDBACK_DOCS`, maximising the
mean of lenient MAP (relevant = relevance >= 1) and strict MAP (relevance 2), or lenient MAP alone when no
eval job has a relevance-2 CV. Ties keep the first setting in grid order (lower weights first), so the
simplest ranking that is as good wins. Only the eval jobs are ever passed in: the test jobs stay held out.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import List, Tuple

import numpy as np
from scipy import sparse

from evaluation import ranking
from serving.lexical import LexicalIndex
from serving.model import FEEDBACK_DECAY, FusionParams

LEXICAL_WEIGHTS = tuple(round(0.1 * k, 1) for k in range(11))
FEEDBACK_WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5)
FEEDBACK_DOCS = (1, 2, 3, 5)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its population standard deviation; a constant row gives 0."""
    scores = np.asarray(scores, np.float64)
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return np.where(std > 0, (scores - mean) / np.where(std > 0, std, 1.0), 0.0)


def tfidf_matrix(index: LexicalIndex, n_cvs: int) -> sparse.csr_matrix:
    """The CVs' l2-normalised TF-IDF vectors as a CSR matrix [n_cvs, n_columns]."""
    return sparse.csr_matrix((index.tfidf_values.astype(np.float64), (index.indices[:, 0], index.indices[:, 1])),
                             shape=(n_cvs, index.n_columns))


def top_similarity(first: np.ndarray, tfidf: sparse.csr_matrix, docs: int) -> np.ndarray:
    """[n_jobs, k, n_cvs], k = min(docs, n_cvs): each CV's TF-IDF cosine with each job's k best CVs of
    `first` in rank order (ties: lower index first), its similarity to itself left out (0)."""
    n_jobs, n_cvs = first.shape
    k = min(docs, n_cvs)
    top = np.argsort(-first, axis=1, kind="stable")[:, :k]
    similarity = (tfidf[top.reshape(-1)] @ tfidf.T).toarray().reshape(n_jobs, k, n_cvs)
    similarity[np.arange(n_jobs)[:, None], np.arange(k)[None, :], top] = 0.0
    return similarity


def decayed_feedback(similarity: np.ndarray) -> np.ndarray:
    """[n_jobs, n_cvs]: `top_similarity` over its k feedback CVs, weighted FEEDBACK_DECAY ** rank
    normalised to sum 1. The first m of a `top_similarity` of more CVs give the feedback of m CVs."""
    k = similarity.shape[1]
    decay = FEEDBACK_DECAY ** np.arange(k)
    return np.einsum("k,jkn->jn", decay / decay.sum(), similarity)


def feedback_scores(first: np.ndarray, tfidf: sparse.csr_matrix, docs: int) -> np.ndarray:
    """[n_jobs, n_cvs]: each CV's TF-IDF cosine with the first `docs` CVs of `first` (ties: lower index
    first), weighted FEEDBACK_DECAY ** rank normalised to sum 1, leaving out a CV's similarity to itself."""
    return decayed_feedback(top_similarity(first, tfidf, docs))


def _feedback_term(first: np.ndarray, decayed: np.ndarray) -> np.ndarray:
    matched = first.std(axis=1, keepdims=True) > 0
    return matched * standardise(decayed)


def feedback_term(first: np.ndarray, tfidf: sparse.csr_matrix, docs: int) -> np.ndarray:
    """z(feedback) of the served score for the first pass `first`; 0 for a job whose first pass is
    constant (a query that matches nothing)."""
    return _feedback_term(first, feedback_scores(first, tfidf, docs))


def fused_scores(embedding: np.ndarray, bm25: np.ndarray, tfidf: sparse.csr_matrix, params: FusionParams) -> np.ndarray:
    """The served score [n_jobs, n_cvs] for `params` (`serving.model` defines it). In float64, where the
    served graph uses float32: first-pass scores within float32 rounding of each other may pick different
    feedback CVs."""
    if not params.hybrid:
        return np.asarray(embedding, np.float64)
    w = params.lexical_weight
    first = w * standardise(bm25) + (1.0 - w) * standardise(embedding)
    return standardise(first) + params.feedback_weight * feedback_term(first, tfidf, params.feedback_docs)


@dataclasses.dataclass(frozen=True)
class FusionFit:
    """The chosen parameters, their objective on the eval jobs, the embedding cosine's objective (the
    ranking without fusion) and the number of eval jobs with a relevant CV."""

    params: FusionParams
    objective: float
    embedding_objective: float
    num_jobs: int


def objective(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean of lenient and strict MAP over the jobs (lenient MAP alone when no job has a strict relevant
    CV); NaN when no job has a relevant CV."""
    lenient, strict = ranking.mean_average_precisions(
        labels, scores, (ranking.DEFAULT_RELEVANCE_THRESHOLD, ranking.STRICT_RELEVANCE_THRESHOLD))
    return lenient if math.isnan(strict) else (lenient + strict) / 2.0


def fit_fusion(labels: np.ndarray, embedding: np.ndarray, bm25: np.ndarray, tfidf: sparse.csr_matrix) -> FusionFit:
    """The grid point (module docstring) with the best `objective` on these jobs: `labels`, `embedding`
    and `bm25` are [n_jobs, n_cvs] in index order, `tfidf` the CVs' TF-IDF vectors. Raises ValueError when
    no job has a relevant CV."""
    labels = np.asarray(labels, np.float64)
    embedding_only = objective(labels, embedding)
    if math.isnan(embedding_only):
        raise ValueError("no eval job has a relevant CV: the fusion weights cannot be fitted")
    z_embedding, z_bm25 = standardise(embedding), standardise(bm25)
    best: Tuple[float, FusionParams] = (-math.inf, FusionParams())
    for w in LEXICAL_WEIGHTS:
        first = w * z_bm25 + (1.0 - w) * z_embedding
        z_first = standardise(first)
        settings: List[Tuple[float, int]] = [(0.0, FEEDBACK_DOCS[0])]
        settings += [(g, m) for g, m in itertools.product(FEEDBACK_WEIGHTS, FEEDBACK_DOCS) if g > 0]
        # One similarity product for the most feedback CVs; fewer CVs are its first rows.
        similarity = top_similarity(first, tfidf, max(FEEDBACK_DOCS))
        feedback = {}
        for g, m in settings:
            if g > 0 and m not in feedback:
                feedback[m] = _feedback_term(first, decayed_feedback(similarity[:, :m]))
            scores = z_first + g * feedback[m] if g > 0 else z_first
            value = objective(labels, scores)
            if value > best[0]:
                best = (value, FusionParams(True, w, g, m))
    n_jobs = int(ranking.mean_average_precision(labels, embedding).num_jobs)
    return FusionFit(best[1], best[0], embedding_only, n_jobs)
