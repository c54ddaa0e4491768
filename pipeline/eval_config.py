"""The Evaluator's TFMA configuration: full-candidate ranking metrics for every output of the model's
`evaluate` signature, slices, and the blessing rule."""

from __future__ import annotations

from tensorflow_model_analysis import constants as tfma_constants
from tensorflow_model_analysis.proto import config_pb2

from config import PipelineConfig
from evaluation import outputs
from evaluation.slices import SLICE_FEATURES
from evaluation.tfma_metrics import EVALUATOR_METRICS, MAP_NAME, map_difference_config, relevance_metric_configs

# TFMA's name of the candidate model once a baseline is present; without a baseline, TFMA replaces it
# by "" (config_util.update_eval_config_with_defaults), so candidate-only metrics work in both cases.
CANDIDATE = tfma_constants.CANDIDATE_KEY


def _overall(threshold: config_pb2.MetricThreshold) -> config_pb2.PerSliceMetricThreshold:
    return config_pb2.PerSliceMetricThreshold(slicing_specs=[config_pb2.SlicingSpec()], threshold=threshold)


def build_eval_config(config: PipelineConfig) -> config_pb2.EvalConfig:
    """Scores every evaluation job against every CV of the model's index (`evaluate` signature, one
    prediction per output of `evaluation.outputs`), with labels in index order from the model's
    `relevance_labels` function.

    Metrics (lenient and strict, `evaluation.tfma_metrics.relevance_metric_configs`, plus ExampleCount):
    for output `scores` (the served ranking) of the candidate and of the baseline model, so an old
    baseline whose `evaluate` returns `scores` alone still compares; for `embedding_scores`,
    `bm25_scores` and `tfidf_scores` of the candidate only; and `map_over_bm25` of the candidate.

    Blessing, on the overall slice only (small slices, a few jobs, are reported, not gated on): overall
    MAP of `scores` at least `map_floor`, and not below the latest blessed model's overall MAP by more
    than `map_tolerance`; with `bless_over_bm25`, also `map_over_bm25` >= 0 (MAP at least BM25's on the
    same jobs). With `confidence_intervals`, TFMA also computes each metric's confidence interval (its
    default method: jackknife over 20 buckets); the thresholds still compare the point values."""
    map_threshold = config_pb2.MetricThreshold(
        value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": config.map_floor}),
        change_threshold=config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.map_tolerance}))
    served = relevance_metric_configs()
    [map_config] = [m for m in served if m.class_name == EVALUATOR_METRICS[MAP_NAME].__name__]
    map_config.per_slice_thresholds.append(_overall(map_threshold))

    over_bm25 = map_difference_config(outputs.BM25)
    if config.bless_over_bm25:
        over_bm25.per_slice_thresholds.append(_overall(config_pb2.MetricThreshold(
            value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": 0.0}))))

    variants = [o for o in outputs.VARIANTS if o != outputs.SERVED]
    return config_pb2.EvalConfig(
        options=config_pb2.Options(compute_confidence_intervals={"value": config.confidence_intervals}),
        model_specs=[config_pb2.ModelSpec(
            # No prediction_key: predictions are the dict of `evaluate`'s outputs, one per output name.
            signature_name="evaluate",
            preprocessing_function_names=["relevance_labels"], label_key="relevance_labels",
            model_type="tf_generic")],
        slicing_specs=[config_pb2.SlicingSpec()] + [config_pb2.SlicingSpec(feature_keys=[f]) for f in SLICE_FEATURES],
        metrics_specs=[
            config_pb2.MetricsSpec(
                metrics=[config_pb2.MetricConfig(class_name="ExampleCount")] + served,
                output_names=[outputs.SERVED]),
            config_pb2.MetricsSpec(
                metrics=relevance_metric_configs(), output_names=variants, model_names=[CANDIDATE]),
            config_pb2.MetricsSpec(metrics=[over_bm25], model_names=[CANDIDATE]),
        ])
