"""cvrank's ranking metrics as TFMA metrics, for the TFX Evaluator.

Input contract (one Evaluator example = one job description):

* prediction: the model's score of every CV of the index for the job, a float vector [N_cv]; for a
  model with several outputs (the `evaluate` signature, ``evaluation.outputs``), one such vector per
  output, the output chosen by ``MetricsSpec.output_names``;
* label: the graded relevance (0, 1, 2) of every CV for the job, a float vector [N_cv] in the same CV
  order (``ModelSpec.label_key`` naming a feature or a transformed feature); one label serves every
  output;
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
MapDifference              output (``scores``), reference  ``map_over_bm25`` (``map_over_`` and the
                           (``bm25_scores``),              reference without ``_scores``)
                           relevance_threshold
=========================  ==============================  ==========================================

NDCG's gains are ``2**relevance - 1`` for CVs at or above ``relevance_threshold`` and 0 below it.
``MapDifference`` is MAP of output ``output`` minus MAP of output ``reference`` over the same jobs: it
reads both outputs of the model's prediction itself, so it goes in a MetricsSpec without
``output_names``, for a model that has both outputs.

The Evaluator reports two levels of relevance (``relevance_metric_configs``): lenient (relevance >= 1)
under the names above, and strict (relevance 2, the CV's occupation is the job's) under the same names
with the suffix ``_strict``: ``map_strict``, ``ndcg@10_strict``, ``precision@10_strict``,
``jobs_without_relevant_strict``.

Every config may also set ``name``. Use them with ``module='evaluation.tfma_metrics'``, e.g.
``config_pb2.MetricConfig(class_name='RankingNDCG', module='evaluation.tfma_metrics',
config='"top_k": 5')`` (``config_pb2`` from ``tensorflow_model_analysis.proto``); or take them from
``ranking_metric_configs``, ``relevance_metric_configs`` and ``map_difference_config``. TFMA imports the
module and builds the metric as ``cls(**json.loads(config))`` (a config without braces is wrapped in
them first).

These metrics take no sub keys: put them in a MetricsSpec without ``binarize`` or ``aggregate``
(TFMA's top-k binarization would replace the scores outside the top k by -inf and so change the
ranking) and without ``query_key`` (one example already holds the whole ranking of a job).

Models saved before ``evaluate`` had several outputs return ``scores`` alone; TFMA hands such a
model's only output over as a bare array, not as a dict, and the metrics take that array as its
``scores`` output, so an old model can still be the baseline of the served-ranking metrics.
"""

from __future__ import annotations

import functools
import json
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from evaluation import outputs, ranking

MAP_NAME = ranking.MAP_NAME
JOBS_WITHOUT_RELEVANT_NAME = ranking.JOBS_WITHOUT_RELEVANT_NAME
MAP_OVER_BM25_NAME = "map_over_bm25"

# Lenient: any relevant grade; strict: grade 2 only (the CV's occupation is the job's).
LENIENT_RELEVANCE = 1.0
STRICT_RELEVANCE = ranking.STRICT_RELEVANCE_THRESHOLD
STRICT_SUFFIX = ranking.STRICT_SUFFIX

# What a combiner reports: the mean of a per-job metric, or the weight of the excluded jobs.
_MEAN = "mean"
_EXCLUDED = "excluded"

# A per-job metric: (relevance, scores of each output read) -> value.
PerJobMetric = Callable[..., float]


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


def _lookup_output_name(
    element: metric_types.StandardMetricInputs, model_name: str, output_name: str
) -> str:
    """The output name to look the prediction up by: `output_name`, or "" when the model's prediction
    is a bare array and `output_name` is the served `scores` (TFMA unwraps a single-output dict, so an
    old model whose `evaluate` returns only `scores` has no output to look up by name)."""
    if output_name != outputs.SERVED:
        return output_name
    prediction = element.prediction
    if model_name and isinstance(prediction, Mapping):
        prediction = prediction.get(model_name, prediction)
    return output_name if isinstance(prediction, Mapping) else ""


class _RankingAccumulator:
    """Sums over jobs: weighted per-job metric, weight of evaluable jobs, weight of excluded jobs."""

    __slots__ = ["weighted_sum", "weight", "excluded_weight"]

    def __init__(self):
        self.weighted_sum = 0.0
        self.weight = 0.0
        self.excluded_weight = 0.0


