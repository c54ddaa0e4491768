"""What the REST and gRPC APIs share: finding the servable for a request and running a signature on it
(batched when the signature allows it)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Dict, Optional, Tuple

import numpy as np

from serving.errors import invalid_argument
from serving.versions import ModelManager, Servable, Signature

DEFAULT_SIGNATURE = "serving_default"
_METHODS = {"predict": "tensorflow/serving/predict", "classify": "tensorflow/serving/classify",
            "regress": "tensorflow/serving/regress"}


class PredictionService:
    """Runs requests against the versions a ModelManager serves."""

    def __init__(self, manager: ModelManager, executor: concurrent.futures.Executor):
        self.manager = manager
        self._executor = executor

    async def predict(self, model: str, version: Optional[int], label: Optional[str], signature_name: str,
                      inputs_fn, verb: str = "predict") -> Tuple[Servable, Signature, Dict[str, np.ndarray]]:
        """Runs `signature_name` (default `serving_default`) of the requested servable on the inputs that
        `inputs_fn(signature)` returns (numpy arrays by input name). Raises ServingError."""
        servable = self.manager.servable(model, version, label)
        signature = servable.signature(signature_name or DEFAULT_SIGNATURE)
        if verb != "predict" and signature.method_name != _METHODS[verb]:
            raise invalid_argument(f"Expected {verb} signature method_name to be {_METHODS[verb]}. "
                                   f"Was: {signature.method_name}")
        inputs = inputs_fn(signature)
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if extra:
            raise invalid_argument(f"input tensor alias not found in signature: {', '.join(extra)}. "
                                   f"Inputs expected to be in the set {{{','.join(sorted(signature.inputs))}}}.")
        if missing:
            raise invalid_argument(f"input size does not match signature: {len(inputs)}!={len(signature.inputs)} "
                                   f"len({{{','.join(sorted(inputs))}}}) != len({{{','.join(sorted(signature.inputs))}}})."
                                   f" Missing: {', '.join(missing)}")
        rows = {v.shape[0] if v.ndim else -1 for v in inputs.values()}
        if signature.batcher is not None and len(rows) == 1 and min(rows) > 0:
            outputs = await signature.batcher.submit(inputs)
        else:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, servable.call, signature.name, inputs)
        return servable, signature, outputs

