"""Tests of the ranking metrics: NumPy functions (evaluation.ranking), TFMA metrics
(evaluation.tfma_metrics) in Beam and in a whole tfma.run_model_analysis, the Evaluator's
configuration (pipeline.eval_config), results (evaluation.results), the run summary's evaluation lines,
and cvrank's Evaluator executor (components.evaluator) on a tiny multi-output SavedModel.

The NumPy metrics, the metric configurations and combiners called directly are unit tests; the
combiners in a Beam pipeline, tfma.run_model_analysis and the Evaluator executor (TFMA on Beam) are
slow."""

from __future__ import annotations

import json
import math
import os
import re

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import util as beam_util
from sklearn.metrics import average_precision_score, ndcg_score
from tensorflow_model_analysis import slicer
from tensorflow_model_analysis.metrics import metric_specs, metric_util
from tensorflow_model_analysis.proto import config_pb2
from tfx.types import artifact_utils

from evaluation import ranking, tfma_metrics
from pipeline.beam import IN_PROCESS

MODULE = "evaluation.tfma_metrics"


# --------------------------------------------------------------------------------------------------
# NumPy metrics: hand-computed values
# --------------------------------------------------------------------------------------------------


def test_average_precision_by_hand():
    # Scores rank the CVs in index order; relevant CVs sit at ranks 1 and 3 of 5.
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    relevance = [2, 0, 1, 0, 0]
    assert ranking.average_precision(relevance, scores) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # Relevant at ranks 2, 4, 5: precisions 1/2, 2/4, 3/5.
    assert ranking.average_precision([0, 1, 0, 1, 2], scores) == pytest.approx(
        (1 / 2 + 2 / 4 + 3 / 5) / 3
    )
    # Threshold 2: only the grade-2 CV at rank 5 is relevant.
    assert ranking.average_precision([0, 1, 0, 1, 2], scores, relevance_threshold=2) == (
        pytest.approx(1 / 5)
    )
    # Scores need not be sorted: rank = position after sorting by score.
    assert ranking.average_precision([1, 0, 0], [0.1, 0.5, 0.3]) == pytest.approx(1 / 3)


def test_mean_average_precisions_of_a_matrix_equal_the_per_job_map_at_each_threshold():
    rng = np.random.default_rng(7)
    relevance = rng.choice([0.0, 0.0, 0.0, 1.0, 2.0], size=(40, 60))
    relevance[3] = 0.0  # a job without any relevant CV
    relevance[5] = np.where(relevance[5] == 2.0, 1.0, relevance[5])  # one without a grade-2 CV
    scores = rng.normal(size=(40, 60))
    scores[7] = 0.5  # a constant row: ranked by index
    scores[9, ::3] = scores[9, 0]  # ties within a row
    scores[11, 4] = np.nan  # NaN ranks last
    lenient, strict = ranking.mean_average_precisions(relevance, scores, (1.0, 2.0))
    assert lenient == pytest.approx(ranking.mean_average_precision(relevance, scores, 1.0).value, rel=1e-12, abs=0)
    assert strict == pytest.approx(ranking.mean_average_precision(relevance, scores, 2.0).value, rel=1e-12, abs=0)
    # Rows without ties or NaN take the sorted-scores path; rows with them, the full ranking: both count.
    clean = rng.normal(size=(40, 60))
    assert ranking.mean_average_precisions(relevance, clean, (1.0,))[0] == pytest.approx(
        ranking.mean_average_precision(relevance, clean, 1.0).value, rel=1e-12, abs=0)
    assert np.isnan(ranking.mean_average_precisions(np.zeros((2, 3)), np.ones((2, 3)), (1.0,))[0])
    with pytest.raises(ValueError, match="one shape"):
        ranking.mean_average_precisions(relevance, scores[:, :5], (1.0,))


def test_mean_average_precision_by_hand():
    scores = [[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]]
    relevance = [[2, 0, 1, 0, 0], [1, 0, 0, 0, 1]]
    # Job 2 ranks CV 4 first (relevant) and CV 0 last (relevant): AP = (1/1 + 2/5) / 2.
    ap1, ap2 = (1 + 2 / 3) / 2, (1 + 2 / 5) / 2
    agg = ranking.mean_average_precision(relevance, scores)
    assert agg.value == pytest.approx((ap1 + ap2) / 2)
    assert (agg.num_jobs, agg.num_jobs_without_relevant) == (2, 0)
    weighted = ranking.mean_average_precision(relevance, scores, weights=[1.0, 3.0])
    assert weighted.value == pytest.approx((ap1 + 3 * ap2) / 4)


def test_ties_are_broken_by_candidate_index():
    # All scores equal: the ranking is the index order 0, 1, 2, 3.
    assert list(ranking.rank_order([0.5, 0.5, 0.5, 0.5])) == [0, 1, 2, 3]
    assert list(ranking.rank_order([0.1, 0.7, 0.1, 0.7])) == [1, 3, 0, 2]
    assert ranking.average_precision([0, 0, 1, 0], [0.5] * 4) == pytest.approx(1 / 3)
    assert ranking.average_precision([0, 1, 0, 1], [0.1, 0.7, 0.1, 0.7]) == pytest.approx(1.0)
    # Many ties: same value as with the ties broken explicitly by subtracting index * epsilon
    # (scores are integers, so the epsilon never reorders distinct scores).
    rng = np.random.default_rng(3)
    rel, sc = rng.integers(0, 3, 200), rng.integers(0, 5, 200).astype(float)
    tie_free = sc - np.arange(200) * 1e-6
    assert ranking.average_precision(rel, sc) == ranking.average_precision(rel, tie_free)
    assert ranking.average_precision(rel, sc) == pytest.approx(
        average_precision_score(rel >= 1, tie_free)
    )
    assert ranking.ndcg_at_k(rel, sc, k=10) == ranking.ndcg_at_k(rel, tie_free, k=10)


def test_nan_scores_rank_last():
    assert list(ranking.rank_order([np.nan, 0.2, np.nan, 0.9])) == [3, 1, 0, 2]
    assert ranking.average_precision([1, 0, 0, 0], [np.nan, 0.2, 0.3, 0.9]) == pytest.approx(1 / 4)


def test_ndcg_by_hand():
    # Ranked relevance 0, 2, 1 (scores in index order): DCG@3 = 0 + 3/log2(3) + 1/log2(4).
    # Ideal order 2, 1, 0: IDCG@3 = 3/log2(2) + 1/log2(3).
    rel, sc = [0, 2, 1], [0.9, 0.8, 0.7]
    dcg = 3 / math.log2(3) + 1 / 2
    idcg = 3 + 1 / math.log2(3)
    assert ranking.ndcg_at_k(rel, sc, k=3) == pytest.approx(dcg / idcg)
    assert ranking.ndcg_at_k(rel, sc, k=1) == 0.0
    assert math.isnan(ranking.ndcg_at_k([0, 0, 0], sc, k=3))  # no gain at all: undefined


def test_ndcg_relevance_threshold_zeroes_gains_below_it():
    # Ranked relevance 0, 2, 1 as above. Threshold 2: the grade-1 CV gains nothing.
    # DCG@3 = 3/log2(3); IDCG@3 = 3/log2(2) = 3.
    rel, sc = [0, 2, 1], [0.9, 0.8, 0.7]
    assert ranking.ndcg_at_k(rel, sc, k=3, relevance_threshold=2) == pytest.approx((3 / math.log2(3)) / 3)
    # Threshold 1 is the plain graded NDCG.
    assert ranking.ndcg_at_k(rel, sc, k=3, relevance_threshold=1) == ranking.ndcg_at_k(rel, sc, k=3)
    # No CV at the threshold: undefined.
    assert math.isnan(ranking.ndcg_at_k([0, 1, 1], sc, k=3, relevance_threshold=2))


