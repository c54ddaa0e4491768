"""The summary printed after a pipeline run: ranking metrics of the served ranking and of the rankings it
is compared with, per slice, data warnings, blessing, what was pushed, and what is served and whether its
files are intact."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional, Tuple

from ml_metadata.metadata_store import metadata_store

from evaluation import outputs, ranking
from evaluation.results import OVERALL, OutputMetric, SliceName, for_output, load_metrics
from metadata import mlmd
from serving import pushes

# The overall table's columns as (heading, lenient metric name), each shown lenient and strict (name plus
# ranking.STRICT_SUFFIX); names as evaluation.tfma_metrics stores them. ExampleCount is TFMA's own metric.
_COLUMNS = (("MAP", ranking.MAP_NAME), ("NDCG@10", ranking.NDCG_NAME),
            ("P@10", f"precision@{ranking.DEFAULT_PRECISION_K}"))
_MAP, _STRICT, _WITHOUT_RELEVANT = ranking.MAP_NAME, ranking.STRICT_SUFFIX, ranking.JOBS_WITHOUT_RELEVANT_NAME
_EXAMPLE_COUNT = "example_count"


def _cell(value: Optional[float], width: int) -> str:
    return f"{value:>{width}.4f}" if isinstance(value, float) else f"{'-':>{width}}"


def format_evaluation(metrics: Dict[SliceName, Dict[OutputMetric, float]]) -> List[str]:
    """The summary's evaluation lines: for the overall slice, MAP, NDCG@10 and P@10 (lenient and strict)
    of the served ranking and of each ranking in `evaluation.outputs` (rows labelled by
    `outputs.LABELS`); then one line per other slice with the served ranking's MAP, lenient and strict."""
    overall = metrics.get(OVERALL, {})
    lines = ["evaluation (eval jobs, each ranked against every CV; lenient: relevance >= 1, strict: relevance 2):"]
    served = for_output(overall)
    jobs = served.get(_EXAMPLE_COUNT)
    if jobs is not None:
        notes = []
        if served.get(_WITHOUT_RELEVANT):
            notes.append(f"{served[_WITHOUT_RELEVANT]:.0f} have no relevant CV: in no metric")
        if served.get(_WITHOUT_RELEVANT + _STRICT):
            notes.append(f"{served[_WITHOUT_RELEVANT + _STRICT]:.0f} have no grade-2 CV: not in the strict ones")
        lines.append(f"  overall: {jobs:.0f} jobs" + (f" ({'; '.join(notes)})" if notes else ""))
    lines.append(f"  {'':<16}" + "".join(f"{heading:^18}" for heading, _ in _COLUMNS))
    lines.append(f"  {'':<16}" + "".join(f"{'lenient':>10}{'strict':>8}" for _ in _COLUMNS))
    for output in outputs.VARIANTS:
        values = for_output(overall, output)
        if not values and output != outputs.SERVED:
            continue  # an evaluation without this output
        lines.append(f"  {outputs.LABELS[output]:<16}" + "".join(
            _cell(values.get(name), 10) + _cell(values.get(name + _STRICT), 8) for _, name in _COLUMNS))
    slices = sorted(s for s in metrics if s != OVERALL)
    if slices:
        width = max(24, *(len(s) + 2 for s in slices))
        lines.append(f"  {'per slice, ' + outputs.LABELS[outputs.SERVED] + ' MAP':<{width}}{'lenient':>10}{'strict':>8}{'jobs':>6}")
        for name in slices:
            values = for_output(metrics[name])
            jobs = values.get(_EXAMPLE_COUNT)
            lines.append(f"  {name:<{width}}" + _cell(values.get(_MAP), 10)
                         + _cell(values.get(_MAP + _STRICT), 8)
                         + (f"{jobs:>6.0f}" if jobs is not None else f"{'-':>6}"))
    return [line.rstrip() for line in lines]


