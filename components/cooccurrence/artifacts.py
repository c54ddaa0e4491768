"""The `CooccurrenceMatrix` artifact type (format: docs/architecture.md, io.py)."""

from tfx.types.artifact import Artifact, Property, PropertyType

VOCAB_SIZE = 'vocab_size'
NONZEROS = 'nonzeros'
TOTAL_WEIGHT = 'total_weight'
WINDOW_SIZE = 'window_size'
SYMMETRIC = 'symmetric'
DISTANCE_WEIGHTING = 'distance_weighting'


class CooccurrenceMatrix(Artifact):
  """A sparse word-word co-occurrence matrix in `matrix/part-*.tfrecord.gz` shards.

  Properties: `vocab_size` (matrix dimension), `nonzeros` (cells stored), `total_weight` (sum of
  all cells), `window_size`, `symmetric` and `distance_weighting` (0 or 1) as counted.
  """

  TYPE_NAME = 'CooccurrenceMatrix'
  PROPERTIES = {
      VOCAB_SIZE: Property(type=PropertyType.INT),
      NONZEROS: Property(type=PropertyType.INT),
      TOTAL_WEIGHT: Property(type=PropertyType.FLOAT),
      WINDOW_SIZE: Property(type=PropertyType.INT),
      SYMMETRIC: Property(type=PropertyType.INT),
      DISTANCE_WEIGHTING: Property(type=PropertyType.INT),
  }
