"""GloveTrainer: a TFX component that trains GloVe word vectors and exports the ranking model."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts

from components.glove_trainer import executor
from components.glove_trainer.spec import GloveTrainerSpec
from config import default


class GloveTrainer(base_component.BaseComponent):
    """Trains GloVe on a co-occurrence matrix and exports the ranking SavedModel.

    Inputs: `cooccurrence` (CooccurrenceMatrix), `transform_graph` (the Transform output: tokeniser and
    vocabularies), `cvs` (Examples holding the CVs to index, split `cv_split`), `ranking_examples`
    (DataCheck's jobs with their judged CVs; only split `fit_split` is read, to fit the served ranking's
    fusion weights when `hybrid_ranking`). Outputs: `model` (the serving SavedModel under
    `Format-Serving/` plus `word_vectors.txt` in GloVe's text format; the fitted fusion parameters as
    custom properties) and `model_run` (TensorBoard logs of the loss per epoch). Every default is
    `config.PipelineConfig`'s.
    """

    SPEC_CLASS = GloveTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, cooccurrence: types.BaseChannel, transform_graph: types.BaseChannel,
                 cvs: types.BaseChannel, ranking_examples: types.BaseChannel, *,
                 embedding_dim: int = default("embedding_dim"), epochs: int = default("epochs"),
                 x_max: float = default("x_max"), alpha: float = default("alpha"),
                 learning_rate: float = default("learning_rate"), batch_size: int = default("batch_size"),
                 seed: int = default("seed"), doc_weighting: str = default("doc_weighting"),
                 top_k: int = default("top_k"), hybrid_ranking: bool = default("hybrid_ranking"),
                 fusion_fit_max_jobs: int = default("fusion_fit_max_jobs"),
                 cv_split: str = "cvs", fit_split: str = "eval"):
        spec = GloveTrainerSpec(
            cooccurrence=cooccurrence, transform_graph=transform_graph, cvs=cvs, ranking_examples=ranking_examples,
            embedding_dim=embedding_dim, epochs=epochs, x_max=float(x_max), alpha=float(alpha),
            learning_rate=float(learning_rate), batch_size=batch_size, seed=seed,
            doc_weighting=doc_weighting, top_k=top_k, hybrid_ranking=int(bool(hybrid_ranking)),
            fusion_fit_max_jobs=fusion_fit_max_jobs, cv_split=cv_split, fit_split=fit_split,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        super().__init__(spec=spec)