class _RankingCombiner(beam.CombineFn):
    """Combines StandardMetricInputs (one per job) into one value under ``metric_key``.

    ``read_outputs`` are the prediction outputs read for each job, in the order ``per_job_metric``
    takes them after the relevance: ``per_job_metric(relevance, scores_0, scores_1, ...)``.
    With ``output=_MEAN`` the value is the weighted mean of the per-job metric over jobs with a relevant
    CV (NaN if there is none); with ``output=_EXCLUDED`` it is the total weight (the count, when
    unweighted) of the jobs without a relevant CV.
    """

    def __init__(
        self,
        metric_key: metric_types.MetricKey,
        eval_config: Optional[config_pb2.EvalConfig],
        example_weighted: bool,
        relevance_threshold: float,
        per_job_metric: Optional[PerJobMetric],
        output: str = _MEAN,
        read_outputs: Optional[Sequence[str]] = None,
    ):
        self._metric_key = metric_key
        self._eval_config = eval_config
        self._example_weighted = example_weighted
        self._relevance_threshold = relevance_threshold
        self._per_job_metric = per_job_metric
        self._output = output
        self._read_outputs = tuple(read_outputs or (metric_key.output_name,))

    def create_accumulator(self) -> _RankingAccumulator:
        return _RankingAccumulator()

    def _job(self, element: metric_types.StandardMetricInputs, output_name: str):
        """(relevance, scores, weight) of one job for one output."""
        # flatten=False keeps the job's whole [N_cv] vectors together; a single weight per job.
        [(label, prediction, example_weight)] = list(metric_util.to_label_prediction_example_weight(
            element,
            eval_config=self._eval_config,
            model_name=self._metric_key.model_name,
            output_name=_lookup_output_name(element, self._metric_key.model_name, output_name),
            example_weighted=self._example_weighted,
            flatten=False,
            require_single_example_weight=True,
        ))
        relevance = np.asarray(label, dtype=np.float64).reshape(-1)
        scores = np.asarray(prediction, dtype=np.float64).reshape(-1)
        if relevance.size != scores.size:
            shown = f" of output {output_name!r}" if output_name else ""
            raise ValueError(
                f"{self._metric_key.name}: label has {relevance.size} values but the prediction{shown} "
                f"has {scores.size}; both must hold one value per CV in the same order"
            )
        weight = float(np.asarray(example_weight, dtype=np.float64).reshape(-1)[0])
        return relevance, scores, weight

    def add_input(
        self, accumulator: _RankingAccumulator, element: metric_types.StandardMetricInputs
    ) -> _RankingAccumulator:
        relevance, first, weight = self._job(element, self._read_outputs[0])
        if not ranking.has_relevant(relevance, self._relevance_threshold):
            accumulator.excluded_weight += weight
            return accumulator
        if self._output == _MEAN:
            scores = [first] + [self._job(element, name)[1] for name in self._read_outputs[1:]]
            accumulator.weighted_sum += weight * self._per_job_metric(relevance, *scores)
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
    per_job_metric: Optional[PerJobMetric],
    output: str,
    eval_config: Optional[config_pb2.EvalConfig],
    model_name: str,
    output_name: str,
    sub_key: Optional[metric_types.SubKey],
    aggregation_type: Optional[metric_types.AggregationType],
    example_weighted: bool,
    query_key: Optional[str],
    read_outputs: Optional[Sequence[str]] = None,
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
                read_outputs=read_outputs,
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


def _top_k_computations(metric_fn):
    """The computations function of a top-k metric over `metric_fn(relevance, scores, k, relevance_threshold)`.

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
        fn = functools.partial(metric_fn, k=top_k, relevance_threshold=relevance_threshold)
        return _computations(name, relevance_threshold, fn, _MEAN, eval_config, model_name,
                             output_name, sub_key, aggregation_type, example_weighted, query_key)

    return computations


_ndcg_computations = _top_k_computations(ranking.ndcg_at_k)
_precision_computations = _top_k_computations(ranking.precision_at_k)
_recall_computations = _top_k_computations(ranking.recall_at_k)


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


def _ap_difference(relevance, scores, reference, relevance_threshold: float) -> float:
    return (ranking.average_precision(relevance, scores, relevance_threshold)
            - ranking.average_precision(relevance, reference, relevance_threshold))


def _map_difference_computations(
    name: str = MAP_OVER_BM25_NAME,
    output: str = outputs.SERVED,
    reference: str = outputs.BM25,
    relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    eval_config: Optional[config_pb2.EvalConfig] = None,
    model_name: str = "",
    output_name: str = "",
    sub_key: Optional[metric_types.SubKey] = None,
    aggregation_type: Optional[metric_types.AggregationType] = None,
    example_weighted: bool = False,
    query_key: Optional[str] = None,
) -> metric_types.MetricComputations:
    if output_name:
        raise ValueError(
            f"ranking metric {name!r} reads outputs {output!r} and {reference!r} itself; put it in a "
            f"MetricsSpec without output_names (got output {output_name!r})"
        )
    fn = functools.partial(_ap_difference, relevance_threshold=relevance_threshold)
    return _computations(name, relevance_threshold, fn, _MEAN, eval_config, model_name,
                         output_name, sub_key, aggregation_type, example_weighted, query_key,
                         read_outputs=(output, reference))


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
    """NDCG@top_k with a log2 discount and gains 2**relevance - 1 for CVs with relevance >=
    relevance_threshold (0 for the others). Default name ``ndcg@<top_k>``.

    With grades 0, 1, 2 and threshold 1 this is plain graded NDCG; with threshold 2 only grade-2 CVs
    gain. Jobs without a CV at the threshold are excluded, as for every ranking metric.
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


