"""Reading and writing the `CooccurrenceMatrix` artifact's files (docs/architecture.md).

Layout: ``<uri>/matrix/part-NNNNN-of-MMMMM.tfrecord.gz``, GZIP TFRecord files whose records are
`tf.train.Example`s with equal-length list features ``i`` (int64), ``j`` (int64), ``x`` (float):
one block of non-zero cells each. Every (i, j) cell appears exactly once across all files.

Writing goes through Beam's `FileSystems`, so shards can be written by any runner to any file system
Beam supports; records are serialised with NumPy (the `tf.train.Example` wire format of three
packed lists), which is far faster than filling the proto field by field.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Iterator, Optional, Tuple

import google_crc32c
import numpy as np

MATRIX_DIR = 'matrix'
FEATURE_I, FEATURE_J, FEATURE_X = 'i', 'j', 'x'
# Cells per record: keeps each serialised record around 0.5 MB.
CELLS_PER_RECORD = 65536
# zlib level 1 compresses these blocks nearly as well as the default level, several times faster.
GZIP_LEVEL = 1

Cells = Tuple[np.ndarray, np.ndarray, np.ndarray]


def shard_file_name(shard: int, num_shards: int) -> str:
  return f'part-{shard:05d}-of-{num_shards:05d}.tfrecord.gz'


def matrix_dir(uri: str) -> str:
  return os.path.join(uri, MATRIX_DIR)


# --- tf.train.Example wire format ----------------------------------------------------------------

def _varint(n: int) -> bytes:
  out = bytearray()
  while n > 0x7F:
    out.append((n & 0x7F) | 0x80)
    n >>= 7
  out.append(n)
  return bytes(out)


def _packed_varints(values: np.ndarray) -> bytes:
  """Protobuf varint encoding of non-negative int64 values, vectorised."""
  if not values.size:
    return b''
  v = values.astype(np.uint64, copy=False)
  max_bytes = max(1, -(-int(v.max()).bit_length() // 7))
  nbytes = np.ones(v.size, dtype=np.int64)
  for k in range(1, max_bytes):
    nbytes += v >= np.uint64(1 << (7 * k))
  starts = np.cumsum(nbytes) - nbytes
  out = np.empty(int(starts[-1] + nbytes[-1]), dtype=np.uint8)
  for k in range(max_bytes):
    m = nbytes > k
    byte = (v[m] >> np.uint64(7 * k)) & np.uint64(0x7F)
    byte |= (nbytes[m] > k + 1).astype(np.uint64) << np.uint64(7)  # continuation bit
    out[starts[m] + k] = byte
  return out.tobytes()


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature_entry(name: str, feature: bytes) -> bytes:
  # Features.feature is map<string, Feature>: entries with key = 1, value = 2.
  return _field(1, _field(1, name.encode()) + _field(2, feature))


def encode_block(i: np.ndarray, j: np.ndarray, x: np.ndarray) -> bytes:
  """Serialises one block of cells as a `tf.train.Example` (ids must be non-negative)."""
  i = np.asarray(i, dtype=np.int64)
  j = np.asarray(j, dtype=np.int64)
  x = np.asarray(x, dtype='<f4')
  if not (i.size == j.size == x.size):
    raise ValueError('i, j and x must have equal lengths')
  if i.size and min(i.min(), j.min()) < 0:
    raise ValueError('cell ids must be non-negative')

  def int64_list(v):  # Feature.int64_list = 3; Int64List.value = 1 (packed)
    return _field(3, _field(1, _packed_varints(v)) if v.size else b'')

  float_list = _field(2, _field(1, x.tobytes()) if x.size else b'')  # Feature.float_list = 2
  features = (_feature_entry(FEATURE_I, int64_list(i)) + _feature_entry(FEATURE_J, int64_list(j))
              + _feature_entry(FEATURE_X, float_list))
  return _field(1, features)  # Example.features = 1


# --- TFRecord framing ----------------------------------------------------------------------------

def _masked_crc(data: bytes) -> int:
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _tfrecord(data: bytes) -> bytes:
  length = struct.pack('<Q', len(data))
  return (length + struct.pack('<I', _masked_crc(length)) + data
          + struct.pack('<I', _masked_crc(data)))


def write_cells(path: str, i: np.ndarray, j: np.ndarray, x: np.ndarray,
                cells_per_record: int = CELLS_PER_RECORD, tmp_dir: Optional[str] = None) -> None:
  """Writes cells to one GZIP TFRecord file, `cells_per_record` cells per record at most.

  The file is written under a unique temporary name (in `tmp_dir` if given, else next to `path`)
  and then renamed, so a retried or concurrent writer never leaves a truncated shard behind.
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

  tmp_name = f'{os.path.basename(path)}.tmp-{os.getpid()}-{os.urandom(4).hex()}'
  tmp_path = os.path.join(tmp_dir or os.path.dirname(path), tmp_name)
  compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip container
  with FileSystems.create(tmp_path, compression_type='uncompressed') as f:
    for lo in range(0, i.size, cells_per_record):
      hi = lo + cells_per_record
      f.write(compressor.compress(_tfrecord(encode_block(i[lo:hi], j[lo:hi], x[lo:hi]))))
    f.write(compressor.flush())
  out_dir = os.path.dirname(path)
  if not FileSystems.exists(out_dir):
    try:
      FileSystems.mkdirs(out_dir)
    except IOError:  # created meanwhile by another shard's writer
      pass
  if FileSystems.exists(path):
    FileSystems.delete([path])
  FileSystems.rename([tmp_path], [path])