# One job over 12 CVs, scores in index order (rank r = index + 1); relevance by rank:
#   rank:       1  2  3  4  5  6  7  8  9 10 11 12
#   relevance:  1  2  0  0  1  0  0  0  0  0  2  0
_HAND_RELEVANCE = [1, 2, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0]
_HAND_SCORES = list(np.arange(12, 0, -1, dtype=float))
_HAND = {
    # Lenient (relevance >= 1): relevant at ranks 1, 2, 5, 11.
    #   AP = (1/1 + 2/2 + 3/5 + 4/11) / 4
    "map": (1 + 1 + 3 / 5 + 4 / 11) / 4,
    #   Gains 2^rel - 1: rank 1 -> 1, rank 2 -> 3, rank 5 -> 1 (rank 11 is beyond 10).
    #   DCG@10 = 1/log2(2) + 3/log2(3) + 1/log2(6); ideal gains 3, 3, 1, 1:
    #   IDCG@10 = 3/log2(2) + 3/log2(3) + 1/log2(4) + 1/log2(5)
    "ndcg@10": (1 + 3 / math.log2(3) + 1 / math.log2(6))
               / (3 + 3 / math.log2(3) + 1 / 2 + 1 / math.log2(5)),
    #   Relevant in the first 10 ranks: 1, 2, 5 -> 3/10.
    "precision@10": 3 / 10,
    # Strict (relevance 2): relevant at ranks 2 and 11.
    #   AP = (1/2 + 2/11) / 2
    "map_strict": (1 / 2 + 2 / 11) / 2,
    #   Only grade-2 CVs gain 3: DCG@10 = 3/log2(3) (rank 11 is beyond 10);
    #   IDCG@10 = 3/log2(2) + 3/log2(3).
    "ndcg@10_strict": (3 / math.log2(3)) / (3 + 3 / math.log2(3)),
    #   Relevant in the first 10 ranks: rank 2 -> 1/10.
    "precision@10_strict": 1 / 10,
}


def _hand_metric_values(relevance, scores):
    """The metrics of _HAND for one job, from evaluation.ranking."""
    values = {}
    for suffix, t in (("", 1), ("_strict", 2)):
        values["map" + suffix] = ranking.average_precision(relevance, scores, t)
        values["ndcg@10" + suffix] = ranking.ndcg_at_k(relevance, scores, 10, t)
        values["precision@10" + suffix] = ranking.precision_at_k(relevance, scores, 10, t)
    return values


def test_strict_and_lenient_metrics_by_hand():
    got = _hand_metric_values(_HAND_RELEVANCE, _HAND_SCORES)
    assert got == pytest.approx(_HAND)
    # Numerically: lenient MAP 0.7409, NDCG@10 0.5632; strict MAP 0.3409, NDCG@10 0.3869.
    assert (round(got["map"], 4), round(got["ndcg@10"], 4)) == (0.7409, 0.5632)
    assert (round(got["map_strict"], 4), round(got["ndcg@10_strict"], 4)) == (0.3409, 0.3869)


def test_precision_and_recall_at_k_by_hand():
    scores = np.arange(10, 0, -1, dtype=float)  # ranks follow index order
    relevance = np.array([1, 0, 2, 0, 0, 1, 0, 0, 0, 1])
    assert ranking.precision_at_k(relevance, scores, k=1) == 1.0
    assert ranking.precision_at_k(relevance, scores, k=3) == pytest.approx(2 / 3)
    assert ranking.precision_at_k(relevance, scores, k=6) == pytest.approx(3 / 6)
    assert ranking.precision_at_k(relevance, scores, k=3, relevance_threshold=2) == pytest.approx(1 / 3)
    # Fewer CVs than k: divide by k all the same.
    assert ranking.precision_at_k(relevance, scores, k=20) == pytest.approx(4 / 20)
    assert ranking.recall_at_k(relevance, scores, k=1) == pytest.approx(1 / 4)
    assert ranking.recall_at_k(relevance, scores, k=6) == pytest.approx(3 / 4)
    assert ranking.recall_at_k(relevance, scores, k=100) == 1.0
    assert math.isnan(ranking.recall_at_k(np.zeros(10), scores, k=5))


@pytest.mark.parametrize("bad, message", [
    ({"k": 0}, "k must be a positive integer, got 0"),
    ({"k": 2.5}, "k must be a positive integer, got 2.5"),
    ({"relevance_threshold": 0}, "relevance_threshold must be > 0, got 0"),
])
def test_invalid_arguments(bad, message):
    kwargs = {"k": 3, "relevance_threshold": 1, **bad}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ranking.precision_at_k([1, 0, 0], [0.3, 0.2, 0.1], **kwargs)


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError, match="same number of candidates"):
        ranking.average_precision([1, 0], [0.3, 0.2, 0.1])


# --------------------------------------------------------------------------------------------------
# NumPy metrics against scikit-learn (tie-free random scores)
# --------------------------------------------------------------------------------------------------


def _relevance_patterns(rng: np.random.Generator, n: int):
    """Yields (name, graded relevance) covering sparse, dense, extreme and single-relevant cases."""
    yield "sparse", rng.choice([0, 1, 2], size=n, p=[0.95, 0.03, 0.02])
    yield "dense", rng.choice([0, 1, 2], size=n, p=[0.4, 0.3, 0.3])
    yield "all_relevant", rng.choice([1, 2], size=n)
    one = np.zeros(n, dtype=int)
    one[rng.integers(n)] = 2
    yield "single", one


@pytest.mark.parametrize("threshold", [1, 2])
@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn(seed, threshold):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    scores = rng.permutation(n).astype(float) + rng.random()  # distinct: sklearn groups ties
    for name, relevance in _relevance_patterns(rng, n):
        binary = relevance >= threshold
        if not binary.any():
            continue
        expected = average_precision_score(binary, scores)
        assert ranking.average_precision(relevance, scores, threshold) == pytest.approx(expected), name


@pytest.mark.parametrize("k", [1, 3, 10, 50])
@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn_with_exponential_gains(seed, k):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(5, 200))
    scores = rng.permutation(n).astype(float)
    for name, relevance in _relevance_patterns(rng, n):
        if not relevance.any():
            continue  # undefined here (NaN), 0 in sklearn; such jobs are excluded from means
        # sklearn's ndcg_score uses y_true as linear gains: pass 2**rel - 1 to get exponential ones.
        expected = ndcg_score([np.exp2(relevance) - 1], [scores], k=k)
        assert ranking.ndcg_at_k(relevance, scores, k=k) == pytest.approx(expected), name


@pytest.mark.parametrize("seed", range(5))
def test_strict_ndcg_matches_sklearn_with_gains_of_grade_two_only(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(5, 200))
    scores = rng.permutation(n).astype(float)
    for name, relevance in _relevance_patterns(rng, n):
        if not (relevance >= 2).any():
            continue
        expected = ndcg_score([np.where(relevance >= 2, 3.0, 0.0)], [scores], k=10)
        assert ranking.ndcg_at_k(relevance, scores, 10, relevance_threshold=2) == pytest.approx(expected), name


# --------------------------------------------------------------------------------------------------
# Exclusion of jobs without a relevant CV
# --------------------------------------------------------------------------------------------------