@dataclasses.dataclass
class RunSummary:
    run_id: str
    node_states: List[Tuple[str, str]]
    # Every output's metrics per slice: {slice: {(output, metric): value}} (evaluation.results).
    output_metrics: Dict[SliceName, Dict[OutputMetric, float]]
    blessed: Optional[bool]
    pushed_version: Optional[str]  # the version this run's Pusher recorded (None: nothing pushed)
    model_uri: Optional[str]
    push: str = ""  # what the Pusher did, as a sentence
    served: str = ""  # which version is served and whether its files are intact
    warnings: List[str] = dataclasses.field(default_factory=list)

    @property
    def metrics(self) -> Dict[SliceName, Dict[str, float]]:
        """The served ranking's metrics per slice: {slice: {metric: value}}."""
        return {name: for_output(values) for name, values in self.output_metrics.items()}

    def format(self) -> str:
        # Node states are shown as the nodes run (orchestration/console.py); `node_states` keeps them.
        lines = [f"run {self.run_id}"]
        if self.output_metrics:
            lines += format_evaluation(self.output_metrics)
        lines += [f"warning: {w}" for w in self.warnings]
        if self.blessed is not None:
            lines.append(f"blessed: {'yes' if self.blessed else 'no'}")
        if self.push:
            lines.append(f"push: {self.push}")
        if self.served:
            lines.append(self.served)
        if self.model_uri:
            lines.append(f"model: {self.model_uri}")
        return "\n".join(lines)


def _push_sentence(state: Optional[str], blessed: Optional[bool], pushed_version: Optional[str],
                   records: Dict[int, pushes.PushRecord]) -> str:
    if state is None or state == "NOT RUN":
        return "none: the run stopped before the Pusher"
    if state == "FAILED":
        return "FAILED (the error is above and in the log); nothing was published"
    if state not in ("COMPLETE", "CACHED"):
        return f"Pusher is {state}; nothing was published"
    if pushed_version is None:
        return "none: the model was not blessed" if blessed is False else "none"
    record = records.get(int(pushed_version))
    if state == "CACHED":
        by = f" by run {record.run_id}" if record is not None and record.run_id else ""
        return f"unchanged: this model was pushed as version {pushed_version}{by}"
    return f"version {pushed_version}"


def summarize(store: metadata_store.MetadataStore, pipeline_name: str, run_id: str, node_order: List[str],
              serving_dir: Optional[str] = None) -> RunSummary:
    """The summary of run `run_id` from the ML Metadata `store`; with `serving_dir` (the model base path),
    also which version is served and whether its files match its push record."""
    states = mlmd.run_node_states(store, pipeline_name, run_id)
    node_states = [(n, states.get(n, "NOT RUN")) for n in node_order]

    outputs = {node: mlmd.run_node_outputs(store, pipeline_name, run_id, node) for node in node_order}

    def output(node: str, key: str):
        arts = outputs.get(node, {}).get(key, [])
        return arts[0] if arts else None

    evaluation = output("Evaluator", "evaluation")
    output_metrics = load_metrics(evaluation.uri) if evaluation is not None else {}
    blessing = output("Evaluator", "blessing")
    blessed = mlmd.blessed(blessing)
    pushed_version = mlmd.pushed_version(output("Pusher", "pushed_model"))
    model = output("GloveTrainer", "model")

    warnings: List[str] = []
    for node in node_order:
        for artifacts in outputs[node].values():
            for artifact in artifacts:
                if mlmd.WARNINGS_PROPERTY in artifact.custom_properties:
                    warnings += json.loads(artifact.custom_properties[mlmd.WARNINGS_PROPERTY].string_value or "[]")

    push = served = ""
    records = pushes.push_records(store, serving_dir) if serving_dir else {}
    if "Pusher" in node_order:
        push = _push_sentence(states.get("Pusher"), blessed, pushed_version, records)
    if serving_dir:
        served = pushes.served_line(pushes.verify(store, serving_dir, until_intact=True, records=records))
    return RunSummary(run_id, node_states, output_metrics, blessed, pushed_version, model.uri if model else None,
                      push, served, warnings)
