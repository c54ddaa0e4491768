"""The serving SavedModel: raw job-description text in, the best-matching CVs out.

Every step runs in the TensorFlow graph (the Transform graph for tokenisation, then lookups and matrix
products), with standard ops only, so TensorFlow Serving loads the model as is. Signatures:

- `serving_default`: `text` [batch] string -> `cv_ids` [batch, k] string, `scores` [batch, k] float32,
  `snippets` [batch, k] string: the k CVs of the index with the highest cosine similarity, best first,
  with the first words of each CV (so a client can show results without a database).
- `embed`: `text` [batch] string -> `embedding` [batch, dim] float32, the L2-normalised document vector.
- `evaluate`: serialized tf.Example [batch] (a job, feature `text`) -> `scores` [batch, n_cvs], the
  cosine similarity to every CV of the index, in index order (used by the Evaluator: full-candidate
  ranking).
- `relevance_labels`: serialized tf.Example [batch] with `judged_cv_ids` and `judged_relevance` ->
  `relevance_labels` [batch, n_cvs] float32, the graded relevance of every CV of the index (0 where
  unjudged). The Evaluator runs it as a preprocessing function to get the labels in index order.

Document vector: the weighted mean of the vectors of the document's in-vocabulary tokens, with a
per-word weight (see `token_weights`), minus the mean CV vector (the component that all documents
share), L2-normalised. A document with no in-vocabulary token gets the zero vector and scores 0.

A saved model is self-contained: its variables hold the word vectors, the word weights, the centre,
k and the CV index, and `assets.extra/transform_graph.tar` holds a copy of the Transform graph, so a new
CV index can be built from a served version alone (`serving.index`). (An archive, not a directory: TFX's
Pusher copies every `saved_model.pb` of a model last and only the top-level one, so a nested SavedModel
directory would arrive without its graph.) `assets.extra/tf_serving_warmup_requests`
holds warm-up requests in TF Serving's format, replayed by any server before the version goes live.
"""

from __future__ import annotations

import os
import tarfile
from typing import List, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from serving.versions import WARMUP_FILE
from transform.contract import RAW_TEXT_SPEC, TEXT_KEY, TOKEN_IDS_KEY, join_text

# Where a saved model keeps its copy of the Transform graph.
TRANSFORM_ARCHIVE = os.path.join("assets.extra", "transform_graph.tar")
WARMUP_TEXTS = ("software developer with python and sql experience", "")
SNIPPET_WORDS = 12

# SIF's smoothing constant; 2e-3 gave the best MAP on the bundled eval jobs among 1e-4 ... 5e-3
# (benchmarks/ranking_quality.py); Arora et al. report 1e-3 to 1e-4 works for general text.
SIF_A = 2e-3
_BATCH = 512


def token_weights(doc_token_ids: list, vocab_size: int, scheme: str, sif_a: float = SIF_A) -> np.ndarray:
    """Per-word weights [vocab_size] for the document vector, computed from `doc_token_ids` (one int array
    of in-vocabulary token ids per CV of the index).

    - `mean`: every token weighs 1.
    - `idf`: log((1 + n_docs) / (1 + df(w))) + 1, df = number of CVs containing w (smooth IDF).
    - `sif`: a / (a + p(w)), p(w) = relative token frequency in the CVs (Arora et al., 2017).
    """
    if scheme == "mean":
        return np.ones(vocab_size, np.float32)
    counts = np.zeros(vocab_size, np.float64)
    df = np.zeros(vocab_size, np.float64)
    for ids in doc_token_ids:
        np.add.at(counts, ids, 1.0)
        df[np.unique(ids)] += 1.0
    if scheme == "idf":
        return (np.log((1.0 + len(doc_token_ids)) / (1.0 + df)) + 1.0).astype(np.float32)
    if scheme == "sif":
        p = counts / max(counts.sum(), 1.0)
        return (sif_a / (sif_a + p)).astype(np.float32)
    raise ValueError(f"unknown document weighting {scheme!r} (mean, idf, sif)")