def test_jobs_without_relevant_are_excluded_and_counted():
    scores = [[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.1, 0.2, 0.3]]
    relevance = [[0, 1, 0], [0, 0, 0], [1, 1, 1]]
    agg = ranking.mean_average_precision(relevance, scores)
    assert agg.value == pytest.approx((1 / 2 + 1.0) / 2)
    assert (agg.num_jobs, agg.num_jobs_without_relevant) == (2, 1)
    # Same set of jobs for every metric: precision@k of the excluded job (0) does not pull it down.
    p = ranking.mean_over_jobs(lambda r, s: ranking.precision_at_k(r, s, k=1), relevance, scores)
    assert p.value == pytest.approx((0 + 1) / 2)
    # Threshold 2 leaves no relevant CV at all: NaN over zero jobs, everything counted as excluded.
    none = ranking.mean_average_precision(relevance, scores, relevance_threshold=2)
    assert math.isnan(none.value) and none.num_jobs == 0 and none.num_jobs_without_relevant == 3


# --------------------------------------------------------------------------------------------------
# TFMA: configuration loading
# --------------------------------------------------------------------------------------------------


def _spec(*configs: config_pb2.MetricConfig, **kwargs) -> config_pb2.MetricsSpec:
    return config_pb2.MetricsSpec(metrics=list(configs), **kwargs)


def test_metric_configs_load_from_module_with_kwargs():
    configs = [
        config_pb2.MetricConfig(class_name="MeanAveragePrecision", module=MODULE),
        config_pb2.MetricConfig(class_name="RankingNDCG", module=MODULE, config='"top_k": 5'),
        config_pb2.MetricConfig(class_name="RankingPrecision", module=MODULE),
        config_pb2.MetricConfig(
            class_name="RankingRecall", module=MODULE,
            config=json.dumps({"top_k": 20, "relevance_threshold": 2}),
        ),
        config_pb2.MetricConfig(class_name="JobsWithoutRelevant", module=MODULE),
        config_pb2.MetricConfig(
            class_name="MeanAveragePrecision", module=MODULE,
            config='{"name": "map_grade2", "relevance_threshold": 2}',
        ),
    ]
    computations = metric_specs.to_computations([_spec(*configs)], config_pb2.EvalConfig())
    names = sorted(k.name for c in computations for k in c.keys)
    assert names == sorted(
        ["map", "ndcg@5", "precision@10", "recall@20", "jobs_without_relevant", "map_grade2"]
    )
    # Config kwargs round-trip through get_config/from_config as TFMA serializes metrics.
    recall = metric_specs.metric_instance(configs[3])
    assert recall.get_config() == {"name": "recall@20", "top_k": 20, "relevance_threshold": 2.0}


def test_helper_configs_and_thresholds_key_by_metric_name():
    thresholds = {
        "map": config_pb2.MetricThreshold(
            value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": 0.2}),
            change_threshold=config_pb2.GenericChangeThreshold(
                direction=config_pb2.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -0.01}
            ),
        )
    }
    spec = _spec(*tfma_metrics.ranking_metric_configs(thresholds=thresholds))
    keys = metric_specs.metric_thresholds_from_metrics_specs([spec], config_pb2.EvalConfig())
    assert {(k.name, k.is_diff) for k in keys} == {("map", False), ("map", True)}
    with pytest.raises(ValueError, match="unknown ranking metrics"):
        tfma_metrics.ranking_metric_configs(thresholds={"mrr": config_pb2.MetricThreshold()})


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"binarize": config_pb2.BinarizationOptions(top_k_list={"values": [5]})},
         "ranking metric 'map' takes no sub keys (got topK:5); put it in a MetricsSpec without "
         "binarize/aggregate and set its cutoff with the metric's top_k config"),
        ({"aggregate": config_pb2.AggregationOptions(micro_average=True)},
         "ranking metric 'map' does not support MetricsSpec.aggregate; use a separate MetricsSpec"),
        ({"query_key": "job_id"},
         "ranking metric 'map' expects one example per job holding the scores of all CVs; remove "
         "MetricsSpec.query_key ('job_id')"),
    ],
    ids=["binarize", "aggregate", "query_key"],
)
def test_spec_options_without_meaning_are_rejected(extra, message):
    spec = _spec(config_pb2.MetricConfig(class_name="MeanAveragePrecision", module=MODULE), **extra)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metric_specs.to_computations([spec], config_pb2.EvalConfig())


# --------------------------------------------------------------------------------------------------
# TFMA: combiners in a Beam pipeline
# --------------------------------------------------------------------------------------------------

# Four jobs over five CVs; slice "a" holds jobs 0 and 1, slice "b" jobs 2 and 3 (3 has no relevant CV).
_JOBS = [
    ("a", [2, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5], 1.0),
    ("a", [0, 1, 0, 0, 1], [0.5, 0.1, 0.4, 0.3, 0.2], 2.0),
    ("b", [1, 0, 0, 2, 0], [0.3, 0.3, 0.9, 0.3, 0.1], 1.0),
    ("b", [0, 0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5], 4.0),
]


def _expected(per_job, jobs, weighted=False):
    return ranking.mean_over_jobs(
        per_job, [j[1] for j in jobs], [j[2] for j in jobs],
        weights=[j[3] for j in jobs] if weighted else None,
    )


def _run_combiners(metrics, example_weighted, expected):
    """Runs each metric's combiner over _JOBS sliced into (), ('family', a|b) in a Beam pipeline.

    expected: {slice_key: {metric name: value}}; the pipeline fails unless every slice's computed
    metrics match it.
    """
    computations = [
        c for m in metrics
        for c in m.computations(sub_keys=[None], example_weighted=example_weighted)
    ]
    extracts = [
        {
            "labels": np.array(rel, dtype=np.float32),
            "predictions": np.array(sc, dtype=np.float32),
            "example_weights": np.array([w], dtype=np.float32),
            "family": fam,
        }
        for fam, rel, sc, w in _JOBS
    ]

    def check(got):
        try:
            merged = {}
            for slice_key, values in got:
                merged.setdefault(slice_key, {}).update(values)
            assert set(merged) == set(expected)
            for slice_key, want in expected.items():
                values = {k.name: v for k, v in merged[slice_key].items()}
                assert all(k.example_weighted == example_weighted for k in merged[slice_key])
                assert values.keys() == want.keys()
                for name, value in want.items():
                    assert math.isclose(values[name], value, rel_tol=1e-9), (slice_key, name, values)
        except AssertionError as err:
            raise beam_util.BeamAssertException(err)

    with beam.Pipeline() as p:
        sliced = (
            p
            | "Create" >> beam.Create(extracts)
            | "Slice" >> beam.FlatMap(lambda e: [((), e), ((("family", e["family"]),), e)])
            | "Inputs" >> beam.MapTuple(lambda k, e: (k, metric_util.to_standard_metric_inputs(e)))
        )
        outputs = [
            sliced | f"Combine{i}" >> beam.CombinePerKey(c.combiner)
            for i, c in enumerate(computations)
        ]
        beam_util.assert_that(outputs | beam.Flatten(), check)


