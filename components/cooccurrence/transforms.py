"""Beam transforms that build the co-occurrence matrix from batches of documents.

This module runs on Beam workers: it imports neither TFX nor TensorFlow.

Data flow (no element per word pair, nothing collected on the driver):

  Arrow RecordBatches of documents (ReadTokenBatches or TFXIO)
    -> CountFn: buffers documents, counts them in chunks of about `batch_tokens` tokens with the
       NumPy core and emits each chunk's sparse partial matrix split by shard: (shard, partial).
       A stored cell's shard is its row id % num_shards; symmetric matrices store the upper
       triangle, so (i, j) and (j, i) both land in the shard of min(i, j).
    -> CombinePerKey(MergeCountsFn): sums the partials of each shard (Beam lifts the combine
       before the shuffle, so each worker pre-merges its own partials)
    -> WriteShardFn: writes one file per shard and a small per-shard stats file (in a staging
       directory that also holds the shard files while they are written).

A shard's merged matrix is held in one worker's memory (16 bytes per stored cell, plus merge
buffers): raise `num_shards` for larger vocabularies or corpora.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Iterable, List, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows
from tensorflow_metadata.proto.v0 import schema_pb2

from components.cooccurrence import counting
from components.cooccurrence import io as cio

_METRICS_NAMESPACE = 'CooccurrenceGen'
# Tokens counted at once: bounds the pair-key buffer (window * batch_tokens int64) to ~20 MB at
# window 10; larger batches run slower (the sort and scans leave the CPU caches).
DEFAULT_BATCH_TOKENS = 1 << 18
# Partials of one shard are merged once the unmerged ones add up to the largest one (and at least
# this many cells): merging stays amortised and memory within a small multiple of the shard.
_MIN_PENDING_CELLS = 1 << 21
STATS_FILE_PREFIX = 'stats-'


def token_schema(feature: str) -> schema_pb2.Schema:
  """A schema that decodes only `feature` (variable-length int64) from tf.Examples."""
  schema = schema_pb2.Schema()
  schema.feature.add(name=feature, type=schema_pb2.INT)
  return schema


class DecodeTokensFn(beam.DoFn):
  """Lists of serialised tf.Examples -> Arrow RecordBatches holding only `feature`.

  Uses tfx_bsl's C++ decoder (what TFXIO uses) without TFXIO's TensorFlow import, which would
  add seconds and hundreds of MB to every worker.
  """

  def __init__(self, feature: str):
    self._schema = token_schema(feature).SerializeToString()
    self._decoder = None

  def setup(self):
    from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel
    self._decoder = example_coder.ExamplesToRecordBatchDecoder(self._schema)

  def process(self, records: List[bytes]):
    yield self._decoder.DecodeBatch(records)


class ReadTokenBatches(beam.PTransform):
  """Pipeline -> PCollection[pa.RecordBatch]: tf.Example TFRecord files, `feature` only.

  Reads like TFXIO's TFExampleRecord (compression from the file extension, as TFX writes it).
  """

  def __init__(self, file_patterns: Sequence[str], feature: str, batch_size: int):
    super().__init__()
    self._file_patterns = list(file_patterns)
    self._feature = feature
    self._batch_size = batch_size

  def expand(self, pipeline):
    records = [pipeline | f'ReadFromTFRecord[{k}]' >> beam.io.ReadFromTFRecord(
        pattern, coder=beam.coders.BytesCoder()) for k, pattern in enumerate(self._file_patterns)]
    return (records
            | 'FlattenPatterns' >> beam.Flatten()
            | 'Batch' >> beam.BatchElements(min_batch_size=self._batch_size,
                                             max_batch_size=self._batch_size)
            | 'Decode' >> beam.ParDo(DecodeTokensFn(self._feature)))


def column_tokens(record_batch: pa.RecordBatch, feature: str):
  """Returns (flat token ids int64, per-document lengths int64) of a list<int64> column.

  Documents missing the feature count as empty.
  """
  index = record_batch.schema.get_field_index(feature)
  if index < 0:
    raise KeyError(f'feature {feature!r} not in examples (columns: {record_batch.schema.names})')
  column = record_batch.column(index)
  lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
  values = column.flatten().to_numpy(zero_copy_only=False)
  return values.astype(np.int64, copy=False), lengths.astype(np.int64, copy=False)


class CountFn(beam.DoFn):
  """Counts documents per batch of ~`batch_tokens` tokens; emits (shard, SparseCounts)."""

  def __init__(self, feature: str, vocab_size: int, window: int, symmetric: bool,
               distance_weighting: bool, num_shards: int,
               batch_tokens: int = DEFAULT_BATCH_TOKENS):
    self._feature = feature
    self._vocab_size = vocab_size
    self._window = window
    self._symmetric = symmetric
    self._weighting = counting.make_weighting(window, distance_weighting)
    self._num_shards = num_shards
    self._batch_tokens = batch_tokens
    self._documents = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, 'documents')
    self._tokens = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, 'tokens')
    self._oov = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, 'oov_tokens')

  def start_bundle(self):
    self._reset()

  def _reset(self):
    self._values: List[np.ndarray] = []
    self._lengths: List[np.ndarray] = []
    self._buffered = 0

  def process(self, record_batch: pa.RecordBatch):
    values, lengths = column_tokens(record_batch, self._feature)
    self._documents.inc(int(lengths.size))
    self._tokens.inc(int(values.size))
    self._oov.inc(int(np.count_nonzero(values < 0)))
    self._values.append(values)
    self._lengths.append(lengths)
    self._buffered += values.size
    if self._buffered >= self._batch_tokens:
      yield from self._flush()

  def finish_bundle(self):
    for keyed in self._flush():
      yield GlobalWindows.windowed_value(keyed)

  def _flush(self):
    if not self._values:
      return
    values = np.concatenate(self._values)
    lengths = np.concatenate(self._lengths)
    self._reset()
    for doc_lo, doc_hi, tok_lo, tok_hi in counting.chunk_documents(lengths, self._batch_tokens):
      counts = counting.count_tokens(values[tok_lo:tok_hi], lengths[doc_lo:doc_hi],
                                     self._vocab_size, self._window, self._symmetric,
                                     self._weighting)
      yield from counting.split_by_shard(counts, self._vocab_size, self._num_shards)


class SparseCountsCoder(beam.coders.Coder):
  """Compact encoding of SparseCounts for the shuffle: usually 8 bytes per cell instead of 16.

  Sorted keys are stored as uint32 gaps when every gap fits, integer values as int32 when they
  fit; anything else keeps its 8-byte dtype.
  """

  _HEADER = struct.Struct('<QBB')
  _KEY_DTYPES = (np.dtype('<u4'), np.dtype('<i8'))
  _VALUE_DTYPES = (np.dtype('<i4'), np.dtype('<i8'), np.dtype('<f8'))

  def encode(self, value: counting.SparseCounts) -> bytes:
    gaps = np.diff(value.keys, prepend=np.int64(0))
    key_code = 0 if not gaps.size or gaps.max() <= np.iinfo(np.uint32).max else 1
    keys = gaps if key_code == 0 else value.keys
    if value.values.dtype.kind == 'f':
      value_code = 2
    elif not value.values.size or (np.iinfo(np.int32).min <= value.values.min()
                                   and value.values.max() <= np.iinfo(np.int32).max):
      value_code = 0
    else:
      value_code = 1
    return (self._HEADER.pack(value.keys.size, key_code, value_code)
            + keys.astype(self._KEY_DTYPES[key_code]).tobytes()
            + value.values.astype(self._VALUE_DTYPES[value_code]).tobytes())

  def decode(self, encoded: bytes) -> counting.SparseCounts:
    n, key_code, value_code = self._HEADER.unpack_from(encoded)
    key_dtype, value_dtype = self._KEY_DTYPES[key_code], self._VALUE_DTYPES[value_code]
    offset = self._HEADER.size
    keys = np.frombuffer(encoded, key_dtype, n, offset).astype(np.int64)
    if key_code == 0:
      keys = np.cumsum(keys)
    values = np.frombuffer(encoded, value_dtype, n, offset + n * key_dtype.itemsize)
    values = values.astype(np.float64 if value_code == 2 else np.int64)
    return counting.SparseCounts(keys, values)

  def is_deterministic(self) -> bool:
    return True


class MergeCountsFn(beam.CombineFn):
  """Sums SparseCounts partials. The accumulator is a list of partials, merged lazily."""

  def get_accumulator_coder(self):
    return beam.coders.ListCoder(SparseCountsCoder())

  def create_accumulator(self) -> list:
    return []

  def add_input(self, accumulator: list, part: counting.SparseCounts) -> list:
    accumulator.append(part)
    return self._maybe_merge(accumulator)

  def merge_accumulators(self, accumulators: Iterable[list]) -> list:
    return self._maybe_merge([part for acc in accumulators for part in acc])

  def compact(self, accumulator: list) -> list:
    # One partial per shard leaves each worker before the shuffle.
    return [counting.merge_counts(accumulator)] if len(accumulator) > 1 else accumulator

  def extract_output(self, accumulator: list) -> counting.SparseCounts:
    return counting.merge_counts(accumulator)

  @staticmethod
  def _maybe_merge(parts: list) -> list:
    if len(parts) < 2:
      return parts
    sizes = [len(p) for p in parts]
    pending = sum(sizes) - max(sizes)
    if pending >= max(max(sizes), _MIN_PENDING_CELLS):
      return [counting.merge_counts(parts)]
    return parts


class WriteShardFn(beam.DoFn):
  """Writes one shard's cells to `matrix_dir` and its stats to `staging_dir`; yields the stats."""

  def __init__(self, matrix_dir: str, staging_dir: str, num_shards: int, vocab_size: int,
               symmetric: bool, scale: int):
    self._matrix_dir = matrix_dir
    self._staging_dir = staging_dir
    self._num_shards = num_shards
    self._vocab_size = vocab_size
    self._symmetric = symmetric
    self._scale = scale

  def process(self, element):
    shard, counts = element
    i, j, x = counting.expand_cells(counts, self._vocab_size, self._symmetric, self._scale)
    cio.write_cells(os.path.join(self._matrix_dir, cio.shard_file_name(shard, self._num_shards)),
                    i, j, x.astype(np.float32), tmp_dir=self._staging_dir)
    stats = {'shard': int(shard), 'nonzeros': int(i.size), 'total_weight': float(x.sum())}
    with FileSystems.create(_stats_path(self._staging_dir, shard),
                            compression_type='uncompressed') as f:
      f.write(json.dumps(stats).encode())
    yield stats


