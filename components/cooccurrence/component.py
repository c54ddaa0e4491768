"""CooccurrenceGen: a TFX component building GloVe's word-word co-occurrence matrix with Beam."""

from typing import List, Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.utils import json_utils

from components.cooccurrence import executor
from components.cooccurrence.artifacts import CooccurrenceMatrix
from components.cooccurrence.spec import DEFAULT_NUM_SHARDS, DEFAULT_TOKEN_FEATURE, CooccurrenceGenSpec
from config import default


class CooccurrenceGen(base_beam_component.BaseBeamComponent):
  """Counts word-word co-occurrences of Transform's `token_ids` the way GloVe's cooccur.c does.

  ## Example
  ```
  cooccurrence_gen = CooccurrenceGen(
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      window_size=10)
  ```

  Component `outputs` contains:
   - `cooccurrence`: a `CooccurrenceMatrix` artifact (format: docs/architecture.md).
  """

  SPEC_CLASS = CooccurrenceGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self,
               examples: types.BaseChannel,
               transform_graph: types.BaseChannel,
               window_size: int = default('window_size'),
               symmetric: bool = default('symmetric'),
               distance_weighting: bool = default('distance_weighting'),
               splits: Optional[List[str]] = None,
               token_feature: str = DEFAULT_TOKEN_FEATURE,
               num_shards: int = DEFAULT_NUM_SHARDS):
    """Constructs a CooccurrenceGen component.

    Args:
      examples: transformed Examples with a variable-length int64 feature `token_feature`
        (vocabulary ids in document order, -1 for out-of-vocabulary tokens).
      transform_graph: the TransformGraph holding the vocabulary named `vocab`; its size is the
        matrix dimension.
      window_size: context window; pairs at distance 1..window_size are counted.
      symmetric: count each pair both ways (else left context only, as cooccur.c does).
      distance_weighting: a pair at distance d adds 1/d (else 1).
      splits: names of the splits to read; None reads all splits of `examples`.
      token_feature: name of the token id feature.
      num_shards: number of output files; each shard's matrix is merged in one worker's memory.
    """
    if window_size < 1:
      raise ValueError(f'window_size must be >= 1, got {window_size}')
    if num_shards < 1:
      raise ValueError(f'num_shards must be >= 1, got {num_shards}')
    if splits is not None and not splits:
      raise ValueError('splits must be None (all splits) or a non-empty list')
    spec = CooccurrenceGenSpec(
        examples=examples,
        transform_graph=transform_graph,
        window_size=window_size,
        symmetric=int(bool(symmetric)),
        distance_weighting=int(bool(distance_weighting)),
        splits=json_utils.dumps(list(splits)) if splits is not None else None,
        token_feature=token_feature,
        num_shards=num_shards,
        cooccurrence=types.Channel(type=CooccurrenceMatrix))
    super().__init__(spec=spec)