@pytest.mark.slow
@pytest.mark.parametrize("example_weighted", [False, True])
def test_combiners_in_beam_match_numpy(example_weighted):
    metrics = [
        tfma_metrics.MeanAveragePrecision(),
        tfma_metrics.RankingNDCG(top_k=3),
        tfma_metrics.RankingPrecision(top_k=2),
        tfma_metrics.RankingRecall(top_k=2),
        tfma_metrics.JobsWithoutRelevant(),
    ]
    per_job = {
        "map": ranking.average_precision,
        "ndcg@3": lambda r, s: ranking.ndcg_at_k(r, s, k=3),
        "precision@2": lambda r, s: ranking.precision_at_k(r, s, k=2),
        "recall@2": lambda r, s: ranking.recall_at_k(r, s, k=2),
    }
    slices = {(): _JOBS, (("family", "a"),): _JOBS[:2], (("family", "b"),): _JOBS[2:]}
    expected = {}
    for slice_key, jobs in slices.items():
        expected[slice_key] = {
            name: _expected(fn, jobs, example_weighted).value for name, fn in per_job.items()
        }
        expected[slice_key]["jobs_without_relevant"] = _expected(
            ranking.average_precision, jobs, example_weighted
        ).num_jobs_without_relevant
    # Slice "a" by hand: AP(job 0) = (1 + 2/3)/2; job 1 ranks CVs 0,2,3,4,1 -> relevant at 4, 5.
    ap0, ap1 = (1 + 2 / 3) / 2, (1 / 4 + 2 / 5) / 2
    want_a = (ap0 + 2 * ap1) / 3 if example_weighted else (ap0 + ap1) / 2
    assert expected[(("family", "a"),)]["map"] == pytest.approx(want_a)
    # Slice "b": job 3 has no relevant CV; job 2 ranks CV 2, then the 0.3 ties by index: 0, 1, 3.
    assert expected[(("family", "b"),)]["map"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert expected[(("family", "b"),)]["jobs_without_relevant"] == (4.0 if example_weighted else 1.0)
    _run_combiners(metrics, example_weighted, expected)


def test_combiner_slice_with_only_excluded_jobs_is_nan():
    combiner = tfma_metrics.MeanAveragePrecision().computations(sub_keys=[None])[0].combiner
    acc = combiner.create_accumulator()
    inputs = metric_util.to_standard_metric_inputs(
        {"labels": np.zeros(4), "predictions": np.arange(4.0), "example_weights": np.array([1.0])}
    )
    acc = combiner.add_input(acc, inputs)
    (value,) = combiner.extract_output(combiner.merge_accumulators([acc])).values()
    assert math.isnan(value)


def test_combiner_rejects_label_prediction_length_mismatch():
    combiner = tfma_metrics.RankingNDCG().computations(sub_keys=[None])[0].combiner
    inputs = metric_util.to_standard_metric_inputs(
        {"labels": np.ones(3), "predictions": np.arange(4.0), "example_weights": np.array([1.0])}
    )
    with pytest.raises(ValueError, match="one value per CV"):
        combiner.add_input(combiner.create_accumulator(), inputs)


# --------------------------------------------------------------------------------------------------
# TFMA end to end: tfma.run_model_analysis over a tiny SavedModel
# --------------------------------------------------------------------------------------------------

_N_CV = 12  # CVs in the index
_FAMILIES = ["eng", "eng", "ops", "ops", "ops", "eng"]


def _save_model(path: str, cv_matrix: np.ndarray) -> None:
    """Saves a tf.Module with two signatures over serialized tf.Examples.

    serving_default: {'scores': [batch, N_cv]} = job_vec @ cv_matrix^T.
    transform_features: {'relevance': [batch, N_cv]}, the dense graded relevance built from the
    sparse features rel_cv (CV indices) and rel_grade (their grades), as a preprocessing function.
    """
    import tensorflow as tf

    n, dim = cv_matrix.shape

    class Ranker(tf.Module):
        def __init__(self):
            super().__init__()
            self.cvs = tf.constant(cv_matrix, dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            f = tf.io.parse_example(examples, {"job_vec": tf.io.FixedLenFeature([dim], tf.float32)})
            return {"scores": tf.matmul(f["job_vec"], self.cvs, transpose_b=True)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform(self, examples):
            f = tf.io.parse_example(
                examples,
                {"rel_cv": tf.io.VarLenFeature(tf.int64), "rel_grade": tf.io.VarLenFeature(tf.float32)},
            )
            index = tf.stack([f["rel_cv"].indices[:, 0], f["rel_cv"].values], axis=1)
            batch = tf.shape(examples, out_type=tf.int64)[0]
            return {"relevance": tf.scatter_nd(index, f["rel_grade"].values, tf.stack([batch, n]))}

    module = Ranker()
    tf.saved_model.save(
        module, path,
        signatures={"serving_default": module.serve, "transform_features": module.transform},
    )


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    """Runs tfma.run_model_analysis (candidate vs baseline, sliced by family) once for the module."""
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    root = tmp_path_factory.mktemp("tfma")
    rng = np.random.default_rng(7)
    # CV embeddings are one-hot, so a job's score of CV i is job_vec[i]. The candidate's job_vec is the
    # relevance plus noise (a good ranker); the baseline's CV matrix is negated (a poor one).
    candidate_cvs = np.eye(_N_CV, dtype=np.float32)
    _save_model(str(root / "candidate"), candidate_cvs)
    _save_model(str(root / "baseline"), -candidate_cvs)
    jobs = []
    with tf.io.TFRecordWriter(str(root / "jobs.tfrecord")) as writer:
        for j, family in enumerate(_FAMILIES):
            rel = np.zeros(_N_CV, dtype=np.float32)
            if j != 4:  # job 4 has no relevant CV
                picked = rng.choice(_N_CV, size=3, replace=False)
                rel[picked] = rng.integers(1, 3, size=3)
            job_vec = (rel + rng.normal(scale=0.8, size=_N_CV)).astype(np.float32)
            nz = np.flatnonzero(rel)
            example = tf.train.Example(features=tf.train.Features(feature={
                "job_vec": tf.train.Feature(float_list=tf.train.FloatList(value=job_vec)),
                "rel_cv": tf.train.Feature(int64_list=tf.train.Int64List(value=nz)),
                "rel_grade": tf.train.Feature(float_list=tf.train.FloatList(value=rel[nz])),
                "relevance_dense": tf.train.Feature(float_list=tf.train.FloatList(value=rel)),
                "family": tf.train.Feature(bytes_list=tf.train.BytesList(value=[family.encode()])),
            }))
            writer.write(example.SerializeToString())
            jobs.append((family, rel, job_vec @ candidate_cvs.T, job_vec @ -candidate_cvs.T))

    def model_spec(name: str, is_baseline: bool = False, label_from_feature: bool = False):
        spec = config_pb2.ModelSpec(
            name=name,
            is_baseline=is_baseline,
            model_type="tf_generic",  # skips TFMA's trial load as a Keras model
            signature_name="serving_default",
            prediction_key="scores",
        )
        if label_from_feature:
            spec.label_key = "relevance_dense"  # a float-list feature of the tf.Example
        else:
            spec.preprocessing_function_names.append("transform_features")
            spec.label_key = "relevance"  # an output of the transform_features signature
        return spec

    thresholds = {
        # Absolute floor, and "not worse than the baseline by more than 0.01".
        "map": config_pb2.MetricThreshold(
            value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": 0.3}),
            change_threshold=config_pb2.GenericChangeThreshold(
                direction=config_pb2.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -0.01}
            ),
        ),
        # Unreachable on purpose, so validation must fail on exactly these two: precision@10 is at
        # most 3/10 here, and NDCG cannot improve on the baseline by 2.
        "precision@10": config_pb2.MetricThreshold(
            value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": 0.9})
        ),
        "ndcg@10": config_pb2.MetricThreshold(
            change_threshold=config_pb2.GenericChangeThreshold(
                direction=config_pb2.MetricDirection.HIGHER_IS_BETTER, absolute={"value": 2.0}
            ),
        ),
    }
    eval_config = config_pb2.EvalConfig(
        # "candidate_raw" is the candidate model again, but takes its label straight from a feature.
        model_specs=[
            model_spec("candidate"),
            model_spec("baseline", is_baseline=True),
            model_spec("candidate_raw", label_from_feature=True),
        ],
        slicing_specs=[config_pb2.SlicingSpec(), config_pb2.SlicingSpec(feature_keys=["family"])],
        metrics_specs=[
            config_pb2.MetricsSpec(
                metrics=[config_pb2.MetricConfig(class_name="ExampleCount")]
                + tfma_metrics.ranking_metric_configs(recall_k=5, thresholds=thresholds)
            )
        ],
    )
    shared = [
        tfma.default_eval_shared_model(
            eval_saved_model_path=str(root / path), model_name=name, eval_config=eval_config
        )
        for name, path in (
            ("candidate", "candidate"), ("baseline", "baseline"), ("candidate_raw", "candidate")
        )
    ]
    tfma.run_model_analysis(
        eval_shared_model=shared,
        eval_config=eval_config,
        data_location=str(root / "jobs.tfrecord"),
        output_path=str(root / "out"),
    )
    # What the Evaluator writes: per slice, one value per (metric name, model name, is_diff).
    metrics = {}
    for per_slice in tfma.load_metrics(str(root / "out")):
        slice_key = slicer.deserialize_slice_key(per_slice.slice_key)
        metrics[slice_key] = {
            (kv.key.name, kv.key.model_name, kv.key.is_diff): kv.value.double_value.value
            for kv in per_slice.metric_keys_and_values
        }
    return jobs, metrics, tfma.load_validation_result(str(root / "out"))


@pytest.mark.slow
def test_run_model_analysis_metrics_per_slice(analysis):
    jobs, metrics, _ = analysis
    assert set(metrics) == {(), (("family", "eng"),), (("family", "ops"),)}
    per_job = {
        "map": ranking.average_precision,
        "ndcg@10": lambda r, s: ranking.ndcg_at_k(r, s, k=10),
        "precision@10": lambda r, s: ranking.precision_at_k(r, s, k=10),
        "recall@5": lambda r, s: ranking.recall_at_k(r, s, k=5),
    }
    for slice_key, values in metrics.items():
        family = dict(slice_key).get("family")
        sliced = [j for j in jobs if family is None or j[0] == family]
        want = {}
        for model, col in (("candidate", 2), ("baseline", 3), ("candidate_raw", 2)):
            for name, fn in per_job.items():
                agg = ranking.mean_over_jobs(fn, [j[1] for j in sliced], [j[col] for j in sliced])
                want[name, model] = agg.value
                got = values[name, model, False]
                assert got == pytest.approx(agg.value, rel=1e-6), (slice_key, model, name)
            assert values["jobs_without_relevant", model, False] == sum(not j[1].any() for j in sliced)
            assert values["example_count", model, False] == len(sliced)
        # TFMA adds candidate-minus-baseline diffs, which change thresholds are checked against.
        assert values["map", "candidate", True] == pytest.approx(
            want["map", "candidate"] - want["map", "baseline"], rel=1e-6
        )
    # The slice "ops" holds the job without relevant CVs; the candidate beats the baseline overall.
    assert metrics[(("family", "ops"),)]["jobs_without_relevant", "candidate", False] == 1
    assert metrics[()]["map", "candidate", False] > metrics[()]["map", "baseline", False]


@pytest.mark.slow
def test_run_model_analysis_validation(analysis):
    _, _, validation = analysis
    assert not validation.validation_ok
    failed = {
        (f.metric_key.name, f.metric_key.model_name, f.metric_key.is_diff)
        for s in validation.metric_validations_per_slice
        for f in s.failures
    }
    # Only the unreachable thresholds fail (for both non-baseline models); the MAP floor and the
    # MAP-vs-baseline checks pass.
    assert failed == {
        (name, model, is_diff)
        for model in ("candidate", "candidate_raw")
        for name, is_diff in (("precision@10", False), ("ndcg@10", True))
    }


# --------------------------------------------------------------------------------------------------
# Strict and lenient configurations, MapDifference, the Evaluator's EvalConfig
# --------------------------------------------------------------------------------------------------

_LENIENT_NAMES = ["map", "ndcg@10", "precision@10", "recall@100", "jobs_without_relevant"]
_STRICT_NAMES = ["map_strict", "ndcg@10_strict", "precision@10_strict", "jobs_without_relevant_strict"]


def _instances(configs):
    """{name: config} of the metrics the MetricConfigs make, as TFMA builds them."""
    metrics = [metric_specs.metric_instance(c) for c in configs]
    return {m.name: m.get_config() for m in metrics}


def test_relevance_metric_configs_name_both_levels():
    configs = tfma_metrics.relevance_metric_configs()
    assert all(c.config == "" and c.module == "evaluation.tfma_metrics" for c in configs)
    by_name = _instances(configs)
    assert list(by_name) == _LENIENT_NAMES + _STRICT_NAMES
    assert {n: c["relevance_threshold"] for n, c in by_name.items()} == {
        **{n: 1.0 for n in _LENIENT_NAMES}, **{n: 2.0 for n in _STRICT_NAMES}}
    assert (by_name["ndcg@10_strict"]["top_k"], by_name["recall@100"]["top_k"]) == (10, 100)
    computations = metric_specs.to_computations([_spec(*configs)], config_pb2.EvalConfig())
    assert sorted(k.name for c in computations for k in c.keys) == sorted(_LENIENT_NAMES + _STRICT_NAMES)
    threshold = config_pb2.MetricThreshold(
        value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": 0.1}))
    with_threshold = tfma_metrics.relevance_metric_configs(thresholds={"map_strict": threshold})
    assert list(_instances([c for c in with_threshold if c.HasField("threshold")])) == ["map_strict"]
    with pytest.raises(ValueError, match=re.escape("thresholds for unknown ranking metrics: ['recall@100_strict']")):
        tfma_metrics.relevance_metric_configs(thresholds={"recall@100_strict": threshold})


def test_the_evaluators_config_has_no_backslash_for_ml_metadata():
    """TFX records the eval config in ML Metadata as JSON text; ML Metadata's PostgreSQL store cannot
    record a string with a backslash, which a nested JSON metric config would bring."""
    from google.protobuf import json_format

    from config import PipelineConfig
    from pipeline.eval_config import build_eval_config

    for bless_over_bm25 in (False, True):
        text = json_format.MessageToJson(build_eval_config(PipelineConfig(bless_over_bm25=bless_over_bm25)))
        assert "\\" not in text and "Fixed_map" in text


def test_map_difference_config_and_its_spec_rules():
    config = tfma_metrics.map_difference_config()
    assert _instances([config]) == {"map_over_bm25": {
        "name": "map_over_bm25", "output": "scores", "reference": "bm25_scores", "relevance_threshold": 1.0}}
    assert list(_instances([tfma_metrics.map_difference_config("tfidf_scores")])) == ["map_over_tfidf"]
    [computation] = metric_specs.to_computations([_spec(config)], config_pb2.EvalConfig())
    [key] = computation.keys
    assert (key.name, key.output_name) == ("map_over_bm25", "")
    assert tfma_metrics.MapDifference(reference="tfidf_scores").name == "map_over_tfidf"
    with pytest.raises(ValueError, match="put it in a MetricsSpec without output_names"):
        metric_specs.to_computations([_spec(config, output_names=["scores"])], config_pb2.EvalConfig())
    with pytest.raises(ValueError, match="two different output names"):
        tfma_metrics.MapDifference(reference="scores")


def _updated_eval_config(has_baseline: bool, bless_over_bm25: bool = False):
    """The Evaluator's EvalConfig as TFX's Evaluator executor rewrites it for a run."""
    import tensorflow_model_analysis as tfma

    from config import PipelineConfig
    from pipeline.eval_config import build_eval_config

    config = build_eval_config(PipelineConfig(bless_over_bm25=bless_over_bm25, map_floor=0.05, map_tolerance=0.01))
    return tfma.utils.update_eval_config_with_defaults(config, has_baseline=has_baseline, rubber_stamp=True)


def _metric_keys(eval_config):
    computations = metric_specs.to_computations(eval_config.metrics_specs, eval_config)
    return {(k.model_name, k.output_name, k.name) for c in computations for k in c.keys}


@pytest.mark.parametrize("has_baseline", [False, True])
def test_eval_config_metrics_per_output_and_model(has_baseline):
    eval_config = _updated_eval_config(has_baseline)
    [candidate] = [s for s in eval_config.model_specs if not s.is_baseline]
    assert (candidate.signature_name, candidate.prediction_key, candidate.label_key) == (
        "evaluate", "", "relevance_labels")
    assert list(candidate.preprocessing_function_names) == ["relevance_labels"]
    cand, base = ("candidate", "baseline") if has_baseline else ("", None)
    ranking_names = _LENIENT_NAMES + _STRICT_NAMES
    want = {(cand, "scores", n) for n in ranking_names + ["example_count"]}
    want |= {(cand, o, n) for o in ("embedding_scores", "bm25_scores", "tfidf_scores") for n in ranking_names}
    want.add((cand, "", "map_over_bm25"))
    if has_baseline:
        # The baseline, possibly an old model with the `scores` output alone, gets the served metrics only.
        want |= {(base, "scores", n) for n in ranking_names + ["example_count"]}
    assert _metric_keys(eval_config) == want
    assert [s.feature_keys for s in eval_config.slicing_specs] == [[], ["major_group"], ["text_words_bucket"]]


@pytest.mark.parametrize("bless_over_bm25", [False, True])
@pytest.mark.parametrize("has_baseline", [False, True])
def test_eval_config_thresholds(has_baseline, bless_over_bm25):
    eval_config = _updated_eval_config(has_baseline, bless_over_bm25)
    thresholds = metric_specs.metric_thresholds_from_metrics_specs(eval_config.metrics_specs, eval_config)
    cand = "candidate" if has_baseline else ""
    found = {}
    for key, per_slice in thresholds.items():
        if key.model_name == "baseline":
            continue  # TFMA lists them, its validator skips them
        for slicing_spec, threshold in per_slice:
            assert slicing_spec == config_pb2.SlicingSpec()  # the overall slice only
            found[(key.name, key.output_name, key.is_diff)] = threshold
        assert key.model_name == cand
    want = {("map", "scores", False): config_pb2.GenericValueThreshold(lower_bound={"value": 0.05})}
    if has_baseline:
        want["map", "scores", True] = config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -0.01})
    if bless_over_bm25:
        want["map_over_bm25", "", False] = config_pb2.GenericValueThreshold(lower_bound={"value": 0.0})
    assert found == want


# Three jobs over the 12 CVs: the hand-computed one, one with grade 1 only (no strict relevant CV), and
# one without any relevant CV. Predictions: every output of `evaluate`.
def _multi_output_jobs():
    rng = np.random.default_rng(11)
    relevance = [np.array(_HAND_RELEVANCE, float), np.array([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], float),
                 np.zeros(12)]
    jobs = []
    for j, rel in enumerate(relevance):
        scores = {o: rng.permutation(12).astype(float) for o in ("embedding_scores", "bm25_scores", "tfidf_scores")}
        scores["scores"] = np.array(_HAND_SCORES) if j == 0 else rel + rng.normal(scale=0.5, size=12)
        jobs.append((rel, scores))
    return jobs


def _expected_metrics(jobs, output):
    labels, scores = [r for r, _ in jobs], [s[output] for _, s in jobs]
    values = {}
    for suffix, t in (("", 1), ("_strict", 2)):
        for name, fn in (("map", lambda r, s, t=t: ranking.average_precision(r, s, t)),
                         ("ndcg@10", lambda r, s, t=t: ranking.ndcg_at_k(r, s, 10, t)),
                         ("precision@10", lambda r, s, t=t: ranking.precision_at_k(r, s, 10, t))):
            agg = ranking.mean_over_jobs(fn, labels, scores, relevance_threshold=t)
            values[name + suffix] = agg.value
            values["jobs_without_relevant" + suffix] = agg.num_jobs_without_relevant
    values["recall@100"] = ranking.mean_over_jobs(
        lambda r, s: ranking.recall_at_k(r, s, 100), labels, scores).value
    return values


def _run_computations_directly(eval_config, inputs):
    """Every cvrank metric of `eval_config` over StandardMetricInputs `inputs`, each combiner called in
    process (no Beam): {(model, output, name): value}."""
    result = {}
    for computation in metric_specs.to_computations(eval_config.metrics_specs, eval_config):
        combiner = computation.combiner
        if not isinstance(combiner, tfma_metrics._RankingCombiner):
            continue  # ExampleCount
        acc = combiner.create_accumulator()
        for element in inputs:
            acc = combiner.add_input(acc, element)
        for key, value in combiner.extract_output(combiner.merge_accumulators([acc])).items():
            result[key.model_name, key.output_name, key.name] = value
    return result


def test_eval_config_metrics_on_multi_output_predictions_without_baseline():
    jobs = _multi_output_jobs()
    inputs = [metric_util.to_standard_metric_inputs(
        {"labels": rel, "predictions": scores, "example_weights": np.array([1.0])}) for rel, scores in jobs]
    got = _run_computations_directly(_updated_eval_config(has_baseline=False), inputs)
    for output in ("scores", "embedding_scores", "bm25_scores", "tfidf_scores"):
        for name, value in _expected_metrics(jobs, output).items():
            assert got["", output, name] == pytest.approx(value, nan_ok=True), (output, name)
    # Job 0 is the only one with a grade-2 CV: the strict served metrics are the hand-computed ones.
    for name in ("map_strict", "ndcg@10_strict", "precision@10_strict"):
        assert got["", "scores", name] == pytest.approx(_HAND[name])
    assert got["", "scores", "jobs_without_relevant"] == 1 and got["", "scores", "jobs_without_relevant_strict"] == 2
    # map_over_bm25: the MAP difference over the same (lenient) jobs.
    assert got["", "", "map_over_bm25"] == pytest.approx(
        _expected_metrics(jobs, "scores")["map"] - _expected_metrics(jobs, "bm25_scores")["map"])


def test_eval_config_metrics_with_a_baseline_of_the_old_format():
    """The baseline is a model whose `evaluate` returns `scores` alone: TFMA hands its prediction over as
    a bare array. Its index order differs from the candidate's (reversed), and so do its labels."""
    jobs = _multi_output_jobs()
    inputs = [metric_util.to_standard_metric_inputs({
        "labels": {"candidate": rel, "baseline": rel[::-1]},
        "predictions": {"candidate": scores, "baseline": scores["bm25_scores"][::-1]},
        "example_weights": {"candidate": np.array([1.0]), "baseline": np.array([1.0])},
    }) for rel, scores in jobs]
    got = _run_computations_directly(_updated_eval_config(has_baseline=True, bless_over_bm25=True), inputs)
    for output in ("scores", "embedding_scores", "bm25_scores", "tfidf_scores"):
        for name, value in _expected_metrics(jobs, output).items():
            assert got["candidate", output, name] == pytest.approx(value, nan_ok=True), (output, name)
    # The baseline ranks as the candidate's BM25 does (reversed index, reversed labels).
    for name, value in _expected_metrics(jobs, "bm25_scores").items():
        assert got["baseline", "scores", name] == pytest.approx(value, nan_ok=True), name
    assert not any(model == "baseline" and output != "scores" for model, output, _ in got)
    assert got["candidate", "", "map_over_bm25"] == pytest.approx(
        got["candidate", "scores", "map"] - got["candidate", "bm25_scores", "map"])


def test_a_single_output_prediction_is_only_the_served_output():
    """A bare-array prediction stands for `scores`; another output of such a model is an error."""
    element = metric_util.to_standard_metric_inputs(
        {"labels": np.array(_HAND_RELEVANCE, float), "predictions": np.array(_HAND_SCORES),
         "example_weights": np.array([1.0])})
    spec = _spec(*tfma_metrics.ranking_metric_configs(), output_names=["scores", "bm25_scores"])
    eval_config = config_pb2.EvalConfig(model_specs=[config_pb2.ModelSpec(label_key="relevance_labels")])
    for computation in metric_specs.to_computations([spec], eval_config):
        [key] = computation.keys
        combiner = computation.combiner
        if key.output_name == "scores":
            acc = combiner.add_input(combiner.create_accumulator(), element)
            if key.name in _HAND:
                assert combiner.extract_output(acc)[key] == pytest.approx(_HAND[key.name])
        else:
            with pytest.raises(ValueError, match="bm25_scores"):
                combiner.add_input(combiner.create_accumulator(), element)


# --------------------------------------------------------------------------------------------------
# Results and the run summary's evaluation lines
# --------------------------------------------------------------------------------------------------


def test_summary_shows_every_output_overall_and_the_served_map_per_slice():
    from orchestration.summary import format_evaluation

    overall = {("scores", "example_count"): 40.0, ("scores", "jobs_without_relevant"): 0.0,
               ("scores", "jobs_without_relevant_strict"): 3.0, ("", "ignored"): 1.0}
    for row, output in enumerate(("scores", "embedding_scores", "bm25_scores", "tfidf_scores")):
        for col, name in enumerate(("map", "map_strict", "ndcg@10", "ndcg@10_strict", "precision@10",
                                    "precision@10_strict")):
            overall[output, name] = row / 10 + col / 100
    metrics = {"Overall": overall,
               "major_group=15": {("scores", "map"): 0.5, ("scores", "map_strict"): 0.25,
                                  ("scores", "example_count"): 7.0, ("bm25_scores", "map"): 0.9}}
    lines = format_evaluation(metrics)
    assert lines[1] == "  overall: 40 jobs (3 have no grade-2 CV: not in the strict ones)"
    assert lines[2].split() == ["MAP", "NDCG@10", "P@10"]
    assert lines[3].split() == ["lenient", "strict"] * 3
    rows = {line[:18].strip(): line[18:].split() for line in lines[4:8]}
    assert rows == {
        "cvrank": ["0.0000", "0.0100", "0.0200", "0.0300", "0.0400", "0.0500"],
        "embedding only": ["0.1000", "0.1100", "0.1200", "0.1300", "0.1400", "0.1500"],
        "bm25": ["0.2000", "0.2100", "0.2200", "0.2300", "0.2400", "0.2500"],
        "tf-idf": ["0.3000", "0.3100", "0.3200", "0.3300", "0.3400", "0.3500"],
    }
    assert lines[8].split() == ["per", "slice,", "cvrank", "MAP", "lenient", "strict", "jobs"]
    assert lines[9].split() == ["major_group=15", "0.5000", "0.2500", "7"]
    assert len(lines) == 10
    # An evaluation with the served ranking only (written before `evaluate` had other outputs).
    old = format_evaluation({"Overall": {("scores", "map"): 0.5}})
    assert [line.split()[0] for line in old[3:]] == ["cvrank"]


# --------------------------------------------------------------------------------------------------
# cvrank's Evaluator executor on tiny SavedModels with the `evaluate` outputs
# --------------------------------------------------------------------------------------------------

_EVAL_N_CV = 10
_EVAL_JOBS = 8
_OUTPUTS = ("scores", "embedding_scores", "bm25_scores", "tfidf_scores")


def _save_ranker(model_uri: str, cv_ids, outputs_from: dict) -> None:
    """Saves, in a Model artifact's `Format-Serving/`, a tf.Module with the serving model's evaluation
    signatures: `evaluate` returns each output named in `outputs_from` as the float feature it maps to
    ([batch, n_cvs], the model's index order); `relevance_labels` maps `judged_cv_ids` and
    `judged_relevance` onto the index `cv_ids` as serving/model.py does."""
    import tensorflow as tf

    n = len(cv_ids)

    class Ranker(tf.Module):
        def __init__(self):
            super().__init__()
            self.cv_ids = tf.Variable(list(cv_ids), dtype=tf.string, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def evaluate(self, examples):
            spec = {f: tf.io.FixedLenFeature([n], tf.float32) for f in set(outputs_from.values())}
            parsed = tf.io.parse_example(examples, spec)
            return {output: parsed[feature] for output, feature in outputs_from.items()}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def relevance_labels(self, examples):
            # The serving model's own label function; it reads only `cv_ids`.
            from serving.model import RankingModel

            return RankingModel.relevance_labels(self, examples)

    module = Ranker()
    tf.saved_model.save(module, os.path.join(model_uri, "Format-Serving"), signatures={
        "evaluate": module.evaluate, "relevance_labels": module.relevance_labels})


@pytest.fixture(scope="module")
def evaluator_inputs(tmp_path_factory):
    """Ranking examples (split `eval`) and three models: `good` (served ranking close to the relevance,
    better than its BM25), `poor` (served ranking reversed, worse than its BM25) and `old`, a model of
    the old format (`evaluate` returns `scores` alone) whose index is the reverse of the others' and
    whose scores are their BM25's."""
    import tensorflow as tf
    from tfx.types import standard_artifacts

    root = tmp_path_factory.mktemp("evaluator")
    rng = np.random.default_rng(5)
    cv_ids = [f"cv{i}".encode() for i in range(_EVAL_N_CV)]
    jobs = []
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    directory = artifact_utils.get_split_uri([examples], "eval")
    os.makedirs(directory)
    with tf.io.TFRecordWriter(os.path.join(directory, "data_tfrecord-00000-of-00001.gz"), options="GZIP") as w:
        for j in range(_EVAL_JOBS):
            rel = np.zeros(_EVAL_N_CV)
            rel[rng.choice(_EVAL_N_CV, size=3, replace=False)] = [2, 1, 1] if j % 3 else [1, 1, 1]
            features = {
                "good": rel + rng.normal(scale=0.3, size=_EVAL_N_CV),
                "poor": -rel + rng.normal(scale=0.3, size=_EVAL_N_CV),
                "mid": rel + rng.normal(scale=1.5, size=_EVAL_N_CV),
                "embedding": rng.normal(size=_EVAL_N_CV),
                "tfidf": rng.normal(size=_EVAL_N_CV),
            }
            features["mid_reversed"] = features["mid"][::-1]
            judged = np.flatnonzero(rel)
            feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=v)) for k, v in features.items()}
            feature.update(
                judged_cv_ids=tf.train.Feature(bytes_list=tf.train.BytesList(value=[cv_ids[i] for i in judged])),
                judged_relevance=tf.train.Feature(int64_list=tf.train.Int64List(value=rel[judged].astype(int))),
                major_group=tf.train.Feature(int64_list=tf.train.Int64List(value=[11 + j % 2])),
                text_words_bucket=tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"short"])),
            )
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
            jobs.append((rel, features))

    rest = {"embedding_scores": "embedding", "bm25_scores": "mid", "tfidf_scores": "tfidf"}
    models = {}
    for name, ids, outputs_from in (("good", cv_ids, {"scores": "good", **rest}),
                                    ("poor", cv_ids, {"scores": "poor", **rest}),
                                    ("old", cv_ids[::-1], {"scores": "mid_reversed"})):
        model = standard_artifacts.Model()
        model.uri = str(root / name)
        _save_ranker(model.uri, ids, outputs_from)
        models[name] = model
    return root, examples, models, jobs