def map_difference_name(reference: str) -> str:
    """The default name of MapDifference against output `reference`: ``map_over_bm25`` for
    ``bm25_scores``."""
    return f"map_over_{reference.removesuffix('_scores')}"


class MapDifference(metric_types.Metric):
    """MAP of prediction output `output` minus MAP of output `reference`, over the same jobs (those with
    a CV of relevance >= relevance_threshold): the mean over jobs of AP(output) - AP(reference).

    Both outputs are read from the model's prediction dict, so the metric goes in a MetricsSpec
    without output_names (its MetricKey has no output name), for a model that has both outputs.
    Default name ``map_over_<reference without "_scores">``, ``map_over_bm25`` by default.
    """

    def __init__(
        self,
        name: Optional[str] = None,
        output: str = outputs.SERVED,
        reference: str = outputs.BM25,
        relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    ):
        if not output or not reference or output == reference:
            raise ValueError(f"MapDifference needs two different output names, got {output!r} and {reference!r}")
        super().__init__(
            metric_util.merge_per_key_computations(_map_difference_computations),
            name=name or map_difference_name(reference),
            output=output,
            reference=reference,
            relevance_threshold=ranking.check_relevance_threshold(relevance_threshold),
        )


def _metric_config(class_name: str, cfg: dict, threshold: Optional[config_pb2.MetricThreshold]
                   ) -> config_pb2.MetricConfig:
    mc = config_pb2.MetricConfig(class_name=class_name, module=__name__, config=json.dumps(cfg, sort_keys=True))
    if threshold is not None:
        mc.threshold.CopyFrom(threshold)
    return mc


def _ranking_specs(relevance_threshold: float, ndcg_k: int, precision_k: int, recall_k: int, name_suffix: str,
                   recall: bool) -> List[tuple]:
    """(class name, metric name, config) of each ranking metric at one relevance threshold."""
    specs = [
        ("MeanAveragePrecision", MAP_NAME, {}),
        ("RankingNDCG", f"ndcg@{ndcg_k}", {"top_k": ndcg_k}),
        ("RankingPrecision", f"precision@{precision_k}", {"top_k": precision_k}),
        ("RankingRecall", f"recall@{recall_k}", {"top_k": recall_k}) if recall else None,
        ("JobsWithoutRelevant", JOBS_WITHOUT_RELEVANT_NAME, {}),
    ]
    return [(class_name, name + name_suffix, dict(cfg, name=name + name_suffix,
                                                    relevance_threshold=float(relevance_threshold)))
            for class_name, name, cfg in filter(None, specs)]


def ranking_metric_configs(
    relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
    ndcg_k: int = ranking.DEFAULT_NDCG_K,
    precision_k: int = ranking.DEFAULT_PRECISION_K,
    recall_k: int = ranking.DEFAULT_RECALL_K,
    thresholds: Optional[Dict[str, config_pb2.MetricThreshold]] = None,
    name_suffix: str = "",
    recall: bool = True,
) -> List[config_pb2.MetricConfig]:
    """MetricConfigs for the cvrank ranking metrics at one relevance threshold, with thresholds keyed
    by metric name.

    Names are the default names plus ``name_suffix`` (``map``, ``ndcg@10``, ..., or ``map_strict``, ...
    with suffix ``_strict``); ``recall`` False leaves recall out. ``thresholds`` maps a metric name (with
    its suffix) to its MetricThreshold; a name not among the metrics raises ValueError.
    """
    thresholds = dict(thresholds or {})
    configs = [_metric_config(class_name, cfg, thresholds.pop(name, None))
               for class_name, name, cfg in _ranking_specs(relevance_threshold, ndcg_k, precision_k, recall_k,
                                                           name_suffix, recall)]
    if thresholds:
        raise ValueError(f"thresholds for unknown ranking metrics: {sorted(thresholds)}")
    return configs


