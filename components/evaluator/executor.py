"""Evaluator executor: TFX's Evaluator executor, then the overall metrics onto the output artifact."""

from __future__ import annotations

import math
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.evaluator import executor as tfx_evaluator_executor
from tfx.types import artifact_utils, standard_component_specs

from evaluation import outputs
from evaluation.results import OVERALL, load_metrics


def property_name(output: str, metric: str) -> str:
    """The custom property holding metric `metric` of prediction output `output`: the bare metric name
    for the served ranking (`map`, `ndcg@10_strict`, `map_over_bm25`), `<output>:<metric>` for the
    others (`bm25_scores:map`)."""
    return metric if output == outputs.SERVED else f"{output}:{metric}"


def metric_properties(evaluation_uri: str) -> Dict[str, float]:
    """The custom properties for an Evaluator output: every numeric overall-slice metric of the
    candidate model, named by `property_name`; undefined (NaN) values are left out."""
    overall = load_metrics(evaluation_uri).get(OVERALL, {})
    return {property_name(output, metric): value for (output, metric), value in sorted(overall.items())
            if not math.isnan(value)}


class Executor(tfx_evaluator_executor.Executor):
    """Runs TFX's Evaluator executor (TFMA: metrics, validation, blessing), then sets one float custom
    property on the output `evaluation` (ModelEvaluation) artifact per overall-slice metric of the
    candidate model, so that ML Metadata holds them without reading the TFMA output:

    - the served ranking (output `scores`): the metric name itself, e.g. `map`, `map_strict`,
      `ndcg@10`, `ndcg@10_strict`, `precision@10`, `precision@10_strict`, `recall@100`,
      `jobs_without_relevant`, `jobs_without_relevant_strict`, `example_count`, and `map_over_bm25`
      (served MAP minus BM25's);
    - every other output of `evaluation.outputs`: `<output>:<metric>`, e.g. `embedding_scores:map`,
      `bm25_scores:ndcg@10_strict`, `tfidf_scores:precision@10`.

    A metric without a value (NaN: no job of the slice has a relevant CV) gets no property. Baseline
    values and diffs stay in the TFMA output only.
    """

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        evaluation = artifact_utils.get_single_instance(output_dict[standard_component_specs.EVALUATION_KEY])
        properties = metric_properties(evaluation.uri)
        for name, value in properties.items():
            evaluation.set_float_custom_property(name, value)
        logging.info("Recorded %d overall metrics on the evaluation artifact.", len(properties))