def _run_evaluator(root, examples, candidate, baseline=None, bless_over_bm25=False, map_floor=0.0):
    """Runs components.evaluator's executor as TFX's launcher would; returns (evaluation, blessing)."""
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.evaluator import executor
    from config import PipelineConfig
    from pipeline.eval_config import build_eval_config

    run = f"{candidate.uri.rsplit('/', 1)[-1]}-{baseline is not None}-{bless_over_bm25}"
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(root / run / "evaluation"), str(root / run / "blessing")
    os.makedirs(blessing.uri)
    candidate.id = 1
    inputs = {"examples": [examples], "model": [candidate]}
    if baseline is not None:
        baseline.id = 2
        inputs["baseline_model"] = [baseline]
    eval_config = build_eval_config(PipelineConfig(bless_over_bm25=bless_over_bm25, map_floor=map_floor))
    context = executor.Executor.Context(beam_pipeline_args=list(IN_PROCESS),
                                        tmp_dir=str(root / run / "tmp"), unique_id="1")
    executor.Executor(context).Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]}, {
        "eval_config": proto_utils.proto_to_json(eval_config), "example_splits": json.dumps(["eval"])})
    return evaluation, blessing


def _failed_thresholds(evaluation_uri):
    import tensorflow_model_analysis as tfma

    validation = tfma.load_validation_result(evaluation_uri)
    return {(f.metric_key.name, f.metric_key.output_name)
            for s in validation.metric_validations_per_slice for f in s.failures}


