"""cvrank's ranking metrics as TFMA metrics, for the TFX Evaluator.

Input contract (one Evaluator example = one job description):

* prediction: the model's score of every CV of the index for the job, a float vector [N_cv];
* label: the graded relevance (0, 1, 2) of every CV for the job, a float vector [N_cv] in the same CV
  order (``ModelSpec.label_key`` naming a feature or a transformed feature);
* example weight (optional): a single weight per job.

Each job is ranked on its own (full-candidate ranking, see ``evaluation.ranking`` for the ranking,
tie and exclusion rules). Per slice, each metric is the (example-weighted, when the MetricsSpec is
weighted) mean of the per-job value over the slice's jobs that have at least one relevant CV
(relevance >= ``relevance_threshold``). Jobs without a relevant CV are excluded from every mean and
counted by ``JobsWithoutRelevant``; a slice without any evaluable job yields NaN.

Metrics and their default names (the name is the MetricKey name that thresholds refer to):

=========================  ==============================  ==========================================
class_name                 config (JSON)                   default name
=========================  ==============================  ==========================================
MeanAveragePrecision       relevance_threshold             ``map``
RankingNDCG                top_k (10), relevance_threshold ``ndcg@10``
RankingPrecision           top_k (10), relevance_threshold ``precision@10``
RankingRecall              top_k (100), relevance_threshold ``recall@100``
JobsWithoutRelevant        relevance_threshold             ``jobs_without_relevant``
=========================  ==============================  ==========================================

Every config may also set ``name``. Use them with ``module='evaluation.tfma_metrics'``, e.g.
``config_pb2.MetricConfig(class_name='RankingNDCG', module='evaluation.tfma_metrics',
config='"top_k": 5')`` (``config_pb2`` from ``tensorflow_model_analysis.proto``); or take them all
from ``ranking_metric_configs``. TFMA imports the module and builds the metric as
``cls(**json.loads(config))`` (a config without braces is wrapped in them first).

These metrics take no sub keys: put them in a MetricsSpec without ``binarize`` or ``aggregate``
(TFMA's top-k binarization would replace the scores outside the top k by -inf and so change the
ranking) and without ``query_key`` (one example already holds the whole ranking of a job).
"""

from __future__ import annotations

import functools
import json
from typing import Callable, Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from evaluation import ranking

MAP_NAME = "map"
JOBS_WITHOUT_RELEVANT_NAME = "jobs_without_relevant"

# What a combiner reports: the mean of a per-job metric, or the weight of the excluded jobs.
_MEAN = "mean"
_EXCLUDED = "excluded"


def _check_spec(
    name: str,
    sub_key: Optional[metric_types.SubKey],
    aggregation_type: Optional[metric_types.AggregationType],
    query_key: Optional[str],
) -> None:
    """Rejects MetricsSpec settings that have no meaning for a per-job full ranking."""
    if sub_key is not None:
        raise ValueError(
            f"ranking metric {name!r} takes no sub keys (got {sub_key}); put it in a MetricsSpec "
            "without binarize/aggregate and set its cutoff with the metric's top_k config"
        )
    if aggregation_type is not None:
        raise ValueError(
            f"ranking metric {name!r} does not support MetricsSpec.aggregate; use a separate MetricsSpec"
        )
    if query_key:
        raise ValueError(
            f"ranking metric {name!r} expects one example per job holding the scores of all CVs; "
            f"remove MetricsSpec.query_key ({query_key!r})"
        )


class _RankingAccumulator:
    """Sums over jobs: weighted per-job metric, weight of evaluable jobs, weight of excluded jobs."""

    __slots__ = ["weighted_sum", "weight", "excluded_weight"]

    def __init__(self):
        self.weighted_sum = 0.0
        self.weight = 0.0
        self.excluded_weight = 0.0


