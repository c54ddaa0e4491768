"""GloveTrainer executor: word vectors from the co-occurrence matrix, then the serving model."""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.glove_trainer import spec
from serving.model import build_model, save_model
from trainer import fusion, glove
from components.glove_trainer.cooccurrence_reader import read_cooccurrence_shards
from evaluation import outputs
from transform import contract

VECTORS_FILE = "word_vectors.txt"


def read_examples(examples: types.Artifact, split: str, what: str = "examples") -> List[bytes]:
    """The serialized tf.Examples of split `split` of an Examples artifact (GZIP TFRecords), in file order.
    Raises ValueError naming `what` when the split has no file."""
    files = sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))
    if not files:
        raise ValueError(f"no {what} in split {split!r} of {examples.uri}")
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def read_cvs(examples: types.Artifact, split: str) -> Tuple[np.ndarray, List[bytes]]:
    """The CV index source: (cv_ids as a bytes array, texts) from split `split` of an Examples artifact,
    sorted by cv_id so the index order does not depend on how files were sharded."""
    records = read_examples(examples, split, "CV examples")
    feature_spec = {contract.CV_ID_KEY: tf.io.FixedLenFeature([], tf.string), **contract.RAW_TEXT_SPEC}
    rows = []
    for k in range(0, len(records), 4096):
        parsed = tf.io.parse_example(tf.constant(records[k:k + 4096]), feature_spec)
        texts = contract.join_text(parsed[contract.TEXT_KEY])
        rows.extend(zip(parsed[contract.CV_ID_KEY].numpy().tolist(), texts.numpy().tolist()))
    rows.sort()
    return np.array([r[0] for r in rows], dtype=object), [r[1] for r in rows]


def fit_jobs(jobs: List[bytes], max_jobs: int) -> List[bytes]:
    """At most `max_jobs` of `jobs` (serialized ranking examples), evenly spaced in byte order, so the
    choice does not depend on how the examples were sharded; all of them when there are no more."""
    ordered = sorted(jobs)
    if len(ordered) <= max_jobs:
        return ordered
    return [ordered[k] for k in np.linspace(0, len(ordered) - 1, max_jobs).round().astype(int)]


def fit_served_ranking(model, jobs: List[bytes]) -> fusion.FusionFit:
    """Fits the model's fusion parameters on `jobs` (serialized ranking examples) and sets them."""
    scores = model.score_examples(jobs)
    labels = model.labels_of_examples(jobs)
    tfidf = fusion.tfidf_matrix(model.lexical_index(), len(model.cv_ids.numpy()))
    fit = fusion.fit_fusion(labels, scores[outputs.EMBEDDING], scores[outputs.BM25], tfidf)
    model.set_fusion(fit.params)
    return fit


class Executor(base_executor.BaseExecutor):
    """Trains GloVe, writes the vectors in GloVe's text format and exports the serving SavedModel to
    `<model>/Format-Serving`; TensorBoard logs of the loss per epoch go to the ModelRun artifact. With
    `hybrid_ranking`, the served ranking's fusion parameters are fitted on split `fit_split` of
    `ranking_examples` (at most `fusion_fit_max_jobs` of its jobs: `fit_jobs`; trainer.fusion) and recorded
    on the Model as `fusion_*` custom properties."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        matrix = artifact_utils.get_single_instance(input_dict[spec.COOCCURRENCE_KEY])
        transform_graph = artifact_utils.get_single_instance(input_dict[spec.TRANSFORM_GRAPH_KEY])
        cvs = artifact_utils.get_single_instance(input_dict[spec.CVS_KEY])
        model_artifact = artifact_utils.get_single_instance(output_dict[spec.MODEL_KEY])
        model_run = artifact_utils.get_single_instance(output_dict[spec.MODEL_RUN_KEY])

        tft_output = tft.TFTransformOutput(transform_graph.uri)
        vocab_file = tft_output.vocabulary_file_by_name(contract.VOCAB_NAME)
        with tf.io.gfile.GFile(vocab_file, "rb") as f:
            words = [w.decode("utf-8") for w in f.read().splitlines()]
        i, j, x = read_cooccurrence_shards(matrix.uri)

        config = glove.GloveConfig(
            dim=exec_properties["embedding_dim"], epochs=exec_properties["epochs"],
            x_max=exec_properties["x_max"], alpha=exec_properties["alpha"],
            learning_rate=exec_properties["learning_rate"], batch_size=exec_properties["batch_size"],
            seed=exec_properties["seed"])
        logging.info("GloVe: %d words, %d non-zeros, %s", len(words), len(x), config)
        logger = glove.EpochLogger(len(x), config.epochs, log_dir=os.path.join(model_run.uri, "glove"))
        try:
            result = glove.train_glove(i, j, x, len(words), config, on_epoch_end=logger)
        finally:
            logger.close()

        glove.save_glove_text(os.path.join(model_artifact.uri, VECTORS_FILE), words, result.vectors)
        cv_ids, cv_texts = read_cvs(cvs, exec_properties[spec.CV_SPLIT_KEY])
        model = build_model(tft_output, result.vectors, cv_ids, cv_texts,
                            exec_properties[spec.DOC_WEIGHTING_KEY], exec_properties[spec.TOP_K_KEY])
        if exec_properties[spec.HYBRID_RANKING_KEY]:
            jobs = read_examples(artifact_utils.get_single_instance(input_dict[spec.RANKING_EXAMPLES_KEY]),
                                 exec_properties[spec.FIT_SPLIT_KEY])
            fit = fit_served_ranking(model, fit_jobs(jobs, exec_properties[spec.FIT_MAX_JOBS_KEY]))
            logging.info("served ranking fitted on %d of %d %s jobs: %s (objective %.4f; embedding only %.4f)",
                         fit.num_jobs, len(jobs), exec_properties[spec.FIT_SPLIT_KEY], fit.params, fit.objective,
                         fit.embedding_objective)
            model_artifact.set_float_custom_property("fusion_objective", fit.objective)
            model_artifact.set_float_custom_property("fusion_embedding_objective", fit.embedding_objective)
        params = model.fusion()
        model_artifact.set_int_custom_property("fusion_hybrid", int(params.hybrid))
        model_artifact.set_float_custom_property("fusion_lexical_weight", params.lexical_weight)
        model_artifact.set_float_custom_property("fusion_feedback_weight", params.feedback_weight)
        model_artifact.set_int_custom_property("fusion_feedback_docs", params.feedback_docs)
        serving_dir = path_utils.serving_model_path(model_artifact.uri)
        save_model(model, serving_dir)
        model_artifact.set_int_custom_property("vocab_size", len(words))
        model_artifact.set_int_custom_property("index_size", len(cv_ids))
        if result.losses:
            model_artifact.set_float_custom_property("final_loss", float(result.losses[-1]))
