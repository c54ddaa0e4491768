"""The Evaluator's TFMA configuration: full-candidate ranking metrics, slices, and the blessing rule."""

from __future__ import annotations

from tensorflow_model_analysis.proto import config_pb2

from config import PipelineConfig
from evaluation.slices import SLICE_FEATURES
from evaluation.tfma_metrics import ranking_metric_configs


def build_eval_config(config: PipelineConfig) -> config_pb2.EvalConfig:
    """Scores every evaluation job against every CV of the model's index (`evaluate` signature), with
    labels in index order from the model's `relevance_labels` function. Blessing: overall MAP at least
    `map_floor`, and not below the latest blessed model's overall MAP by more than `map_tolerance`.
    The rule applies to the overall slice only: small slices (a few jobs) are reported, not gated on."""
    map_threshold = config_pb2.MetricThreshold(
        value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": config.map_floor}),
        change_threshold=config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -config.map_tolerance}))
    metrics = ranking_metric_configs()
    [map_config] = [m for m in metrics if m.class_name == "MeanAveragePrecision"]
    map_config.per_slice_thresholds.add(slicing_specs=[config_pb2.SlicingSpec()], threshold=map_threshold)
    return config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(
            signature_name="evaluate", prediction_key="scores",
            preprocessing_function_names=["relevance_labels"], label_key="relevance_labels",
            model_type="tf_generic")],
        slicing_specs=[config_pb2.SlicingSpec()] + [config_pb2.SlicingSpec(feature_keys=[f]) for f in SLICE_FEATURES],
        metrics_specs=[config_pb2.MetricsSpec(
            metrics=[config_pb2.MetricConfig(class_name="ExampleCount")]
            + metrics)])
