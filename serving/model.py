"""The serving SavedModel: raw job-description text in, the best-matching CVs out.

Every step runs in the TensorFlow graph (the Transform graph for tokenisation, then lookups, sparse and
dense matrix products), with standard ops only, so TensorFlow Serving loads the model as is. Signatures:

- `serving_default`: `text` [batch] string -> `cv_ids` [batch, k] string, `scores` [batch, k] float32,
  `snippets` [batch, k] string: the k CVs of the index with the highest served score, best first,
  with the first words of each CV (so a client can show results without a database).
- `embed`: `text` [batch] string -> `embedding` [batch, dim] float32, the L2-normalised document vector.
- `evaluate`: serialized tf.Example [batch] (a job, feature `text`) -> one score per CV of the index, in
  index order, [batch, n_cvs] float32, for each output of `evaluation.outputs`: the served ranking
  (`scores`), the embedding cosine, BM25 and TF-IDF (used by the Evaluator: full-candidate ranking, and
  the lexical baselines beside the model in every run).
- `relevance_labels`: serialized tf.Example [batch] with `judged_cv_ids` and `judged_relevance` ->
  `relevance_labels` [batch, n_cvs] float32, the graded relevance of every CV of the index (0 where
  unjudged). The Evaluator runs it as a preprocessing function to get the labels in index order.

Embedding score: the cosine of document vectors. A document vector is the weighted mean of the vectors of
the document's in-vocabulary tokens, with a per-word weight (see `token_weights`), minus the mean CV
vector (the component that all documents share), L2-normalised. A document with no in-vocabulary token
gets the zero vector and scores 0.

Lexical scores: BM25 and TF-IDF over every token of the Transform `terms` vocabulary (`serving.lexical`).

Served score (`FusionParams`, fitted on the eval jobs by `trainer.fusion`): with z(x) a job's scores
standardised over all CVs of the index (mean 0, standard deviation 1),
    first = w * z(bm25) + (1 - w) * z(embedding)
    served = z(first) + g * z(feedback)
where feedback(c) is the TF-IDF cosine of CV c with the first m CVs of `first`, weighted 0.5 ** rank
(normalised to sum 1; a CV's similarity to itself left out; 0 when `first` is constant, a query that
matches nothing): pseudo-relevance feedback, which pulls up the CVs that resemble the best first-pass
matches. w = `lexical_weight`, g = `feedback_weight`,
m = `feedback_docs`. With `hybrid` False the served score is the embedding cosine.

A saved model is self-contained: its variables hold the word vectors, the word weights, the centre,
k, the fusion parameters and the CV index (ids, vectors, snippets, term counts and the lexical weights
computed from them), and `assets.extra/transform_graph.tar` holds a copy of the Transform graph, so a new
CV index can be built from a served version alone (`serving.index`). (An archive, not a directory: TFX's
Pusher copies every `saved_model.pb` of a model last and only the top-level one, so a nested SavedModel
directory would arrive without its graph.) `assets.extra/tf_serving_warmup_requests`
holds warm-up requests in TF Serving's format, replayed by any server before the version goes live.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from evaluation import outputs
from serving import lexical
from serving.versions import WARMUP_FILE
from transform.contract import RAW_TEXT_SPEC, TERM_IDS_KEY, TERMS_VOCAB_NAME, TEXT_KEY, TOKEN_IDS_KEY, join_text

# Where a saved model keeps its copy of the Transform graph.
TRANSFORM_ARCHIVE = os.path.join("assets.extra", "transform_graph.tar")
WARMUP_TEXTS = ("software developer with python and sql experience", "")
SNIPPET_WORDS = 12

# SIF's smoothing constant; 2e-3 gave the best MAP on the bundled eval jobs among 1e-4 ... 5e-3
# (benchmarks/ranking_quality.py); Arora et al. report 1e-3 to 1e-4 works for general text.
SIF_A = 2e-3
# Weight of the r-th feedback CV (0-based rank r) relative to the first: FEEDBACK_DECAY ** r.
FEEDBACK_DECAY = 0.5
_BATCH = 512
_FINGERPRINT_BUCKETS = 2**63 - 1  # tf.strings.to_hash_bucket_fast: the 64-bit fingerprint, non-negative


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


@dataclasses.dataclass(frozen=True)
class FusionParams:
    """How the served ranking combines its parts (module docstring). `hybrid` False serves the embedding
    cosine alone."""

    hybrid: bool = False
    lexical_weight: float = 0.0
    feedback_weight: float = 0.0
    feedback_docs: int = 1


def standardise(scores: tf.Tensor) -> tf.Tensor:
    """Each row minus its mean, divided by its (population) standard deviation; a constant row gives 0."""
    mean = tf.reduce_mean(scores, axis=1, keepdims=True)
    std = tf.math.reduce_std(scores, axis=1, keepdims=True)
    return tf.where(std > 0, (scores - mean) / tf.where(std > 0, std, 1.0), tf.zeros_like(scores))


class RankingModel(tf.Module):
    """Tokenises with the Transform graph, embeds, scores lexically and ranks against a CV index held in
    variables."""

    def __init__(self, tft_output: tft.TFTransformOutput, word_vectors: np.ndarray, weights: np.ndarray,
                 top_k: int):
        super().__init__()
        self.tft_output = tft_output
        self.tft_layer = tft_output.transform_features_layer()
        self._text_is_sparse = isinstance(tft_output.raw_feature_spec()[TEXT_KEY], tf.io.VarLenFeature)
        self.n_terms = tft_output.vocabulary_size_by_name(TERMS_VOCAB_NAME)
        self.word_vectors = tf.Variable(word_vectors.astype(np.float32), trainable=False, name="word_vectors")
        self.word_weights = tf.Variable(weights.astype(np.float32), trainable=False, name="word_weights")
        self.top_k = tf.Variable(int(top_k), dtype=tf.int32, trainable=False, name="top_k")
        dim = word_vectors.shape[1]
        self.center = tf.Variable(tf.zeros([dim]), trainable=False, name="center")
        self.cv_ids = tf.Variable(tf.constant([], tf.string), shape=[None], trainable=False, name="cv_ids")
        self.cv_matrix = tf.Variable(tf.zeros([0, dim]), shape=[None, dim], trainable=False, name="cv_matrix")
        self.cv_snippets = tf.Variable(tf.constant([], tf.string), shape=[None], trainable=False, name="cv_snippets")

        def ints(name, shape=(None,)):
            initial = tf.zeros([0 if d is None else d for d in shape], tf.int64)
            return tf.Variable(initial, shape=list(shape), trainable=False, name=name)

        def floats(name):
            return tf.Variable(tf.zeros([0], tf.float32), shape=[None], trainable=False, name=name)

        # Each CV's term counts (serving.lexical.TermCounts), kept so that a new index can be built.
        self.cv_term_splits = tf.Variable(tf.zeros([1], tf.int64), shape=[None], trainable=False,
                                          name="cv_term_splits")
        self.cv_terms = ints("cv_terms")
        self.cv_term_counts = floats("cv_term_counts")
        # serving.lexical.LexicalIndex.
        self.term_column = ints("term_column")
        self.idf = floats("idf")
        self.lexical_indices = ints("lexical_indices", (None, 2))
        self.bm25_values = floats("bm25_values")
        self.tfidf_values = floats("tfidf_values")
        # FusionParams.
        self.hybrid = tf.Variable(False, trainable=False, name="hybrid")
        self.lexical_weight = tf.Variable(0.0, trainable=False, name="lexical_weight")
        self.feedback_weight = tf.Variable(0.0, trainable=False, name="feedback_weight")
        self.feedback_docs = tf.Variable(1, dtype=tf.int32, trainable=False, name="feedback_docs")

    # -- building blocks -------------------------------------------------------------------------
    def _transform(self, text: tf.Tensor):
        """(token ids, term ids) of each text, both [batch, None] int64 ragged, out-of-vocabulary dropped."""
        text = tf.reshape(text, [-1])
        if self._text_is_sparse:
            n = tf.shape(text, out_type=tf.int64)[0]
            indices = tf.stack([tf.range(n), tf.zeros([n], tf.int64)], axis=1)
            raw = tf.SparseTensor(indices=indices, values=text, dense_shape=tf.stack([n, 1]))
        else:
            raw = tf.expand_dims(text, 1)
        outputs = self.tft_layer({TEXT_KEY: raw})
        result = []
        for key in (TOKEN_IDS_KEY, TERM_IDS_KEY):
            ids = outputs[key]
            if isinstance(ids, tf.SparseTensor):
                ids = tf.RaggedTensor.from_sparse(ids)
            elif not isinstance(ids, tf.RaggedTensor):
                ids = tf.RaggedTensor.from_tensor(ids, padding=-1)
            result.append(tf.ragged.boolean_mask(ids, ids >= 0))
        return tuple(result)

    def token_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """In-vocabulary token ids of each text, [batch, None] int64 (out-of-vocabulary tokens dropped)."""
        return self._transform(text)[0]

    def term_ids(self, text: tf.Tensor) -> tf.RaggedTensor:
        """Term ids (vocabulary `terms`) of each text, [batch, None] int64."""
        return self._transform(text)[1]

    def _embedding(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """Weighted mean word vector [batch, dim] of token ids, before centering."""
        vecs = tf.gather(self.word_vectors, ids)            # [batch, None, dim]
        w = tf.gather(self.word_weights, ids)               # [batch, None]
        total = tf.reduce_sum(vecs * tf.expand_dims(w, -1), axis=1)
        norm = tf.maximum(tf.reduce_sum(w, axis=1, keepdims=True), 1e-12)
        return (total / norm).to_tensor() if isinstance(total, tf.RaggedTensor) else total / norm

    def raw_embedding(self, text: tf.Tensor) -> tf.Tensor:
        """Weighted mean word vector [batch, dim], before centering."""
        return self._embedding(self.token_ids(text))

    def _normalise(self, raw: tf.Tensor) -> tf.Tensor:
        has_tokens = tf.reduce_any(tf.not_equal(raw, 0.0), axis=1, keepdims=True)
        centred = tf.where(has_tokens, raw - self.center, tf.zeros_like(raw))
        return tf.math.l2_normalize(centred, axis=1)

    def _n_columns(self) -> tf.Tensor:
        return tf.shape(self.idf, out_type=tf.int64)[0]

    def _cv_by_column(self, values: tf.Tensor) -> tf.SparseTensor:
        shape = tf.stack([tf.shape(self.cv_ids, out_type=tf.int64)[0], self._n_columns()])
        return tf.SparseTensor(self.lexical_indices, values, shape)

    def _query_counts(self, term_ids: tf.RaggedTensor) -> tf.Tensor:
        """Each query's count of every index column, [batch, n_columns] float32 (terms in no CV dropped)."""
        cols = tf.gather(self.term_column, term_ids)
        cols = tf.ragged.boolean_mask(cols, cols >= 0)
        batch = cols.nrows()
        n_cols = self._n_columns()
        flat = cols.value_rowids() * n_cols + cols.flat_values
        counts = tf.math.unsorted_segment_sum(tf.ones_like(flat, tf.float32), flat, batch * n_cols)
        return tf.reshape(counts, tf.stack([batch, n_cols]))

    def _times_cvs(self, values: tf.Tensor, queries: tf.Tensor) -> tf.Tensor:
        """[batch, n_cvs]: each query row (over columns) times each CV row of the sparse matrix `values`."""
        return tf.transpose(tf.sparse.sparse_dense_matmul(self._cv_by_column(values), queries, adjoint_b=True))

    def _bm25(self, counts: tf.Tensor) -> tf.Tensor:
        return self._times_cvs(self.bm25_values, counts)

    def _tfidf(self, counts: tf.Tensor) -> tf.Tensor:
        weights = tf.where(counts > 0, 1.0 + tf.math.log(tf.maximum(counts, 1.0)), 0.0) * self.idf
        return self._times_cvs(self.tfidf_values, tf.math.l2_normalize(weights, axis=1))

    def _feedback(self, first: tf.Tensor) -> tf.Tensor:
        """[batch, n_cvs]: TF-IDF cosine of every CV with the first `feedback_docs` CVs of `first`,
        weighted FEEDBACK_DECAY ** rank (normalised to sum 1); a CV's similarity to itself is left out."""
        n_cvs = tf.shape(self.cv_ids)[0]
        k = tf.minimum(self.feedback_docs, n_cvs)
        top = tf.math.top_k(first, k=k, sorted=True).indices                     # [batch, k]
        batch = tf.shape(top, out_type=tf.int64)[0]
        decay = tf.pow(tf.constant(FEEDBACK_DECAY, tf.float32), tf.cast(tf.range(k), tf.float32))
        decay = decay / tf.reduce_sum(decay)
        top_flat = tf.cast(tf.reshape(top, [-1]), tf.int64)                       # [batch * k]
        # A CV's entries in the lexical matrices are its term-count entries (same CSR rows).
        starts = tf.gather(self.cv_term_splits, top_flat)
        positions = tf.ragged.range(starts, tf.gather(self.cv_term_splits, top_flat + 1))
        owner = positions.value_rowids()                                         # which (job, rank) pair
        cols = tf.gather(self.lexical_indices[:, 1], positions.flat_values)
        vals = tf.gather(self.tfidf_values, positions.flat_values)
        k64 = tf.cast(k, tf.int64)
        weight = tf.gather(decay, owner % k64)
        n_cols = self._n_columns()
        flat = (owner // k64) * n_cols + cols
        queries = tf.reshape(tf.math.unsorted_segment_sum(vals * weight, flat, batch * n_cols),
                             tf.stack([batch, n_cols]))
        feedback = self._times_cvs(self.tfidf_values, queries)
        self_similarity = tf.math.unsorted_segment_sum(vals * vals, owner, batch * k64) * tf.tile(decay, [batch])
        rows = tf.repeat(tf.range(batch), tf.fill([batch], k64))
        return tf.tensor_scatter_nd_sub(feedback, tf.stack([rows, top_flat], axis=1), self_similarity)

    def _served(self, embedding: tf.Tensor, bm25: tf.Tensor) -> tf.Tensor:
        """The served score from the embedding and BM25 scores (module docstring)."""
        w = self.lexical_weight
        first = w * standardise(bm25) + (1.0 - w) * standardise(embedding)
        # A query that matches nothing (a constant first pass) gets no feedback either: all zero.
        matched = tf.cast(tf.math.reduce_std(first, axis=1, keepdims=True) > 0, tf.float32)
        return standardise(first) + self.feedback_weight * matched * standardise(self._feedback(first))

    def _embedding_scores(self, token_ids: tf.RaggedTensor) -> tf.Tensor:
        return tf.matmul(self._normalise(self._embedding(token_ids)), self.cv_matrix, transpose_b=True)

    def _score(self, text: tf.Tensor) -> dict:
        """Every output of `evaluate` (evaluation.outputs) for a batch of texts."""
        token_ids, term_ids = self._transform(text)
        embedding = self._embedding_scores(token_ids)
        counts = self._query_counts(term_ids)
        bm25 = self._bm25(counts)
        served = tf.cond(self.hybrid, lambda: self._served(embedding, bm25), lambda: embedding)
        return {outputs.SERVED: served, outputs.EMBEDDING: embedding, outputs.BM25: bm25,
                outputs.TFIDF: self._tfidf(counts)}

    def _served_only(self, text: tf.Tensor) -> tf.Tensor:
        """The served score alone: the lexical part is computed only when the ranking is hybrid."""
        token_ids, term_ids = self._transform(text)
        embedding = self._embedding_scores(token_ids)
        return tf.cond(self.hybrid, lambda: self._served(embedding, self._bm25(self._query_counts(term_ids))),
                       lambda: embedding)

    # -- the index -------------------------------------------------------------------------------
    def index_texts(self, texts: Sequence[bytes]) -> Tuple[np.ndarray, lexical.TermCounts]:
        """The index entries of `texts` under this model: (raw, uncentred document vectors [n, dim] from
        the word vectors and weights, term counts)."""
        raw, terms = [], []
        for k in range(0, len(texts), _BATCH):
            token_ids, term_ids = self._transform(tf.constant(list(texts[k:k + _BATCH])))
            raw.append(self._embedding(token_ids).numpy())
            terms += [np.asarray(t, np.int64) for t in term_ids.numpy()]
        dim = int(self.cv_matrix.shape[1])
        return (np.concatenate(raw) if raw else np.zeros((0, dim), np.float32)), lexical.TermCounts.from_token_ids(terms)

    def final_vectors(self, raw: np.ndarray) -> np.ndarray:
        """Raw document vectors [n, dim] (from `index_texts`) centred and normalised as `embed` does."""
        return self._normalise(tf.constant(raw, tf.float32)).numpy()

    def set_index(self, cv_ids: np.ndarray, cv_texts: Sequence[bytes]) -> None:
        """Indexes the CVs `cv_ids` with texts `cv_texts`: the centre becomes their mean document vector."""
        raw, counts = self.index_texts(cv_texts)
        if len(raw):
            self.center.assign(raw.mean(axis=0))
        self.set_index_parts(cv_ids, self.final_vectors(raw), [snippet(t) for t in cv_texts], counts)

    def set_index_parts(self, cv_ids: np.ndarray, cv_vectors: np.ndarray, snippets: Sequence[bytes],
                        counts: lexical.TermCounts) -> None:
        """Sets the CV index to ids [n], their final (centred, normalised) vectors [n, dim], snippets [n]
        and term counts (n rows); the lexical weights are computed from the counts of all n CVs."""
        if not len(cv_ids) == len(cv_vectors) == len(snippets) == counts.n_rows:
            raise ValueError(f"index parts differ in length: {len(cv_ids)} ids, {len(cv_vectors)} vectors, "
                             f"{len(snippets)} snippets, {counts.n_rows} term rows")
        self.cv_ids.assign(np.asarray(cv_ids, dtype=object).reshape([-1]))
        self.cv_matrix.assign(np.asarray(cv_vectors, np.float32).reshape([-1, self.cv_matrix.shape[1]]))
        self.cv_snippets.assign(np.asarray(list(snippets), dtype=object).reshape([-1]))
        self.cv_term_splits.assign(counts.row_splits)
        self.cv_terms.assign(counts.terms)
        self.cv_term_counts.assign(counts.counts)
        index = lexical.build_lexical_index(counts, self.n_terms)
        self.term_column.assign(index.term_column)
        self.idf.assign(index.idf)
        self.lexical_indices.assign(index.indices.reshape([-1, 2]))
        self.bm25_values.assign(index.bm25_values)
        self.tfidf_values.assign(index.tfidf_values)

    def index_parts(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, lexical.TermCounts]:
        """The current index: (ids, final vectors, snippets, term counts)."""
        counts = lexical.TermCounts(self.cv_term_splits.numpy(), self.cv_terms.numpy(), self.cv_term_counts.numpy())
        return self.cv_ids.numpy(), self.cv_matrix.numpy(), self.cv_snippets.numpy(), counts

    def lexical_index(self) -> lexical.LexicalIndex:
        """The lexical index as held in the variables."""
        return lexical.LexicalIndex(self.term_column.numpy(), self.idf.numpy(), self.lexical_indices.numpy(),
                                    self.bm25_values.numpy(), self.tfidf_values.numpy())

    def set_fusion(self, params: FusionParams) -> None:
        """Sets how the served ranking is made (FusionParams)."""
        self.hybrid.assign(bool(params.hybrid))
        self.lexical_weight.assign(float(params.lexical_weight))
        self.feedback_weight.assign(float(params.feedback_weight))
        self.feedback_docs.assign(int(params.feedback_docs))

    def fusion(self) -> FusionParams:
        return FusionParams(bool(self.hybrid.numpy()), float(self.lexical_weight.numpy()),
                            float(self.feedback_weight.numpy()), int(self.feedback_docs.numpy()))

    def embed_texts(self, texts: Sequence[bytes]) -> np.ndarray:
        """The final document vectors [n, dim] of `texts`, in batches (what `embed` returns)."""
        dim = int(self.cv_matrix.shape[1])
        parts = [self.embed(tf.constant(list(texts[k:k + _BATCH])))["embedding"].numpy()
                 for k in range(0, len(texts), _BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

    def score_examples(self, serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
        """`evaluate` on serialized job examples, in batches: {output: [n_jobs, n_cvs] float32}."""
        parts = [self.evaluate(tf.constant(list(serialized[k:k + _BATCH]))) for k in range(0, len(serialized), _BATCH)]
        n_cvs = int(tf.shape(self.cv_ids)[0])
        return {name: (np.concatenate([p[name].numpy() for p in parts]) if parts else np.zeros((0, n_cvs), np.float32))
                for name in outputs.VARIANTS}

    def labels_of_examples(self, serialized: Sequence[bytes]) -> np.ndarray:
        """`relevance_labels` on serialized job examples: [n_jobs, n_cvs] float32, in index order."""
        parts = [self.relevance_labels(tf.constant(list(serialized[k:k + _BATCH])))["relevance_labels"].numpy()
                 for k in range(0, len(serialized), _BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, int(tf.shape(self.cv_ids)[0])), np.float32)

    # -- signatures ------------------------------------------------------------------------------
    def embed(self, text):
        return {"embedding": self._normalise(self.raw_embedding(text))}

    def serve(self, text):
        scores = self._served_only(text)
        k = tf.minimum(self.top_k, tf.shape(self.cv_ids)[0])
        top = tf.math.top_k(scores, k=k, sorted=True)
        return {"cv_ids": tf.gather(self.cv_ids, top.indices), "scores": top.values,
                "snippets": tf.gather(self.cv_snippets, top.indices)}

    def evaluate(self, examples):
        text = join_text(tf.io.parse_example(examples, RAW_TEXT_SPEC)[TEXT_KEY])
        return self._score(text)

    def relevance_labels(self, examples):
        parsed = tf.io.parse_example(examples, {
            "judged_cv_ids": tf.io.VarLenFeature(tf.string),
            "judged_relevance": tf.io.VarLenFeature(tf.int64),
        })
        ids = tf.sparse.reorder(parsed["judged_cv_ids"])
        rel = tf.sparse.reorder(parsed["judged_relevance"])
        cols, known = _index_columns(self.cv_ids, ids.values)
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


def _index_columns(index_ids: tf.Tensor, ids: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """The column of each of `ids` in `index_ids` (int64; meaningless where not found) and whether it was
    found (bool). Found from the index at call time, so the index can be replaced without rebuilding a
    lookup table: a binary search among the index's sorted 64-bit fingerprints, then an exact comparison
    of the ids, O((ids + index) log index) where comparing every id with every index entry grew with
    their product (judged CVs per job times CVs)."""
    n = tf.shape(index_ids, out_type=tf.int64)[0]
    keys = tf.strings.to_hash_bucket_fast(index_ids, _FINGERPRINT_BUCKETS)
    order = tf.argsort(keys, stable=True)
    positions = tf.searchsorted(tf.gather(keys, order), tf.strings.to_hash_bucket_fast(ids, _FINGERPRINT_BUCKETS),
                                side="left", out_type=tf.int64)  # n: after every fingerprint
    # Position n maps to column n, an empty id past the index's end that no judged id equals.
    cols = tf.gather(tf.concat([tf.cast(order, tf.int64), tf.reshape(n, [1])], 0), positions)
    known = tf.equal(tf.gather(tf.concat([index_ids, [""]], 0), cols), ids) & tf.less(cols, n)
    return cols, known


def build_model(tft_output: tft.TFTransformOutput, vectors: np.ndarray, cv_ids: np.ndarray,
                cv_texts: List[bytes], weighting: str, top_k: int) -> RankingModel:
    """The serving model with its CV index: word weights from the CVs (`weighting`), CV vectors and term
    counts computed by the model's own Transform and embedding path, so queries and CVs are processed
    identically. The served ranking is the embedding cosine until `set_fusion` says otherwise."""
    model = RankingModel(tft_output, vectors, np.ones(len(vectors), np.float32), top_k)
    doc_ids = [model.token_ids(tf.constant(cv_texts[k:k + _BATCH])).numpy() for k in range(0, len(cv_texts), _BATCH)]
    doc_ids = [np.asarray(d, np.int64) for chunk in doc_ids for d in chunk]
    model.word_weights.assign(token_weights(doc_ids, len(vectors), weighting))
    model.set_index(cv_ids, cv_texts)
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


def _checkpoint(export_dir: str) -> tf.train.CheckpointReader:
    return tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))


def read_ranking_variables(export_dir: str, reader: Optional[tf.train.CheckpointReader] = None
                           ) -> Tuple[FusionParams, lexical.TermCounts]:
    """A saved model's fusion parameters and its CVs' term counts, read from its variables (through
    `reader` when given). Raises ValueError when it was saved without them (an older model)."""
    reader = reader or _checkpoint(export_dir)
    if not reader.has_tensor("cv_term_splits/.ATTRIBUTES/VARIABLE_VALUE"):
        raise ValueError(f"{export_dir} has no lexical index (saved by an older cvrank); run the pipeline "
                         "to push a current model first")
    params = FusionParams(bool(_variable(reader, "hybrid")), float(_variable(reader, "lexical_weight")),
                          float(_variable(reader, "feedback_weight")), int(_variable(reader, "feedback_docs")))
    counts = lexical.TermCounts(_variable(reader, "cv_term_splits"), _variable(reader, "cv_terms"),
                                _variable(reader, "cv_term_counts"))
    return params, counts


def load_for_indexing(export_dir: str, work_dir: str) -> RankingModel:
    """Rebuilds the RankingModel of a saved model (from its variables and its Transform graph copy, which
    is unpacked into `work_dir` and used from there), to give it another CV index. Raises
    FileNotFoundError when `export_dir` lacks either part, ValueError when it was saved without the
    lexical index (an older model: its CVs cannot be re-weighted)."""
    archive_path = os.path.join(export_dir, TRANSFORM_ARCHIVE)
    if not os.path.isfile(archive_path):
        raise FileNotFoundError(f"{export_dir} has no Transform graph copy ({TRANSFORM_ARCHIVE}); "
                                "it was not saved by serving.model.save_model")
    transform_dir = os.path.join(work_dir, "transform_graph")
    with tarfile.open(archive_path) as archive:
        archive.extractall(transform_dir, filter="data")
    reader = _checkpoint(export_dir)
    params, counts = read_ranking_variables(export_dir, reader)
    model = RankingModel(tft.TFTransformOutput(transform_dir), _variable(reader, "word_vectors"),
                         _variable(reader, "word_weights"), int(_variable(reader, "top_k")))
    model.center.assign(_variable(reader, "center"))
    model.set_index_parts(_variable(reader, "cv_ids"), _variable(reader, "cv_matrix"),
                          _variable(reader, "cv_snippets"), counts)
    model.set_fusion(params)
    return model
