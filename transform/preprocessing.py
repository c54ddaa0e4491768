"""The tf.Transform `preprocessing_fn` of cvrank's Transform component.

Input: the raw string feature `text`, one document per example, as a dense Tensor of shape [batch]
or [batch, 1] (FixedLenFeature), a SparseTensor of shape [batch, None] (VarLenFeature, what a
schema without a fixed shape gives) or a RaggedTensor [batch, None]. When an example holds several
values they are joined with a space; an example with no value is an empty document.

Output (the contract is transform/contract.py; see docs/architecture.md, "Transform output"):
- `token_ids`: int64 SparseTensor of shape [batch, None], a variable-length feature holding the ids
  of the document's tokens (`transform.tokenizer.tokenize`) in order, looked up in the vocabulary
  named `vocab` (`tft.TFTransformOutput.vocabulary_file_by_name("vocab")`); `-1` for tokens not in
  the vocabulary. Row i of the vocabulary file is the token with id i; TFT orders it by descending
  frequency.
- `term_ids`: the same tokens through the vocabulary named `terms`, which keeps every token (no
  frequency threshold, no size limit): the serving model's lexical scores (BM25, TF-IDF) use it, so
  rare terms that the word vectors leave out still match.

Vocabulary parameters come from the Transform component's `custom_config` (TFX binds it because
`preprocessing_fn` has a `custom_config` parameter):
- `vocab_min_count` (int >= 1, default `PipelineConfig.vocab_min_count`): tokens seen fewer times in the analysed data are left
  out (TFT `frequency_threshold`, counting every occurrence, not documents).
- `vocab_max_size` (int >= 1, or None / absent = unlimited): keep only the most frequent
  tokens (TFT `top_k`), applied after the min count.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import tensorflow_transform as tft

from config import default
from transform.contract import (OOV_ID, TERM_IDS_KEY, TERMS_VOCAB_NAME, TEXT_KEY, TOKEN_IDS_KEY, VOCAB_NAME,
                                join_text)
from transform.tokenizer import tokenize

VOCAB_MIN_COUNT_KEY = "vocab_min_count"
VOCAB_MAX_SIZE_KEY = "vocab_max_size"


def vocab_params(custom_config: Optional[Mapping[str, Any]]) -> tuple[int, Optional[int]]:
    """Returns (min_count, max_size) from a Transform custom_config, with defaults filled in.

    Raises:
        ValueError: on an unknown `vocab_*` key or a value that is not a positive integer
            (`vocab_max_size` may also be None).
    """
    config = dict(custom_config or {})
    unknown = sorted(k for k in config if k.startswith("vocab_")
                     and k not in (VOCAB_MIN_COUNT_KEY, VOCAB_MAX_SIZE_KEY))
    if unknown:
        raise ValueError(f"unknown vocabulary setting(s) in custom_config: {unknown}")

    def positive_int(key, value):
        # bool is an int subclass; a JSON round trip may turn 5 into 5.0.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"custom_config[{key!r}] must be a positive integer, got {value!r}")
        return value

    min_count = positive_int(VOCAB_MIN_COUNT_KEY,
                             config.get(VOCAB_MIN_COUNT_KEY, default("vocab_min_count")))
    max_size = config.get(VOCAB_MAX_SIZE_KEY)
    if max_size is not None:
        max_size = positive_int(VOCAB_MAX_SIZE_KEY, max_size)
    return min_count, max_size


def preprocessing_fn(inputs: Mapping[str, Any],
                     custom_config: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Maps raw `text` to `token_ids` (vocabulary `vocab`) and `term_ids` (vocabulary `terms`); see the module docstring.

    Features other than `text` are ignored and not passed through.
    """
    min_count, max_size = vocab_params(custom_config)
    tokens = tokenize(join_text(inputs[TEXT_KEY]))
    token_ids = tft.compute_and_apply_vocabulary(
        tokens,
        default_value=OOV_ID,
        top_k=max_size,
        frequency_threshold=min_count,
        vocab_filename=VOCAB_NAME,
    )
    term_ids = tft.compute_and_apply_vocabulary(tokens, default_value=OOV_ID, vocab_filename=TERMS_VOCAB_NAME)
    # A SparseTensor output is a plain VarLenFeature in the transformed schema and tf.Examples.
    return {TOKEN_IDS_KEY: token_ids.to_sparse(), TERM_IDS_KEY: term_ids.to_sparse()}
