"""CooccurrenceGen's ComponentSpec and its input, output and parameter names."""

from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.cooccurrence.artifacts import CooccurrenceMatrix
from transform.contract import TOKEN_IDS_KEY

EXAMPLES_KEY = 'examples'
TRANSFORM_GRAPH_KEY = 'transform_graph'
COOCCURRENCE_KEY = 'cooccurrence'
WINDOW_SIZE_KEY = 'window_size'
SYMMETRIC_KEY = 'symmetric'
DISTANCE_WEIGHTING_KEY = 'distance_weighting'
SPLITS_KEY = 'splits'
TOKEN_FEATURE_KEY = 'token_feature'
NUM_SHARDS_KEY = 'num_shards'

DEFAULT_TOKEN_FEATURE = TOKEN_IDS_KEY
DEFAULT_NUM_SHARDS = 8


class CooccurrenceGenSpec(ComponentSpec):
  """CooccurrenceGen component spec.

  Booleans are int parameters (0/1) so that they survive every orchestrator's IR unchanged;
  `splits` is a JSON list of split names (null: all splits of `examples`).
  """

  PARAMETERS = {
      WINDOW_SIZE_KEY: ExecutionParameter(type=int),
      SYMMETRIC_KEY: ExecutionParameter(type=int),
      DISTANCE_WEIGHTING_KEY: ExecutionParameter(type=int),
      SPLITS_KEY: ExecutionParameter(type=str, optional=True),
      TOKEN_FEATURE_KEY: ExecutionParameter(type=str),
      NUM_SHARDS_KEY: ExecutionParameter(type=int),
  }
  INPUTS = {
      EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
  }
  OUTPUTS = {
      COOCCURRENCE_KEY: ChannelParameter(type=CooccurrenceMatrix),
  }
