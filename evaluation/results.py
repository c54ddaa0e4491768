"""Reading an Evaluator output: the candidate model's metric values per slice."""

from __future__ import annotations

from typing import Dict

SliceName = str
OVERALL = "Overall"


def slice_name(slice_key) -> SliceName:
    """"Overall", or "column=value, ..." for a TFMA SliceKey proto."""
    if not slice_key.single_slice_keys:
        return OVERALL
    parts = []
    for k in slice_key.single_slice_keys:
        value = getattr(k, k.WhichOneof("kind"))
        parts.append(f"{k.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts)


def load_slice_metrics(evaluation_uri: str) -> Dict[SliceName, Dict[str, float]]:
    """Candidate-model metric values per slice from an Evaluator output (diffs and baseline omitted)."""
    import tensorflow_model_analysis as tfma

    result: Dict[SliceName, Dict[str, float]] = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        values = result.setdefault(slice_name(per_slice.slice_key), {})
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or kv.key.model_name == "baseline":
                continue
            if kv.value.HasField("double_value"):
                values[kv.key.name] = float(kv.value.double_value.value)
    return result