# --- Reading -------------------------------------------------------------------------------------

def shard_paths(uri: str) -> list:
  """The artifact's shard files, sorted; raises if the set is incomplete."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  paths = sorted(tf.io.gfile.glob(os.path.join(matrix_dir(uri), 'part-*-of-*.tfrecord.gz')))
  if not paths:
    raise FileNotFoundError(f'no co-occurrence shards under {matrix_dir(uri)}')
  expected = int(os.path.basename(paths[0]).split('-of-')[1].split('.')[0])
  names = {os.path.basename(p) for p in paths}
  missing = [shard_file_name(s, expected) for s in range(expected)
             if shard_file_name(s, expected) not in names]
  if missing or len(names) != expected:
    raise ValueError(f'incomplete co-occurrence shards under {matrix_dir(uri)}: missing {missing}')
  return paths


def iter_blocks(uri: str, batch_records: int = 16) -> Iterator[Cells]:
  """Yields (i int64, j int64, x float32) blocks from all shards, without loading them all.

  Raises ValueError if a record's three lists differ in length.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  spec = {FEATURE_I: tf.io.RaggedFeature(tf.int64), FEATURE_J: tf.io.RaggedFeature(tf.int64),
          FEATURE_X: tf.io.RaggedFeature(tf.float32)}
  dataset = tf.data.TFRecordDataset(shard_paths(uri), compression_type='GZIP').batch(batch_records)
  for records in dataset:
    parsed = tf.io.parse_example(records, spec)
    lengths = [parsed[k].row_lengths().numpy() for k in (FEATURE_I, FEATURE_J, FEATURE_X)]
    if not (np.array_equal(lengths[0], lengths[1]) and np.array_equal(lengths[0], lengths[2])):
      raise ValueError(f'{uri}: a record\'s i, j and x lists differ in length')
    yield tuple(parsed[k].flat_values.numpy() for k in (FEATURE_I, FEATURE_J, FEATURE_X))


def read_cooccurrence(uri: str) -> Cells:
  """Reads the whole matrix of a `CooccurrenceMatrix` artifact at `uri` as (i, j, x) arrays."""
  blocks = list(iter_blocks(uri))
  if not blocks:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
  return tuple(np.concatenate(parts) for parts in zip(*blocks))
