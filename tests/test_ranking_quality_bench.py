"""Fast tests of the pure functions of benchmarks/ranking_quality.py on tiny hand-made inputs: labels,
baselines, strict/lenient metrics, the targets ratio and the distractor count."""

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
    assert set(metrics) == set(bench.METRICS)
    assert metrics["MAP"].value == pytest.approx(1.0)
    assert metrics["NDCG@10"].value == pytest.approx(1.0)
    assert metrics["P@10"].value == pytest.approx(0.2)  # 2 relevant of k = 10
    for aggregate in metrics.values():
        assert (aggregate.num_jobs, aggregate.num_jobs_without_relevant) == (1, 1)


def test_level_metrics_strict_counts_only_relevance_2():
    # One job: a grade-1 CV ranked first, the grade-2 CV second, one irrelevant CV last.
    labels = np.array([[1.0, 2.0, 0.0]])
    scores = np.array([[0.9, 0.5, 0.1]])
    metrics = bench.level_metrics(labels, scores)
    assert set(metrics) == {(level, m) for level, _ in bench.LEVELS for m in bench.METRICS}
    # Strict: the one relevant CV (grade 2) is at rank 2; the grade-1 CV gains nothing.
    assert metrics[("strict", "MAP")].value == pytest.approx(0.5)
    assert metrics[("strict", "NDCG@10")].value == pytest.approx(1 / np.log2(3))
    assert metrics[("strict", "P@10")].value == pytest.approx(0.1)
    # Lenient: both are relevant, with graded gains 1 (grade 1) and 3 (grade 2).
    assert metrics[("lenient", "MAP")].value == pytest.approx(1.0)
    ideal = 3 + 1 / np.log2(3)
    assert metrics[("lenient", "NDCG@10")].value == pytest.approx((1 + 3 / np.log2(3)) / ideal)
    assert metrics[("lenient", "P@10")].value == pytest.approx(0.2)


