"""Fast tests of the baseline and label functions of benchmarks/ranking_quality.py on tiny inputs."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                     "ranking_quality.py")
_spec = importlib.util.spec_from_file_location("ranking_quality_bench", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up while the file executes
_spec.loader.exec_module(bench)

CVS = [
    "Experience: Diagnose engine faults; repair brakes. Skills: Repairing vehicles.",
    "Experience: Teach algebra to students; grade exams. Skills: Teaching others.",
    "Experience: Plant trees and prune shrubs. Skills: Operating garden equipment.",
    "Experience: Repair diesel engines and brakes of trucks. Skills: Repairing engines.",
]
JOBS = ["Repair and maintain engines and brakes of vehicles.", "Teach students algebra."]


def test_tokenize_lowercases_and_splits_on_non_alphanumerics():
    assert bench.tokenize("C++ & Java-8, SQL!") == ["c", "java", "8", "sql"]


def test_relevance_matrix_aligns_to_index_and_counts_unknown_cvs():
    labels, unknown = bench.relevance_matrix(
        [["cv-2", "cv-9"], []], [[2, 1], []], ["cv-1", "cv-2", "cv-3"])
    np.testing.assert_array_equal(labels, [[0, 2, 0], [0, 0, 0]])
    assert unknown == 1


def test_relevance_matrix_rejects_ragged_judgments():
    with pytest.raises(ValueError, match="^job 0: 1 judged CV ids but 2 relevance values$"):
        bench.relevance_matrix([["cv-1"]], [[1, 2]], ["cv-1"])


def test_bm25_sparse_scores_equal_rank_bm25_get_scores():
    bm25 = bench.bm25_index(CVS)
    jobs = JOBS + ["brakes brakes unknownword", ""]  # repeated, unseen and no tokens
    scores = bench.bm25_scores(bm25, jobs)
    assert scores.shape == (len(jobs), len(CVS))
    for row, job in enumerate(jobs):
        np.testing.assert_allclose(scores[row], bm25.get_scores(bench.tokenize(job)), rtol=1e-12, atol=1e-12)


def test_tfidf_scores_are_cosines_that_rank_the_matching_cv_first():
    for kwargs in ({}, {"sublinear_tf": True}):
        scores = bench.tfidf_scores(CVS, JOBS, **kwargs)
        assert scores.shape == (2, 4)
        assert np.all(scores >= 0) and np.all(scores <= 1 + 1e-12)
        assert set(np.argsort(-scores[0])[:2]) == {0, 3}
        assert np.argmax(scores[1]) == 1
        # A CV scored against itself is a cosine of 1.
        np.testing.assert_allclose(bench.tfidf_scores(CVS, CVS[:1], **kwargs)[0, 0], 1.0)


def test_random_scores_are_seeded():
    np.testing.assert_array_equal(bench.random_scores(3, 5, 7), bench.random_scores(3, 5, 7))
    assert not np.array_equal(bench.random_scores(3, 5, 7), bench.random_scores(3, 5, 8))


def test_score_metrics_uses_the_metric_module_and_excludes_jobs_without_relevant_cvs():
    labels = np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    perfect = np.array([[3.0, 1.0, 2.0], [0.5, 0.2, 0.1]])
    metrics = bench.score_metrics(labels, perfect)
    assert metrics["MAP"].value == pytest.approx(1.0)
    assert metrics["NDCG@10"].value == pytest.approx(1.0)
    assert metrics["P@10"].value == pytest.approx(0.2)  # 2 relevant of k = 10
    assert metrics["R@100"].value == pytest.approx(1.0)
    for aggregate in metrics.values():
        assert (aggregate.num_jobs, aggregate.num_jobs_without_relevant) == (1, 1)


def test_mean_metrics_averages_values_over_runs():
    labels = np.array([[1.0, 0.0]])
    runs = [bench.score_metrics(labels, np.array([[1.0, 0.0]])),
            bench.score_metrics(labels, np.array([[0.0, 1.0]]))]
    assert bench.mean_metrics(runs)["MAP"].value == pytest.approx((1.0 + 0.5) / 2)
