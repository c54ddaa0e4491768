"""GloveTrainer: a TFX component that trains GloVe word vectors and exports the ranking model.

Inputs: `cooccurrence` (CooccurrenceMatrix), `transform_graph` (the Transform output: tokeniser and
vocabulary), `cvs` (Examples holding the CVs to index, split `cv_split`). Outputs: `model` (the serving
SavedModel under `Format-Serving/` plus `word_vectors.txt` in GloVe's text format) and `model_run`
(TensorBoard logs of the loss per epoch).
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.cooccurrence.artifacts import CooccurrenceMatrix
from trainer import executor


class GloveTrainerSpec(ComponentSpec):
    PARAMETERS = {
        "embedding_dim": ExecutionParameter(type=int),
        "epochs": ExecutionParameter(type=int),
        "x_max": ExecutionParameter(type=float),
        "alpha": ExecutionParameter(type=float),
        "learning_rate": ExecutionParameter(type=float),
        "batch_size": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "doc_weighting": ExecutionParameter(type=str),
        "top_k": ExecutionParameter(type=int),
        "cv_split": ExecutionParameter(type=str),
    }
    INPUTS = {
        "cooccurrence": ChannelParameter(type=CooccurrenceMatrix),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph),
        "cvs": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun),
    }


class GloveTrainer(base_component.BaseComponent):
    """See the module docstring."""

    SPEC_CLASS = GloveTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, cooccurrence: types.BaseChannel, transform_graph: types.BaseChannel,
                 cvs: types.BaseChannel, *, embedding_dim: int = 100, epochs: int = 25, x_max: float = 100.0,
                 alpha: float = 0.75, learning_rate: float = 0.05, batch_size: int = 16384, seed: int = 0,
                 doc_weighting: str = "sif", top_k: int = 10, cv_split: str = "cvs"):
        spec = GloveTrainerSpec(
            cooccurrence=cooccurrence, transform_graph=transform_graph, cvs=cvs,
            embedding_dim=embedding_dim, epochs=epochs, x_max=float(x_max), alpha=float(alpha),
            learning_rate=float(learning_rate), batch_size=batch_size, seed=seed,
            doc_weighting=doc_weighting, top_k=top_k, cv_split=cv_split,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        super().__init__(spec=spec)