@pytest.mark.slow
def test_evaluator_records_metrics_per_output_and_blesses_over_bm25(evaluator_inputs):
    from evaluation import results
    from components.evaluator.executor import metric_properties

    root, examples, models, jobs = evaluator_inputs
    evaluation, blessing = _run_evaluator(root, examples, models["good"], bless_over_bm25=True)
    loaded = results.load_metrics(evaluation.uri)
    assert set(loaded) == {"Overall", "major_group=11", "major_group=12", "text_words_bucket=short"}
    overall = loaded["Overall"]
    relevance = [rel for rel, _ in jobs]
    for output, feature in (("scores", "good"), ("embedding_scores", "embedding"), ("bm25_scores", "mid"),
                            ("tfidf_scores", "tfidf")):
        expected = _expected_metrics([(rel, {output: f[feature]}) for rel, f in jobs], output)
        for name, value in expected.items():
            assert overall[output, name] == pytest.approx(value, rel=1e-6), (output, name)
    assert overall["scores", "example_count"] == _EVAL_JOBS
    assert overall["scores", "map_over_bm25"] == pytest.approx(
        ranking.mean_average_precision(relevance, [f["good"] for _, f in jobs]).value
        - ranking.mean_average_precision(relevance, [f["mid"] for _, f in jobs]).value)
    assert overall["scores", "map_over_bm25"] > 0
    # The one-output view (the Pusher's and the summary's) is the served ranking's.
    assert results.load_slice_metrics(evaluation.uri)["Overall"]["map"] == overall["scores", "map"]
    # Custom properties: the served ranking's metrics by name, the others' as <output>:<metric>.
    properties = {k: v.double_value for k, v in evaluation.mlmd_artifact.custom_properties.items()}
    assert properties == metric_properties(evaluation.uri)
    assert properties["map"] == pytest.approx(overall["scores", "map"])
    assert properties["map_strict"] == pytest.approx(overall["scores", "map_strict"])
    assert properties["map_over_bm25"] == pytest.approx(overall["scores", "map_over_bm25"])
    assert properties["bm25_scores:ndcg@10_strict"] == pytest.approx(overall["bm25_scores", "ndcg@10_strict"])
    assert {k for k in properties if ":" in k} == {
        f"{o}:{n}" for o in _OUTPUTS[1:] for n in _LENIENT_NAMES + _STRICT_NAMES}
    assert blessing.get_int_custom_property("blessed") == 1
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))


