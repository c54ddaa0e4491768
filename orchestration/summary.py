"""The summary printed after a pipeline run: node states, ranking metrics per slice, blessing, push."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from metadata import mlmd

SliceName = str


@dataclasses.dataclass
class RunSummary:
    run_id: str
    node_states: List[Tuple[str, str]]
    metrics: Dict[SliceName, Dict[str, float]]
    blessed: Optional[bool]
    pushed_version: Optional[str]
    model_uri: Optional[str]

    def format(self) -> str:
        # Node states are shown as the nodes run (orchestration/console.py); `node_states` keeps them.
        lines = [f"run {self.run_id}"]
        if self.metrics:
            names = ["map", "ndcg@10", "precision@10", "recall@100", "example_count"]
            lines.append("evaluation (eval jobs, every job ranked against every CV):")
            lines.append(f"  {'slice':<34}" + "".join(f"{n:>14}" for n in names))
            for slice_name in sorted(self.metrics, key=lambda s: (s != "Overall", s)):
                values = self.metrics[slice_name]
                lines.append(f"  {slice_name:<34}" + "".join(
                    f"{values[n]:>14.4f}" if isinstance(values.get(n), float) else f"{'-':>14}" for n in names))
        if self.blessed is not None:
            lines.append(f"blessed: {'yes' if self.blessed else 'no'}")
        pusher_cached = dict(self.node_states).get("Pusher") == "CACHED"
        if self.pushed_version and pusher_cached:
            lines.append(f"pushed version: {self.pushed_version} (unchanged: pushed by an earlier run)")
        else:
            lines.append(f"pushed version: {self.pushed_version or 'none (previous version stays)'}")
        if self.model_uri:
            lines.append(f"model: {self.model_uri}")
        return "\n".join(lines)


def _slice_name(slice_key) -> SliceName:
    if not slice_key.single_slice_keys:
        return "Overall"
    parts = []
    for k in slice_key.single_slice_keys:
        value = k.WhichOneof("kind")
        v = getattr(k, value)
        parts.append(f"{k.column}={v.decode() if isinstance(v, bytes) else v}")
    return ", ".join(parts)


def load_slice_metrics(evaluation_uri: str) -> Dict[SliceName, Dict[str, float]]:
    """Candidate-model metric values per slice from an Evaluator output (diffs and baseline omitted)."""
    import tensorflow_model_analysis as tfma

    result: Dict[SliceName, Dict[str, float]] = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        values = result.setdefault(_slice_name(per_slice.slice_key), {})
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or kv.key.model_name == "baseline":
                continue
            if kv.value.HasField("double_value"):
                values[kv.key.name] = float(kv.value.double_value.value)
    return result


def summarize(metadata_path: str, pipeline_name: str, run_id: str, node_order: List[str]) -> RunSummary:
    store = mlmd.sqlite_store(metadata_path)
    states = mlmd.run_node_states(store, pipeline_name, run_id)
    node_states = [(n, states.get(n, "NOT RUN")) for n in node_order]

    def output(node: str, key: str):
        arts = mlmd.run_node_outputs(store, pipeline_name, run_id, node).get(key, [])
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
    return RunSummary(run_id, node_states, metrics, blessed, pushed_version, model.uri if model else None)