class _RankingCombiner(beam.CombineFn):
    """Combines StandardMetricInputs (one per job) into one value under ``metric_key``.

    With ``output=_MEAN`` the value is the weighted mean of ``per_job_metric(relevance, scores)``
    over jobs with a relevant CV (NaN if there is none); with ``output=_EXCLUDED`` it is the total
    weight (the count, when unweighted) of the jobs without a relevant CV.
    """

    def __init__(
        self,
        metric_key: metric_types.MetricKey,
        eval_config: Optional[config_pb2.EvalConfig],
        example_weighted: bool,
        relevance_threshold: float,
        per_job_metric: Optional[Callable[[np.ndarray, np.ndarray], float]],
        output: str = _MEAN,
    ):
        self._metric_key = metric_key
        self._eval_config = eval_config
        self._example_weighted = example_weighted
        self._relevance_threshold = relevance_threshold
        self._per_job_metric = per_job_metric
        self._output = output

    def create_accumulator(self) -> _RankingAccumulator:
        return _RankingAccumulator()

    def add_input(
        self, accumulator: _RankingAccumulator, element: metric_types.StandardMetricInputs
    ) -> _RankingAccumulator:
        # flatten=False keeps the job's whole [N_cv] vectors together; a single weight per job.
        for label, prediction, example_weight in metric_util.to_label_prediction_example_weight(
            element,
            eval_config=self._eval_config,
            model_name=self._metric_key.model_name,
            output_name=self._metric_key.output_name,
            example_weighted=self._example_weighted,
            flatten=False,
            require_single_example_weight=True,
        ):
            relevance = np.asarray(label, dtype=np.float64).reshape(-1)
            scores = np.asarray(prediction, dtype=np.float64).reshape(-1)
            if relevance.size != scores.size:
                raise ValueError(
                    f"{self._metric_key.name}: label has {relevance.size} values but the prediction "
                    f"has {scores.size}; both must hold one value per CV in the same order"
                )
            weight = float(np.asarray(example_weight, dtype=np.float64).reshape(-1)[0])
            if not ranking.has_relevant(relevance, self._relevance_threshold):
                accumulator.excluded_weight += weight
            else:
                if self._output == _MEAN:
                    accumulator.weighted_sum += weight * self._per_job_metric(relevance, scores)
                accumulator.weight += weight
        return accumulator

    def merge_accumulators(
        self, accumulators: Iterable[_RankingAccumulator]
    ) -> _RankingAccumulator:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for acc in accumulators:
            result.weighted_sum += acc.weighted_sum
            result.weight += acc.weight
            result.excluded_weight += acc.excluded_weight
        return result

    def extract_output(
        self, accumulator: _RankingAccumulator
    ) -> Dict[metric_types.MetricKey, float]:
        if self._output == _EXCLUDED:
            value = accumulator.excluded_weight
        elif accumulator.weight > 0:
            value = accumulator.weighted_sum / accumulator.weight
        else:
            value = float("nan")
        return {self._metric_key: value}


def _computations(
    name: str,
    relevance_threshold: float,
    per_job_metric: Optional[Callable[[np.ndarray, np.ndarray], float]],
    output: str,
    eval_config: Optional[config_pb2.EvalConfig],
    model_name: str,
    output_name: str,
    sub_key: Optional[metric_types.SubKey],
    aggregation_type: Optional[metric_types.AggregationType],
    example_weighted: bool,
    query_key: Optional[str],
) -> metric_types.MetricComputations:
    """One computation with one key for one (model, output, weighting) combination."""
    _check_spec(name, sub_key, aggregation_type, query_key)
    key = metric_types.MetricKey(
        name=name,
        model_name=model_name,
        output_name=output_name,
        example_weighted=example_weighted,
    )
    return [
        metric_types.MetricComputation(
            keys=[key],
            preprocessors=None,  # StandardMetricInputs: labels, predictions, example weights
            combiner=_RankingCombiner(
                metric_key=key,
                eval_config=eval_config,
                example_weighted=example_weighted,
                relevance_threshold=relevance_threshold,
                per_job_metric=per_job_metric,
                output=output,
            ),
        )
    ]