class BuildCooccurrenceMatrix(beam.PTransform):
  """PCollection[pa.RecordBatch] -> PCollection[per-shard stats dict]; writes the shards.

  Every shard file is written, empty or not, so the set `part-*-of-<num_shards>` is complete.
  """

  def __init__(self, feature: str, vocab_size: int, window: int, symmetric: bool,
               distance_weighting: bool, num_shards: int, matrix_dir: str, staging_dir: str,
               batch_tokens: int = DEFAULT_BATCH_TOKENS):
    super().__init__()
    counting.check_vocab_size(vocab_size, window)
    if num_shards < 1:
      raise ValueError(f'num_shards must be >= 1, got {num_shards}')
    self._count_fn = CountFn(feature, vocab_size, window, symmetric, distance_weighting,
                             num_shards, batch_tokens)
    weighting = counting.make_weighting(window, distance_weighting)
    self._seeds = [(s, counting.empty_counts(weighting)) for s in range(num_shards)]
    self._write_fn = WriteShardFn(matrix_dir, staging_dir, num_shards, vocab_size, symmetric,
                                  weighting.scale)

  def expand(self, record_batches):
    partials = record_batches | 'Count' >> beam.ParDo(self._count_fn)
    seeds = record_batches.pipeline | 'EmptyShards' >> beam.Create(self._seeds)
    return ((partials, seeds)
            | 'Flatten' >> beam.Flatten()
            | 'MergePerShard' >> beam.CombinePerKey(MergeCountsFn())
            | 'Write' >> beam.ParDo(self._write_fn))


def _stats_path(staging_dir: str, shard: int) -> str:
  return os.path.join(staging_dir, f'{STATS_FILE_PREFIX}{shard:05d}.json')


def read_stats(staging_dir: str, num_shards: int) -> Sequence[dict]:
  """Reads the per-shard stats files written by WriteShardFn; raises if one is missing."""
  stats = []
  for shard in range(num_shards):
    with FileSystems.open(_stats_path(staging_dir, shard), compression_type='uncompressed') as f:
      stats.append(json.loads(f.read().decode()))
  return stats