@pytest.mark.slow
@pytest.mark.parametrize("bless_over_bm25", [True, False])
def test_evaluator_bless_over_bm25_option(evaluator_inputs, bless_over_bm25):
    root, examples, models, _ = evaluator_inputs
    evaluation, blessing = _run_evaluator(root, examples, models["poor"], bless_over_bm25=bless_over_bm25)
    assert evaluation.get_float_custom_property("map_over_bm25") < 0
    if bless_over_bm25:
        # The MAP floor (0 here) holds; only "at least BM25's MAP" fails.
        assert _failed_thresholds(evaluation.uri) == {("map_over_bm25", "")}
        assert blessing.get_int_custom_property("blessed") == 0
    else:
        assert _failed_thresholds(evaluation.uri) == set()
        assert blessing.get_int_custom_property("blessed") == 1


@pytest.mark.slow
def test_evaluator_with_a_baseline_of_the_old_format(evaluator_inputs):
    """The baseline's `evaluate` returns `scores` alone, over an index in another order: the run
    succeeds, the baseline gets the served-ranking metrics (in its own index order) and diffs, the
    candidate every output."""
    import tensorflow_model_analysis as tfma

    from evaluation import results

    root, examples, models, jobs = evaluator_inputs
    evaluation, blessing = _run_evaluator(root, examples, models["good"], baseline=models["old"],
                                          bless_over_bm25=True)
    candidate = results.load_metrics(evaluation.uri)["Overall"]
    baseline = results.load_metrics(evaluation.uri, model=results.BASELINE)["Overall"]
    assert {o for o, _ in baseline} == {"scores"}
    assert {o for o, _ in candidate} == set(_OUTPUTS)
    # The old model's scores are the candidate's BM25 in reverse index order, labels reversed with them.
    for name in _LENIENT_NAMES + _STRICT_NAMES:
        assert baseline["scores", name] == pytest.approx(candidate["bm25_scores", name], rel=1e-6), name
    diffs = {kv.key.name: kv.value.double_value.value
             for s in tfma.load_metrics(evaluation.uri) if not s.slice_key.single_slice_keys
             for kv in s.metric_keys_and_values if kv.key.is_diff}
    assert diffs["map"] == pytest.approx(candidate["scores", "map"] - baseline["scores", "map"], rel=1e-6)
    assert "map_over_bm25" not in diffs
    assert evaluation.get_float_custom_property("map") == pytest.approx(candidate["scores", "map"])
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("baseline_model_id") == 2