# One create-computations function per metric: TFMA injects eval_config, model_name, output_name,
# sub_key, aggregation_type, example_weighted and query_key by argument name (see
# metric_util.merge_per_key_computations); the rest comes from the metric's config.


def _map_computations(
    name: str = MAP_NAME,
    relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    eval_config: Optional[config_pb2.EvalConfig] = None,
    model_name: str = "",
    output_name: str = "",
    sub_key: Optional[metric_types.SubKey] = None,
    aggregation_type: Optional[metric_types.AggregationType] = None,
    example_weighted: bool = False,
    query_key: Optional[str] = None,
) -> metric_types.MetricComputations:
    fn = functools.partial(ranking.average_precision, relevance_threshold=relevance_threshold)
    return _computations(name, relevance_threshold, fn, _MEAN, eval_config, model_name,
                         output_name, sub_key, aggregation_type, example_weighted, query_key)


def _top_k_computations(metric_fn, takes_threshold: bool):
    """The computations function of a top-k metric over `metric_fn(relevance, scores, k[, relevance_threshold])`.

    TFMA calls it with the metric's kwargs and inspects its signature, so the parameters are explicit."""

    def computations(
        name: str = "",
        top_k: int = 10,
        relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
        eval_config: Optional[config_pb2.EvalConfig] = None,
        model_name: str = "",
        output_name: str = "",
        sub_key: Optional[metric_types.SubKey] = None,
        aggregation_type: Optional[metric_types.AggregationType] = None,
        example_weighted: bool = False,
        query_key: Optional[str] = None,
    ) -> metric_types.MetricComputations:
        extra = {"relevance_threshold": relevance_threshold} if takes_threshold else {}
        fn = functools.partial(metric_fn, k=top_k, **extra)
        return _computations(name, relevance_threshold, fn, _MEAN, eval_config, model_name,
                             output_name, sub_key, aggregation_type, example_weighted, query_key)

    return computations


# NDCG's gains use the graded relevance; the threshold only selects the jobs evaluated.
_ndcg_computations = _top_k_computations(ranking.ndcg_at_k, takes_threshold=False)
_precision_computations = _top_k_computations(ranking.precision_at_k, takes_threshold=True)
_recall_computations = _top_k_computations(ranking.recall_at_k, takes_threshold=True)


def _jobs_without_relevant_computations(
    name: str = JOBS_WITHOUT_RELEVANT_NAME,
    relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    eval_config: Optional[config_pb2.EvalConfig] = None,
    model_name: str = "",
    output_name: str = "",
    sub_key: Optional[metric_types.SubKey] = None,
    aggregation_type: Optional[metric_types.AggregationType] = None,
    example_weighted: bool = False,
    query_key: Optional[str] = None,
) -> metric_types.MetricComputations:
    return _computations(name, relevance_threshold, None, _EXCLUDED, eval_config, model_name,
                         output_name, sub_key, aggregation_type, example_weighted, query_key)


class MeanAveragePrecision(metric_types.Metric):
    """MAP: mean over jobs with a relevant CV of the job's average precision.

    AP of a job = mean, over its relevant CVs (relevance >= relevance_threshold), of precision at the
    rank of that CV in the full ranking of all CVs. Default name ``map``.
    """

    def __init__(
        self,
        name: str = MAP_NAME,
        relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    ):
        super().__init__(
            metric_util.merge_per_key_computations(_map_computations),
            name=name or MAP_NAME,
            relevance_threshold=ranking.check_relevance_threshold(relevance_threshold),
        )


class _TopKRankingMetric(metric_types.Metric):
    """A ranking metric with a cut-off: subclasses set the computations, the name prefix and default k."""

    _computations = None  # staticmethod: the per-key computations function
    _prefix = ""
    _default_k = 0

    def __init__(
        self,
        name: Optional[str] = None,
        top_k: Optional[int] = None,
        relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    ):
        top_k = ranking.check_k(self._default_k if top_k is None else top_k)
        super().__init__(
            metric_util.merge_per_key_computations(type(self)._computations),
            name=name or f"{self._prefix}@{top_k}",
            top_k=top_k,
            relevance_threshold=ranking.check_relevance_threshold(relevance_threshold),
        )


