"""The summary printed after a pipeline run: ranking metrics per slice, data warnings, blessing, what was
pushed, and what is served and whether its files are intact."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional, Tuple

from evaluation.results import OVERALL, SliceName, load_slice_metrics
from metadata import mlmd
from serving import pushes



@dataclasses.dataclass
class RunSummary:
    run_id: str
    node_states: List[Tuple[str, str]]
    metrics: Dict[SliceName, Dict[str, float]]
    blessed: Optional[bool]
    pushed_version: Optional[str]  # the version this run's Pusher recorded (None: nothing pushed)
    model_uri: Optional[str]
    push: str = ""  # what the Pusher did, as a sentence
    served: str = ""  # which version is served and whether its files are intact
    warnings: List[str] = dataclasses.field(default_factory=list)

    def format(self) -> str:
        # Node states are shown as the nodes run (orchestration/console.py); `node_states` keeps them.
        lines = [f"run {self.run_id}"]
        if self.metrics:
            names = ["map", "ndcg@10", "precision@10", "recall@100", "example_count"]
            lines.append("evaluation (eval jobs, every job ranked against every CV):")
            lines.append(f"  {'slice':<34}" + "".join(f"{n:>14}" for n in names))
            for slice_name in sorted(self.metrics, key=lambda s: (s != OVERALL, s)):
                values = self.metrics[slice_name]
                lines.append(f"  {slice_name:<34}" + "".join(
                    f"{values[n]:>14.4f}" if isinstance(values.get(n), float) else f"{'-':>14}" for n in names))
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


def summarize(metadata_path: str, pipeline_name: str, run_id: str, node_order: List[str],
              serving_dir: Optional[str] = None) -> RunSummary:
    """The summary of run `run_id` from ML Metadata; with `serving_dir` (the model base path), also
    which version is served and whether its files match its push record."""
    store = mlmd.sqlite_store(metadata_path)
    states = mlmd.run_node_states(store, pipeline_name, run_id)
    node_states = [(n, states.get(n, "NOT RUN")) for n in node_order]

    outputs = {node: mlmd.run_node_outputs(store, pipeline_name, run_id, node) for node in node_order}

    def output(node: str, key: str):
        arts = outputs.get(node, {}).get(key, [])
        return arts[0] if arts else None

    evaluation = output("Evaluator", "evaluation")
    metrics = load_slice_metrics(evaluation.uri) if evaluation is not None else {}
    blessing = output("Evaluator", "blessing")
    blessed = None
    if blessing is not None and "blessed" in blessing.custom_properties:
        blessed = bool(blessing.custom_properties["blessed"].int_value)
    pushed = output("Pusher", "pushed_model")
    pushed_version = None
    if pushed is not None and pushed.custom_properties["pushed"].int_value == 1:
        pushed_version = pushed.custom_properties["pushed_version"].string_value
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
    return RunSummary(run_id, node_states, metrics, blessed, pushed_version, model.uri if model else None,
                      push, served, warnings)