def test_level_metrics_leave_out_jobs_without_a_relevant_cv_per_level():
    labels = np.array([[1.0, 0.0], [2.0, 0.0]])  # job 0 has no grade-2 CV
    metrics = bench.level_metrics(labels, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert (metrics[("strict", "MAP")].num_jobs, metrics[("strict", "MAP")].num_jobs_without_relevant) == (1, 1)
    assert metrics[("strict", "MAP")].value == pytest.approx(0.5)
    assert metrics[("lenient", "MAP")].num_jobs == 2
    assert metrics[("lenient", "MAP")].value == pytest.approx((1.0 + 0.5) / 2)


def test_mean_metrics_averages_values_over_runs():
    labels = np.array([[1.0, 0.0]])
    runs = [bench.level_metrics(labels, np.array([[1.0, 0.0]])),
            bench.level_metrics(labels, np.array([[0.0, 1.0]]))]
    mean = bench.mean_metrics(runs)
    assert mean[("lenient", "MAP")].value == pytest.approx((1.0 + 0.5) / 2)
    assert np.isnan(mean[("strict", "MAP")].value)  # no grade-2 CV: no job to average
    assert mean[("lenient", "MAP")].num_jobs == 1


def _metrics(**values):
    """{(level, metric): aggregate} from keyword arguments like strict_MAP=0.5."""
    return {tuple(key.split("_", 1)): bench.ranking.RankingAggregate(v, 1, 0) for key, v in values.items()}


def test_targets_divide_the_served_row_by_the_best_external_lexical_row():
    rows = {
        "cvrank": _metrics(strict_MAP=0.6, lenient_MAP=0.5, strict_P=0.0),
        bench.TFIDF: _metrics(strict_MAP=0.4, lenient_MAP=0.5, strict_P=0.0),
        bench.BM25: _metrics(strict_MAP=0.5, lenient_MAP=float("nan"), strict_P=0.0),
        "random": _metrics(strict_MAP=0.9, lenient_MAP=0.9, strict_P=0.9),  # not a baseline of the targets
    }
    found = {(t.level, t.metric): t for t in bench.targets(rows, "cvrank", bench.EXTERNAL_LEXICAL)}
    assert set(found) == {("strict", "MAP"), ("lenient", "MAP"), ("strict", "P")}
    assert (found[("strict", "MAP")].baseline, found[("strict", "MAP")].ratio) == (bench.BM25, pytest.approx(1.2))
    assert found[("strict", "MAP")].served == 0.6 and found[("strict", "MAP")].baseline_value == 0.5
    # A NaN baseline never wins; the served row equal to the best gives 1.0.
    assert (found[("lenient", "MAP")].baseline, found[("lenient", "MAP")].ratio) == (bench.TFIDF, 1.0)
    # Ties go to the first baseline in the given order; 0 / 0 is NaN.
    assert found[("strict", "P")].baseline == bench.TFIDF and np.isnan(found[("strict", "P")].ratio)
    assert bench.targets(rows, "missing", bench.EXTERNAL_LEXICAL) == []
    assert bench.targets({"cvrank": rows["cvrank"]}, "cvrank", bench.EXTERNAL_LEXICAL) == []


def test_ratio_handles_zero_and_nan():
    assert bench.ratio(0.55, 0.5) == pytest.approx(1.1)
    assert bench.ratio(0.5, 0.0) == float("inf")
    assert np.isnan(bench.ratio(0.0, 0.0))
    assert np.isnan(bench.ratio(float("nan"), 0.5)) and np.isnan(bench.ratio(0.5, float("nan")))


MINOR = {"11-1011.00": "11-10", "11-1021.00": "11-10", "15-1252.00": "15-12", "29-1211.00": "29-10"}


def test_distractor_matches_its_occupations_and_their_minor_groups():
    assert bench.distractor_matches("15-1252.00", ["15-1252.00", "29-1211.00"], MINOR)
    assert bench.distractor_matches("11-1021.00", ["11-1011.00"], MINOR)  # same minor group 11-10
    assert not bench.distractor_matches("15-1252.00", ["11-1011.00", "29-1211.00"], MINOR)
    # A job or occupation without a known minor group matches only itself.
    assert not bench.distractor_matches("99-9999.00", ["88-8888.00"], MINOR)
    assert bench.distractor_matches("99-9999.00", ["99-9999.00"], MINOR)


def test_unmatched_distractors_in_top_k_counts_per_job():
    cv_ids = ["cv-1", "cv-d1", "cv-2", "cv-d2", "cv-d3"]
    distractors = {"cv-d1": ["15-1252.00", "29-1211.00"], "cv-d2": ["11-1011.00"],
                   "cv-d3": ["29-1211.00"], "cv-d9": ["11-1011.00"]}  # cv-d9 is not in the index
    job_ids = ["15-1252.00", "11-1021.00", "29-1211.00"]
    scores = np.array([
        [0.1, 0.9, 0.2, 0.8, 0.7],  # top 2: cv-d1 (matches), cv-d2 (does not) -> 1
        [0.9, 0.5, 0.8, 0.1, 0.4],  # top 2: cv-1, cv-2 -> 0 (cv-d2 would match: minor group 11-10)
        [0.5, 0.5, 0.1, 0.5, 0.0],  # ties by column: cv-1, cv-d1 (matches) -> 0
    ])
    counts = bench.unmatched_distractors_in_top_k(scores, cv_ids, job_ids, distractors, MINOR, k=2)
    np.testing.assert_array_equal(counts, [1, 0, 0])
    everything = bench.unmatched_distractors_in_top_k(scores, cv_ids, job_ids, distractors, MINOR, k=5)
    # Whole list: 15-1252.00 is missed by cv-d2 and cv-d3, 11-1021.00 by cv-d1 and cv-d3, 29-1211.00 by cv-d2.
    np.testing.assert_array_equal(everything, [2, 2, 1])
    np.testing.assert_array_equal(
        bench.unmatched_distractors_in_top_k(scores, cv_ids, job_ids, {}, MINOR), [0, 0, 0])


def test_read_distractors_and_minor_groups(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "jobs.csv").write_text(
        "job_id,title,text,major_group,minor_group\n15-1252.00,Dev,Writes code,15,15-12\n", encoding="utf-8")
    (tmp_path / bench.DISTRACTORS_FILE).write_text(
        "cv_id,job_ids\ncv-d00001,15-1252.00 29-1211.00\ncv-d00002,11-1011.00\n", encoding="utf-8")
    assert bench.read_minor_groups(str(tmp_path)) == {"15-1252.00": "15-12"}
    assert bench.read_distractors(str(tmp_path / bench.DISTRACTORS_FILE)) == {
        "cv-d00001": ["15-1252.00", "29-1211.00"], "cv-d00002": ["11-1011.00"]}