class RankingNDCG(_TopKRankingMetric):
    """NDCG@top_k with gains 2**relevance - 1 and a log2 discount. Default name ``ndcg@<top_k>``.

    ``relevance_threshold`` only selects which jobs are evaluated (those with a relevant CV), so that
    all ranking metrics average over the same jobs; gains always use the graded relevance.
    """

    _computations = staticmethod(_ndcg_computations)
    _prefix = "ndcg"
    _default_k = ranking.DEFAULT_NDCG_K


class RankingPrecision(_TopKRankingMetric):
    """Precision@top_k: relevant CVs in the first top_k ranks / top_k. Default ``precision@<top_k>``."""

    _computations = staticmethod(_precision_computations)
    _prefix = "precision"
    _default_k = ranking.DEFAULT_PRECISION_K


class RankingRecall(_TopKRankingMetric):
    """Recall@top_k: relevant CVs in the first top_k ranks / all relevant CVs. Default ``recall@<top_k>``."""

    _computations = staticmethod(_recall_computations)
    _prefix = "recall"
    _default_k = ranking.DEFAULT_RECALL_K


class JobsWithoutRelevant(metric_types.Metric):
    """Jobs with no CV of relevance >= relevance_threshold, excluded from the ranking metrics.

    The value is a count (the sum of the jobs' example weights when the MetricsSpec is weighted).
    Default name ``jobs_without_relevant``. Its ``relevance_threshold`` should match the ranking
    metrics' so that it counts exactly the jobs they excluded.
    """

    def __init__(
        self,
        name: str = JOBS_WITHOUT_RELEVANT_NAME,
        relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    ):
        super().__init__(
            metric_util.merge_per_key_computations(_jobs_without_relevant_computations),
            name=name or JOBS_WITHOUT_RELEVANT_NAME,
            relevance_threshold=ranking.check_relevance_threshold(relevance_threshold),
        )

    @property
    def compute_confidence_interval(self) -> bool:
        # A count of excluded jobs is bookkeeping, not an estimate.
        return False


def ranking_metric_configs(
    relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    ndcg_k: int = ranking.DEFAULT_NDCG_K,
    precision_k: int = ranking.DEFAULT_PRECISION_K,
    recall_k: int = ranking.DEFAULT_RECALL_K,
    thresholds: Optional[Dict[str, config_pb2.MetricThreshold]] = None,
) -> List[config_pb2.MetricConfig]:
    """MetricConfigs for all cvrank ranking metrics, with thresholds keyed by metric name.

    ``thresholds`` maps a metric name (``map``, ``ndcg@10``, ...) to its MetricThreshold.
    """
    thresholds = dict(thresholds or {})
    specs = [
        ("MeanAveragePrecision", MAP_NAME, {}),
        ("RankingNDCG", f"ndcg@{ndcg_k}", {"top_k": ndcg_k}),
        ("RankingPrecision", f"precision@{precision_k}", {"top_k": precision_k}),
        ("RankingRecall", f"recall@{recall_k}", {"top_k": recall_k}),
        ("JobsWithoutRelevant", JOBS_WITHOUT_RELEVANT_NAME, {}),
    ]
    configs = []
    for class_name, name, cfg in specs:
        cfg = dict(cfg, name=name, relevance_threshold=float(relevance_threshold))
        mc = config_pb2.MetricConfig(
            class_name=class_name, module=__name__, config=json.dumps(cfg, sort_keys=True)
        )
        if name in thresholds:
            mc.threshold.CopyFrom(thresholds.pop(name))
        configs.append(mc)
    if thresholds:
        raise ValueError(f"thresholds for unknown ranking metrics: {sorted(thresholds)}")
    return configs
