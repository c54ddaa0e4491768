"""Reading an Evaluator output: metric values per slice, per output of the model and per metric.

A metric is identified by (output, metric name), e.g. ("scores", "map") or ("bm25_scores",
"ndcg@10_strict"); outputs are those of `evaluation.outputs`. A metric without an output name counts as
the served ranking's (`scores`): such are metrics that compare the served ranking with another output
(`map_over_bm25`) and every metric of evaluations written when `evaluate` had the one output `scores`.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, NamedTuple, Tuple

from evaluation import outputs

SliceName = str
OutputMetric = Tuple[str, str]  # (output, metric name)
OVERALL = "Overall"
CANDIDATE = "candidate"
BASELINE = "baseline"


def slice_name(slice_key) -> SliceName:
    """"Overall", or "column=value, ..." for a TFMA SliceKey proto."""
    if not slice_key.single_slice_keys:
        return OVERALL
    parts = []
    for k in slice_key.single_slice_keys:
        value = getattr(k, k.WhichOneof("kind"))
        parts.append(f"{k.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts)


class MetricValue(NamedTuple):
    """One numeric metric value of an Evaluator output, with TFMA's confidence interval (NaN bounds when
    none was computed)."""
    slice: SliceName
    model: str  # CANDIDATE or BASELINE
    output: str
    metric: str
    value: float
    lower: float
    upper: float


def _bound(value) -> float:
    return float(value.double_value.value) if value.HasField("double_value") else math.nan


def metric_values(evaluation_uri: str) -> Iterator[MetricValue]:
    """Every numeric metric value of the candidate and the baseline model in an Evaluator output, in
    TFMA's order. Diffs against the baseline and non-numeric values are left out; the candidate is
    CANDIDATE whether TFMA named it "" (no baseline) or "candidate"."""
    import tensorflow_model_analysis as tfma

    for per_slice in tfma.load_metrics(evaluation_uri):
        name = slice_name(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or kv.key.model_name not in ("", CANDIDATE, BASELINE) \
                    or not kv.value.HasField("double_value"):
                continue
            lower = upper = math.nan
            if kv.HasField("confidence_interval"):
                lower = _bound(kv.confidence_interval.lower_bound)
                upper = _bound(kv.confidence_interval.upper_bound)
            yield MetricValue(name, BASELINE if kv.key.model_name == BASELINE else CANDIDATE,
                              kv.key.output_name or outputs.SERVED, kv.key.name,
                              float(kv.value.double_value.value), lower, upper)


def load_metrics(evaluation_uri: str, model: str = CANDIDATE) -> Dict[SliceName, Dict[OutputMetric, float]]:
    """Metric values per slice of one model from an Evaluator output: {slice: {(output, metric): value}}.

    `model` is `CANDIDATE` (the evaluated model; TFMA names it "" when there was no baseline) or
    `BASELINE`. Diffs against the baseline and non-numeric values are left out; a slice appears only
    when it has a value for the model."""
    result: Dict[SliceName, Dict[OutputMetric, float]] = {}
    for v in metric_values(evaluation_uri):
        if v.model == model:
            result.setdefault(v.slice, {})[v.output, v.metric] = v.value
    return result


def for_output(values: Dict[OutputMetric, float], output: str = outputs.SERVED) -> Dict[str, float]:
    """{metric: value} of one output, from one slice's {(output, metric): value}."""
    return {name: value for (o, name), value in values.items() if o == output}


def load_slice_metrics(evaluation_uri: str, output: str = outputs.SERVED) -> Dict[SliceName, Dict[str, float]]:
    """The candidate model's metric values of one output (default the served ranking) per slice:
    {slice: {metric: value}}."""
    return {s: for_output(values, output) for s, values in load_metrics(evaluation_uri).items()}
