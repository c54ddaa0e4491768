"""CooccurrenceGen executor: reads the token ids and runs `BuildCooccurrenceMatrix` on Beam.

Runner options (DirectRunner multi-processing, Flink, Spark, Dataflow) come from the component's
`beam_pipeline_args` through `BaseBeamExecutor._make_beam_pipeline`. The driver only reads the
vocabulary size and, afterwards, one small stats file per shard, from which it sets the output
artifact's properties.
"""

import os
from typing import Any, Dict, List

from absl import logging
import tensorflow_transform as tft
from tfx import types
from tfx.components.util import examples_utils
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import json_utils

import apache_beam as beam

from components.cooccurrence import io as cio
from components.cooccurrence import spec
from components.cooccurrence import transforms
from transform.contract import VOCAB_NAME

# Documents per Arrow RecordBatch read; CountFn re-batches by token count.
READ_BATCH_SIZE = 1000
# TFX's names for GZIP TFRecord files (the default, and the FileFormat enum name).
_TFRECORDS_GZIP = ('tfrecords_gzip', 'FORMAT_TFRECORDS_GZIP')
# Stats and shard files being written; removed once the pipeline has finished.
_STAGING_DIR = '_staging'
_TELEMETRY_DESCRIPTORS = ['CooccurrenceGen']


def vocabulary_size(transform_graph_uri: str, name: str = VOCAB_NAME) -> int:
  """Size of the vocabulary `name` of a Transform output."""
  return int(tft.TFTransformOutput(transform_graph_uri).vocabulary_size_by_name(name))


def read_token_batches(pipeline: beam.Pipeline, examples: types.Artifact, split: str,
                       feature: str) -> beam.PCollection:
  """Reads one split as Arrow RecordBatches holding only `feature`.

  tf.Examples in TFRecord files (what Transform writes) are read by `ReadTokenBatches`, whose
  workers need no TensorFlow; any other payload or file format goes through TFXIO.
  """
  payload_format = examples_utils.get_payload_format(examples)
  file_format = examples_utils.get_file_format(examples)
  if (payload_format == example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE
      and file_format in _TFRECORDS_GZIP):
    return pipeline | f'Read[{split}]' >> transforms.ReadTokenBatches(
        examples_utils.get_split_file_patterns([examples], split), feature, READ_BATCH_SIZE)
  tfxio = tfxio_utils.get_split_tfxio(
      examples=[examples], split=split, telemetry_descriptors=_TELEMETRY_DESCRIPTORS,
      schema=transforms.token_schema(feature))
  return pipeline | f'Read[{split}]' >> tfxio.BeamSource(batch_size=READ_BATCH_SIZE)


def _split_names(examples: types.Artifact) -> List[str]:
  if examples.has_custom_property(examples_utils.CUSTOM_SPLIT_PATTERN_PROPERTY_NAME):
    return list(json_utils.loads(examples.get_string_custom_property(
        examples_utils.CUSTOM_SPLIT_PATTERN_PROPERTY_NAME)))
  return artifact_utils.decode_split_names(examples.split_names)


class Executor(base_beam_executor.BaseBeamExecutor):
  """Builds the co-occurrence matrix of the examples' token ids."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Counts co-occurrences and writes a `CooccurrenceMatrix`.

    Args:
      input_dict: `examples` (Examples with the token feature), `transform_graph`
        (TransformGraph with the vocabulary `vocab`).
      output_dict: `cooccurrence` (CooccurrenceMatrix).
      exec_properties: window_size, symmetric, distance_weighting, splits (JSON list or None:
        all), token_feature, num_shards; see component.CooccurrenceGen.
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
    output = artifact_utils.get_single_instance(output_dict[spec.COOCCURRENCE_KEY])
    window = int(exec_properties[spec.WINDOW_SIZE_KEY])
    symmetric = bool(int(exec_properties[spec.SYMMETRIC_KEY]))
    distance_weighting = bool(int(exec_properties[spec.DISTANCE_WEIGHTING_KEY]))
    feature = exec_properties[spec.TOKEN_FEATURE_KEY]
    num_shards = int(exec_properties[spec.NUM_SHARDS_KEY])

    available = _split_names(examples)
    requested = json_utils.loads(exec_properties.get(spec.SPLITS_KEY) or 'null')
    splits = available if requested is None else list(dict.fromkeys(requested))
    unknown = sorted(set(splits) - set(available))
    if unknown or not splits:
      raise ValueError(f'splits {splits} not all in the examples\' splits {available}')

    vocab_size = vocabulary_size(
        artifact_utils.get_single_uri(input_dict[spec.TRANSFORM_GRAPH_KEY]))
    logging.info('CooccurrenceGen: splits %s, vocab_size %d, window %d, symmetric %s, '
                 'distance_weighting %s, %d shards', splits, vocab_size, window, symmetric,
                 distance_weighting, num_shards)

    matrix_dir = cio.matrix_dir(output.uri)
    staging_dir = os.path.join(output.uri, _STAGING_DIR)
    for directory in (matrix_dir, staging_dir):
      if fileio.exists(directory):  # left by an earlier attempt of this execution
        fileio.rmtree(directory)
      fileio.makedirs(directory)
    with self._make_beam_pipeline() as p:
      _ = ([read_token_batches(p, examples, split, feature) for split in splits]
           | 'FlattenSplits' >> beam.Flatten()
           | 'BuildMatrix' >> transforms.BuildCooccurrenceMatrix(
               feature, vocab_size, window, symmetric, distance_weighting, num_shards,
               matrix_dir, staging_dir))

    stats = transforms.read_stats(staging_dir, num_shards)
    fileio.rmtree(staging_dir)
    output.vocab_size = vocab_size
    output.nonzeros = sum(s['nonzeros'] for s in stats)
    output.total_weight = float(sum(s['total_weight'] for s in stats))
    output.window_size = window
    output.symmetric = int(symmetric)
    output.distance_weighting = int(distance_weighting)
    logging.info('CooccurrenceGen: wrote %d cells to %s', output.nonzeros, matrix_dir)
