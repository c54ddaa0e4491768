"""Tests of the ranking metrics: NumPy functions (evaluation.ranking) and TFMA metrics
(evaluation.tfma_metrics) in Beam and in a whole tfma.run_model_analysis.

The NumPy metrics, the metric configurations and a combiner called directly are unit tests; the
combiners in a Beam pipeline and tfma.run_model_analysis (TFMA on Beam) are slow."""

from __future__ import annotations

import json
import math
import re

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import util as beam_util
from sklearn.metrics import average_precision_score, ndcg_score
from tensorflow_model_analysis import slicer
from tensorflow_model_analysis.metrics import metric_specs, metric_util
from tensorflow_model_analysis.proto import config_pb2

from evaluation import ranking, tfma_metrics

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
