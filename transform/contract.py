"""The Transform contract: what the pipeline, the serving model, the tests and the benchmarks agree on
about Transform's input and output. Kept free of tf.Transform so readers of the contract need only
TensorFlow.

- Input: the raw string feature `text` (one document per example; several values are joined with a
  space, no value is an empty document); CV examples also carry `cv_id`.
- Output: `token_ids`, the ids of the document's tokens in order, through the vocabulary named `vocab`
  (`tft.TFTransformOutput.vocabulary_file_by_name(VOCAB_NAME)`), OOV_ID for tokens outside it; and
  `term_ids`, the same tokens through the vocabulary named `terms`, which holds every token of the
  analysed data (no frequency cut: the lexical scores need rare terms).
"""

from __future__ import annotations

import tensorflow as tf

TEXT_KEY = "text"
CV_ID_KEY = "cv_id"
TOKEN_IDS_KEY = "token_ids"
VOCAB_NAME = "vocab"
TERM_IDS_KEY = "term_ids"
TERMS_VOCAB_NAME = "terms"
OOV_ID = -1
TEXT_SEPARATOR = " "

# How tf.Examples holding raw text are parsed outside Transform (the schema gives no fixed shape).
RAW_TEXT_SPEC = {TEXT_KEY: tf.io.VarLenFeature(tf.string)}


def join_text(text) -> tf.Tensor:
    """The raw `text` feature as one string per example, shape [batch]: a SparseTensor or RaggedTensor
    [batch, None] or a dense [batch, n] has its values joined with TEXT_SEPARATOR; a dense [batch] is
    returned as is. Raises ValueError on any other shape."""
    if isinstance(text, tf.SparseTensor):
        text = tf.RaggedTensor.from_sparse(text)
    if isinstance(text, tf.RaggedTensor):
        return tf.strings.reduce_join(text, axis=1, separator=TEXT_SEPARATOR)
    text = tf.convert_to_tensor(text)
    if text.shape.rank == 1:
        return text
    if text.shape.rank == 2:
        return tf.strings.reduce_join(text, axis=1, separator=TEXT_SEPARATOR)
    raise ValueError(f"feature {TEXT_KEY!r} must have shape [batch] or [batch, n], got {text.shape}")