class RankingModel(tf.Module):
    """Tokenises with the Transform graph, embeds, and ranks against a CV index held in variables."""

    def __init__(self, tft_output: tft.TFTransformOutput, word_vectors: np.ndarray, weights: np.ndarray,
                 top_k: int):
        super().__init__()
        self.tft_output = tft_output
        self.tft_layer = tft_output.transform_features_layer()
        self._text_is_sparse = isinstance(tft_output.raw_feature_spec()[TEXT_KEY], tf.io.VarLenFeature)
        self.word_vectors = tf.Variable(word_vectors.astype(np.float32), trainable=False, name="word_vectors")
        self.word_weights = tf.Variable(weights.astype(np.float32), trainable=False, name="word_weights")
        self.top_k = tf.Variable(int(top_k), dtype=tf.int32, trainable=False, name="top_k")
        dim = word_vectors.shape[1]
        self.center = tf.Variable(tf.zeros([dim]), trainable=False, name="center")
        self.cv_ids = tf.Variable(tf.constant([], tf.string), shape=[None], trainable=False, name="cv_ids")
        self.cv_matrix = tf.Variable(tf.zeros([0, dim]), shape=[None, dim], trainable=False, name="cv_matrix")
        self.cv_snippets = tf.Variable(tf.constant([], tf.string), shape=[None], trainable=False, name="cv_snippets")

    # -- building blocks -------------------------------------------------------------------------
    def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """In-vocabulary token ids of each text, [batch, None] int64 (out-of-vocabulary tokens dropped)."""
        text = tf.reshape(text, [-1])
        if self._text_is_sparse:
            n = tf.shape(text, out_type=tf.int64)[0]
            indices = tf.stack([tf.range(n), tf.zeros([n], tf.int64)], axis=1)
            raw = tf.SparseTensor(indices=indices, values=text, dense_shape=tf.stack([n, 1]))
        else:
            raw = tf.expand_dims(text, 1)
        ids = self.tft_layer({TEXT_KEY: raw})[TOKEN_IDS_KEY]
        if isinstance(ids, tf.SparseTensor):
            ids = tf.RaggedTensor.from_sparse(ids)
        elif not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids, padding=-1)
        return tf.ragged.boolean_mask(ids, ids >= 0)

    def raw_embedding(self, text: tf.Tensor) -> tf.Tensor:
        """Weighted mean word vector [batch, dim], before centering."""
        ids = self.token_ids(text)
        vecs = tf.gather(self.word_vectors, ids)            # [batch, None, dim]
        w = tf.gather(self.word_weights, ids)               # [batch, None]
        total = tf.reduce_sum(vecs * tf.expand_dims(w, -1), axis=1)
        norm = tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1e-12)
        return (total / norm).to_tensor() if isinstance(total, tf.RaggedTensor) else total / norm

    def _normalise(self, raw: tf.Tensor) -> tf.Tensor:
        has_tokens = tf.reduce_any(tf.not_equal(raw, 0.0), axis=1, keepdims=True)
        centred = tf.where(has_tokens, raw - self.center, tf.zeros_like(raw))
        return tf.math.l2_normalize(centred, axis=1)

    def set_index(self, cv_ids: np.ndarray, raw_cv_vectors: np.ndarray, snippets: Sequence[bytes]) -> None:
        """Fixes the CV index: ids [n], raw (uncentred) vectors [n, dim] from `raw_embedding` and snippets
        [n]. The centre becomes the mean CV vector."""
        if len(raw_cv_vectors):
            self.center.assign(raw_cv_vectors.mean(axis=0))
        self.set_index_vectors(cv_ids, self._normalise(tf.constant(raw_cv_vectors, tf.float32)).numpy(), snippets)

    def set_index_vectors(self, cv_ids: np.ndarray, cv_vectors: np.ndarray, snippets: Sequence[bytes]) -> None:
        """Sets the CV index to ids [n], their final (centred, normalised) vectors [n, dim] and snippets [n]."""
        if not len(cv_ids) == len(cv_vectors) == len(snippets):
            raise ValueError(f"index parts differ in length: {len(cv_ids)} ids, {len(cv_vectors)} vectors, "
                             f"{len(snippets)} snippets")
        self.cv_ids.assign(np.asarray(cv_ids, dtype=object).reshape([-1]))
        self.cv_matrix.assign(np.asarray(cv_vectors, np.float32).reshape([-1, self.cv_matrix.shape[1]]))
        self.cv_snippets.assign(np.asarray(list(snippets), dtype=object).reshape([-1]))

    def embed_texts(self, texts: Sequence[bytes]) -> np.ndarray:
        """The final document vectors [n, dim] of `texts`, in batches (what `embed` returns)."""
        dim = int(self.cv_matrix.shape[1])
        parts = [self.embed(tf.constant(list(texts[k:k + _BATCH])))["embedding"].numpy()
                 for k in range(0, len(texts), _BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

    # -- signatures ------------------------------------------------------------------------------
    def embed(self, text):
        return {"embedding": self._normalise(self.raw_embedding(text))}

    def _all_scores(self, text):
        return tf.matmul(self._normalise(self.raw_embedding(text)), self.cv_matrix, transpose_b=True)

    def serve(self, text):
        scores = self._all_scores(text)
        k = tf.minimum(self.top_k, tf.shape(self.cv_ids)[0])
        top = tf.math.top_k(scores, k=k, sorted=True)
        return {"cv_ids": tf.gather(self.cv_ids, top.indices), "scores": top.values,
                "snippets": tf.gather(self.cv_snippets, top.indices)}

    def evaluate(self, examples):
        text = join_text(tf.io.parse_example(examples, RAW_TEXT_SPEC)[TEXT_KEY])
        return {"scores": self._all_scores(text)}

    def relevance_labels(self, examples):
        parsed = tf.io.parse_example(examples, {
            "judged_cv_ids": tf.io.VarLenFeature(tf.string),
            "judged_relevance": tf.io.VarLenFeature(tf.int64),
        })
        ids = tf.sparse.reorder(parsed["judged_cv_ids"])
        rel = tf.sparse.reorder(parsed["judged_relevance"])
        # The column of each judged id in the index, found from the cv_ids variable at call time, so the
        # index can be replaced without rebuilding a lookup table: [judged, n_cvs] matches.
        matches = tf.equal(tf.expand_dims(ids.values, 1), tf.expand_dims(self.cv_ids, 0))
        known = tf.reduce_any(matches, axis=1)
        cols = tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int64)
        rows = tf.boolean_mask(ids.indices[:, 0], known)
        indices = tf.stack([rows, tf.boolean_mask(cols, known)], axis=1)
        values = tf.cast(tf.boolean_mask(rel.values, known), tf.float32)
        shape = tf.stack([tf.shape(examples, out_type=tf.int64)[0], tf.shape(self.cv_ids, out_type=tf.int64)[0]])
        return {"relevance_labels": tf.scatter_nd(indices, values, shape)}

    def signatures(self) -> dict:
        """The SavedModel signatures. Each is traced from a tf.function made for this instance (not a
        class-level decorator), so several models built in one process never share traced graphs."""
        text = [tf.TensorSpec([None], tf.string, name=TEXT_KEY)]
        examples = [tf.TensorSpec([None], tf.string, name="examples")]
        return {
            "serving_default": tf.function(self.serve, input_signature=text).get_concrete_function(),
            "embed": tf.function(self.embed, input_signature=text).get_concrete_function(),
            "evaluate": tf.function(self.evaluate, input_signature=examples).get_concrete_function(),
            "relevance_labels": tf.function(self.relevance_labels, input_signature=examples).get_concrete_function(),
        }


def build_model(tft_output: tft.TFTransformOutput, vectors: np.ndarray, cv_ids: np.ndarray,
                cv_texts: List[bytes], weighting: str, top_k: int) -> RankingModel:
    """The serving model with its CV index: word weights from the CVs (`weighting`), CV vectors computed by
    the model's own embedding path, so queries and CVs are embedded identically."""
    model = RankingModel(tft_output, vectors, np.ones(len(vectors), np.float32), top_k)
    doc_ids = [model.token_ids(tf.constant(cv_texts[k:k + _BATCH])).numpy() for k in range(0, len(cv_texts), _BATCH)]
    doc_ids = [np.asarray(d, np.int64) for chunk in doc_ids for d in chunk]
    model.word_weights.assign(token_weights(doc_ids, len(vectors), weighting))
    raw = np.concatenate([model.raw_embedding(tf.constant(cv_texts[k:k + _BATCH])).numpy()
                          for k in range(0, len(cv_texts), _BATCH)]) if cv_texts else np.zeros((0, vectors.shape[1]))
    model.set_index(cv_ids, raw.astype(np.float32), [snippet(t) for t in cv_texts])
    return model


def snippet(text: bytes, words: int = SNIPPET_WORDS) -> bytes:
    """The first `words` words of a CV, for display."""
    parts = text.split()
    return b" ".join(parts[:words]) + (b" ..." if len(parts) > words else b"")


def _warmup_records() -> List[bytes]:
    """TF Serving warm-up requests (PredictionLog records): one `serving_default` predict request."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
    request.inputs[TEXT_KEY].CopyFrom(tf.make_tensor_proto(list(WARMUP_TEXTS), dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    return [log.SerializeToString()]


def save_model(model: RankingModel, export_dir: str) -> None:
    """Saves `model` as a SavedModel in `export_dir`, with its Transform graph copy and warm-up requests."""
    tf.saved_model.save(model, export_dir, signatures=model.signatures())
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    root = os.path.dirname(os.path.normpath(model.tft_output.transform_savedmodel_dir))
    with tarfile.open(os.path.join(export_dir, TRANSFORM_ARCHIVE), "w") as archive:
        for part in (tft.TFTransformOutput.TRANSFORM_FN_DIR, tft.TFTransformOutput.TRANSFORMED_METADATA_DIR,
                     tft.TFTransformOutput.RAW_METADATA_DIR):
            archive.add(os.path.join(root, part), arcname=part)
    with tf.io.TFRecordWriter(os.path.join(export_dir, WARMUP_FILE)) as writer:
        for record in _warmup_records():
            writer.write(record)


def _variable(reader: tf.train.CheckpointReader, name: str) -> np.ndarray:
    return reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE")


def load_for_indexing(export_dir: str, work_dir: str) -> RankingModel:
    """Rebuilds the RankingModel of a saved model (from its variables and its Transform graph copy, which
    is unpacked into `work_dir` and used from there), to give it another CV index. Raises
    FileNotFoundError when `export_dir` lacks either part."""
    archive_path = os.path.join(export_dir, TRANSFORM_ARCHIVE)
    if not os.path.isfile(archive_path):
        raise FileNotFoundError(f"{export_dir} has no Transform graph copy ({TRANSFORM_ARCHIVE}); "
                                "it was not saved by serving.model.save_model")
    transform_dir = os.path.join(work_dir, "transform_graph")
    with tarfile.open(archive_path) as archive:
        archive.extractall(transform_dir, filter="data")
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    model = RankingModel(tft.TFTransformOutput(transform_dir), _variable(reader, "word_vectors"),
                         _variable(reader, "word_weights"), int(_variable(reader, "top_k")))
    model.center.assign(_variable(reader, "center"))
    model.set_index_vectors(_variable(reader, "cv_ids"), _variable(reader, "cv_matrix"),
                            _variable(reader, "cv_snippets"))
    return model
