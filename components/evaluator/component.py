"""Evaluator: TFX's Evaluator (TFMA) with the overall metrics recorded on its `evaluation` artifact."""

from __future__ import annotations

from tfx.components.evaluator import component as tfx_evaluator
from tfx.dsl.components.base import executor_spec

from components.evaluator import executor


class Evaluator(tfx_evaluator.Evaluator):
    """TFX's Evaluator (same constructor, node id, inputs, outputs, blessing and caching) whose executor
    also records the candidate model's overall-slice metrics as custom properties of the output
    `evaluation` (ModelEvaluation) artifact; see `components.evaluator.executor.Executor` for the names.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