# The Evaluator's own metrics are classes of their own with their parameters fixed, named in their
# MetricConfig by class name alone, with no `config` JSON: TFX records the eval config in ML Metadata as
# JSON text, where a nested JSON config is escaped with backslashes, and ML Metadata 1.21's PostgreSQL
# store cannot record a string that holds a backslash (it mangles the E'...' literal libpq gives it).
def _fixed_metric(base: type, name: str, cfg: dict) -> type:
    def __init__(self, **overrides):
        base.__init__(self, **{**cfg, **overrides})

    class_name = "Fixed_" + "".join(c if c.isalnum() else "_" for c in name.replace("@", "_at_"))
    cls = type(class_name, (base,), {"__init__": __init__, "__module__": __name__,
                                     "__doc__": f"{base.__name__} with {json.dumps(cfg, sort_keys=True)}."})
    globals()[class_name] = cls  # TFMA finds it as getattr(module, class_name)
    return cls


def _evaluator_metrics() -> Dict[str, type]:
    bases = {"MeanAveragePrecision": MeanAveragePrecision, "RankingNDCG": RankingNDCG,
             "RankingPrecision": RankingPrecision, "RankingRecall": RankingRecall,
             "JobsWithoutRelevant": JobsWithoutRelevant}
    levels = [(LENIENT_RELEVANCE, "", True), (STRICT_RELEVANCE, STRICT_SUFFIX, False)]
    found = {name: _fixed_metric(bases[class_name], name, cfg)
             for threshold, suffix, recall in levels
             for class_name, name, cfg in _ranking_specs(threshold, ranking.DEFAULT_NDCG_K, ranking.DEFAULT_PRECISION_K,
                                                         ranking.DEFAULT_RECALL_K, suffix, recall)}
    for reference in outputs.BASELINES:
        name = map_difference_name(reference)
        found[name] = _fixed_metric(MapDifference, name, {"name": name, "output": outputs.SERVED,
                                                          "reference": reference,
                                                          "relevance_threshold": LENIENT_RELEVANCE})
    return found


EVALUATOR_METRICS = _evaluator_metrics()  # metric name -> its class with fixed parameters


def _fixed_config(name: str) -> config_pb2.MetricConfig:
    return config_pb2.MetricConfig(class_name=EVALUATOR_METRICS[name].__name__, module=__name__)


def relevance_metric_configs(
    thresholds: Optional[Dict[str, config_pb2.MetricThreshold]] = None,
) -> List[config_pb2.MetricConfig]:
    """The Evaluator's ranking metrics at both relevance levels: lenient (relevance >= 1) ``map``,
    ``ndcg@10``, ``precision@10``, ``recall@100``, ``jobs_without_relevant``, and strict (relevance 2)
    ``map_strict``, ``ndcg@10_strict``, ``precision@10_strict``, ``jobs_without_relevant_strict``; each
    config names a class of ``EVALUATOR_METRICS`` and holds no ``config`` JSON.

    ``thresholds`` maps any of these names to its MetricThreshold; an unknown name raises ValueError.
    """
    thresholds = dict(thresholds or {})
    names = [n for n in EVALUATOR_METRICS if not n.startswith("map_over_")]
    configs = []
    for name in names:
        mc = _fixed_config(name)
        if name in thresholds:
            mc.threshold.CopyFrom(thresholds.pop(name))
        configs.append(mc)
    if thresholds:
        raise ValueError(f"thresholds for unknown ranking metrics: {sorted(thresholds)}")
    return configs


def map_difference_config(
    reference: str = outputs.BM25,
    threshold: Optional[config_pb2.MetricThreshold] = None,
) -> config_pb2.MetricConfig:
    """The MetricConfig of MapDifference (lenient relevance) of the served output over output `reference`
    (one of `outputs.BASELINES`), named ``map_over_<reference>`` (``map_over_bm25`` by default), with an
    optional MetricThreshold."""
    mc = _fixed_config(map_difference_name(reference))
    if threshold is not None:
        mc.threshold.CopyFrom(threshold)
    return mc
