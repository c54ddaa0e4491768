"""Tests of CooccurrenceGen: the NumPy counting core, the file format, the Beam executor end to end
(DirectRunner, multi-processing) against a brute-force cooccur.c reference, and the component.

The Beam transform and the executor (over a transform graph that tf.Transform analyses on Beam) are
slow; the counting core, the coder, the file format and the component are unit tests."""

import collections
import os
import re
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

from components.cooccurrence import counting
from components.cooccurrence import io as cio


# --- Reference --------------------------------------------------------------------------------

def brute_force(docs, window, symmetric, distance_weighting):
  """GloVe cooccur.c semantics in plain Python with exact rational sums: {(i, j): Fraction}."""
  matrix = collections.defaultdict(Fraction)
  for doc in docs:
    tokens = [t for t in doc if t >= 0]  # OOV dropped before windows are formed
    for p, word in enumerate(tokens):
      for d in range(1, window + 1):
        if p - d < 0:
          break
        weight = Fraction(1, d) if distance_weighting else Fraction(1)
        matrix[word, tokens[p - d]] += weight
        if symmetric:
          matrix[tokens[p - d], word] += weight
  return dict(matrix)


def as_dict(i, j, x):
  cells = {}
  for a, b, v in zip(i.tolist(), j.tolist(), x.tolist()):
    assert (a, b) not in cells, f'cell {(a, b)} appears twice'
    cells[a, b] = v
  return cells


def assert_matches(cells, reference, dtype=np.float64):
  """Exact comparison after rounding the exact reference the way the output is stored."""
  assert cells.keys() == reference.keys()
  for key, value in reference.items():
    assert cells[key] == float(dtype(float(value))), (key, cells[key], value)


def random_docs(rng, n_docs, vocab_size, max_len=40):
  docs = []
  for k in range(n_docs):
    length = [0, 1, 2][k] if k < 3 else int(rng.integers(0, max_len))  # empty, 1- and 2-token
    doc = rng.integers(0, vocab_size, length)
    doc[rng.random(length) < 0.15] = -1  # out-of-vocabulary
    docs.append(doc.tolist())
  docs.append([-1, -1, -1])  # only OOV
  docs.append([3, -1, 3, -1, -1, 4])  # OOV between in-vocabulary tokens: gaps close up
  return docs


# --- (1) counting core ------------------------------------------------------------------------

@pytest.mark.parametrize('window', [1, 2, 5, 10])
@pytest.mark.parametrize('symmetric', [True, False])
@pytest.mark.parametrize('distance_weighting', [True, False])
def test_counting_core_matches_brute_force(window, symmetric, distance_weighting):
  vocab_size = 23
  rng = np.random.default_rng(window * 4 + symmetric * 2 + distance_weighting)
  docs = random_docs(rng, 60, vocab_size)
  weighting = counting.make_weighting(window, distance_weighting)
  # Count in uneven batches and combine the partials, as the Beam pipeline does.
  cuts = [0, 1, 7, 30, len(docs)]
  parts = [counting.count_documents(docs[a:b], vocab_size, window, symmetric, weighting)
           for a, b in zip(cuts, cuts[1:])]
  merged = counting.merge_counts(parts)
  assert np.all(np.diff(merged.keys) > 0)  # sorted, unique
  cells = as_dict(*counting.expand_cells(merged, vocab_size, symmetric, weighting.scale))
  assert_matches(cells, brute_force(docs, window, symmetric, distance_weighting))
  # Sharding then merging per shard gives the same cells.
  by_shard = collections.defaultdict(list)
  for part in parts:
    for shard, sub in counting.split_by_shard(part, vocab_size, 3):
      assert np.all((sub.keys // vocab_size) % 3 == shard)
      by_shard[shard].append(sub)
  sharded = {}
  for subs in by_shard.values():
    sharded.update(as_dict(*counting.expand_cells(counting.merge_counts(subs), vocab_size,
                                                  symmetric, weighting.scale)))
  assert sharded == cells


def test_counting_core_float_weights_for_large_windows():
  # lcm(1..30) is too large for exact integer weights: float64 weights 1/d are used instead.
  window, vocab_size = 30, 11
  weighting = counting.make_weighting(window, True)
  assert weighting.scale == 1 and weighting.dtype == np.float64
  docs = random_docs(np.random.default_rng(0), 20, vocab_size, max_len=80)
  counts = counting.count_documents(docs, vocab_size, window, True, weighting)
  cells = as_dict(*counting.expand_cells(counts, vocab_size, True, weighting.scale))
  reference = brute_force(docs, window, True, True)
  assert cells.keys() == reference.keys()
  for key, value in reference.items():
    assert cells[key] == pytest.approx(float(value), rel=1e-12)


def test_counting_core_edge_cases():
  weighting = counting.make_weighting(10, True)
  empty = counting.count_documents([], 5, 10, True, weighting)
  assert len(empty) == 0
  assert len(counting.count_documents([[1], [], [-1, 2, -1]], 5, 10, True, weighting)) == 0
  with pytest.raises(ValueError, match=r'^token id 5 out of range for vocab_size 5; examples and '
                                       r'vocabulary do not match$'):
    counting.count_documents([[1, 5]], 5, 10, True, weighting)
  with pytest.raises(ValueError, match=r'^window must be >= 1, got 0$'):
    counting.make_weighting(0, True)


def test_chunk_documents():
  lengths = np.array([3, 0, 5, 1, 10, 2, 0, 4])
  chunks = counting.chunk_documents(lengths, 4)
  ends = np.cumsum(lengths)
  assert chunks[0][0::2] == (0, 0) and chunks[-1][1::2] == (lengths.size, ends[-1])
  for (a, b, c, d), nxt in zip(chunks, chunks[1:] + [None]):
    assert b > a and d - c == lengths[a:b].sum() and c == ends[a] - lengths[a]
    assert d - c - lengths[b - 1] < 4  # only the last document may overflow a chunk
    if nxt:
      assert nxt[0] == b and nxt[2] == d
  assert counting.chunk_documents(np.array([], np.int64), 4) == []


# --- Beam transform ---------------------------------------------------------------------------

@pytest.mark.slow
def test_build_matrix_transform_merges_many_partials(tmp_path, monkeypatch):
  """Small batches and eager merging: many partials per shard go through MergeCountsFn."""
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  from components.cooccurrence import transforms  # pylint: disable=import-outside-toplevel

  monkeypatch.setattr(transforms, '_MIN_PENDING_CELLS', 1)
  vocab_size, window = 17, 4
  docs = random_docs(np.random.default_rng(7), 50, vocab_size)
  batches = []
  for k in range(0, len(docs), 8):
    column = [list(d) for d in docs[k:k + 8]] + [None]  # a document without the feature
    batches.append(pa.RecordBatch.from_arrays(
        [pa.array(column, type=pa.large_list(pa.int64())), pa.array(['x'] * len(column))],
        ['token_ids', 'other']))
  matrix_dir, staging_dir = str(tmp_path / 'm' / 'matrix'), str(tmp_path / 'staging')
  with beam.Pipeline() as p:
    _ = (p | beam.Create(batches)
         | transforms.BuildCooccurrenceMatrix('token_ids', vocab_size, window, True, True, 4,
                                              matrix_dir, staging_dir, batch_tokens=7))
  reference = brute_force(docs, window, True, True)
  assert_matches(as_dict(*cio.read_cooccurrence(str(tmp_path / 'm'))), reference, np.float32)
  stats = transforms.read_stats(staging_dir, 4)
  assert sum(s['nonzeros'] for s in stats) == len(reference)
  assert sorted(os.listdir(staging_dir)) == [f'stats-{s:05d}.json' for s in range(4)]


def test_sparse_counts_coder_round_trips():
  from components.cooccurrence import transforms  # pylint: disable=import-outside-toplevel

  coder = transforms.SparseCountsCoder()
  cases = [
      counting.SparseCounts(np.array([3, 9, 2**20], np.int64), np.array([1, 2520, 7], np.int64)),
      counting.SparseCounts(np.array([0, 2**40], np.int64), np.array([2**40, 1], np.int64)),
      counting.SparseCounts(np.array([5], np.int64), np.array([0.5], np.float64)),
      counting.empty_counts(counting.make_weighting(10, True)),
  ]
  for counts in cases:
    encoded = coder.encode(counts)
    decoded = coder.decode(encoded)
    assert decoded.keys.dtype == np.int64 and decoded.values.dtype == counts.values.dtype
    np.testing.assert_array_equal(decoded.keys, counts.keys)
    np.testing.assert_array_equal(decoded.values, counts.values)
  assert len(coder.encode(cases[0])) == 10 + 3 * 8  # 4-byte gaps and values


# --- File format ------------------------------------------------------------------------------

@pytest.mark.parametrize('n', [0, 1, 1000])
def test_encode_block_is_a_tf_example(n):
  rng = np.random.default_rng(n)
  i = rng.integers(0, 2**40, n)
  j = rng.integers(0, 300, n)
  x = rng.random(n).astype(np.float32)
  if n:
    i[0], i[-1] = 0, 2**63 - 1
  expected = tf.train.Example()
  expected.features.feature['i'].int64_list.value.extend(i.tolist())
  expected.features.feature['j'].int64_list.value.extend(j.tolist())
  expected.features.feature['x'].float_list.value.extend(x.tolist())
  assert tf.train.Example.FromString(cio.encode_block(i, j, x)) == expected


def test_write_and_read_cells(tmp_path):
  rng = np.random.default_rng(1)
  shards = []
  for s in range(3):
    n = [0, 5, 1234][s]  # an empty shard, a one-record one and a multi-record one
    i, j = rng.integers(0, 50, n), rng.integers(0, 50, n)
    x = rng.random(n).astype(np.float32)
    cio.write_cells(os.path.join(cio.matrix_dir(str(tmp_path)), cio.shard_file_name(s, 3)),
                    i, j, x, cells_per_record=100)
    shards.append((i, j, x))
  records = list(tf.data.TFRecordDataset(
      os.path.join(cio.matrix_dir(str(tmp_path)), cio.shard_file_name(2, 3)),
      compression_type='GZIP'))
  assert len(records) == 13
  i, j, x = cio.read_cooccurrence(str(tmp_path))
  assert i.dtype == np.int64 and j.dtype == np.int64 and x.dtype == np.float32
  for got, want in zip((i, j, x), (np.concatenate(parts) for parts in zip(*shards))):
    np.testing.assert_array_equal(got, want)
  bad = tf.train.Example()
  bad.features.feature['i'].int64_list.value.extend([1, 2])
  bad.features.feature['j'].int64_list.value.extend([1])
  bad.features.feature['x'].float_list.value.extend([1.0, 2.0])
  with tf.io.TFRecordWriter(os.path.join(cio.matrix_dir(str(tmp_path)), cio.shard_file_name(1, 3)),
                            options='GZIP') as writer:
    writer.write(bad.SerializeToString())
  with pytest.raises(ValueError, match='differ in length'):
    cio.read_cooccurrence(str(tmp_path))
  os.remove(os.path.join(cio.matrix_dir(str(tmp_path)), cio.shard_file_name(1, 3)))
  with pytest.raises(ValueError, match='incomplete'):
    cio.read_cooccurrence(str(tmp_path))


# --- (2) Beam executor end to end -------------------------------------------------------------

TEXTS = {
    'train': ['python developer with data engineering experience and python testing',
              'nurse with intensive care experience', '', 'python',
              'senior data engineer spark python sql data pipelines and data quality',
              'care assistant experience with elderly care and dementia care'] * 3,
    'eval': ['data engineer with python and sql experience', 'intensive care nurse',
             'zzz unknownword experience'],
}


def _preprocessing_fn(inputs):
  import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
  tokens = tf.strings.split(inputs['text']).to_sparse()
  return {'token_ids': tft.compute_and_apply_vocabulary(
      tokens, vocab_filename='vocab', frequency_threshold=2, default_value=-1)}


@pytest.fixture(scope='module')
def transformed(tmp_path_factory):
  """A real transform graph (vocabulary `vocab`) and an Examples artifact of its token_ids.

  Returns (examples artifact, transform graph artifact, {split: [token id lists]}).
  """
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  import tensorflow_transform.beam as tft_beam  # pylint: disable=import-outside-toplevel
  from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils  # pylint: disable=import-outside-toplevel
  from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=import-outside-toplevel

  root = tmp_path_factory.mktemp('transformed')
  raw = [{'text': t} for split in ('train', 'eval') for t in TEXTS[split]]
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
      {'text': tf.io.FixedLenFeature([], tf.string)}))
  with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(root / 'tft_tmp')):
    transform_fn = ((p | beam.Create(raw), metadata)
                    | tft_beam.AnalyzeDataset(_preprocessing_fn))
    _ = transform_fn | tft_beam.WriteTransformFn(str(root / 'transform_graph'))

  import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
  vocabulary = [w.decode() for w in
                tft.TFTransformOutput(str(root / 'transform_graph')).vocabulary_by_name('vocab')]
  index = {w: k for k, w in enumerate(vocabulary)}
  docs = {split: [[index.get(w, -1) for w in t.split()] for t in texts]
          for split, texts in TEXTS.items()}

  examples = standard_artifacts.Examples()
  examples.uri = str(root / 'examples')
  examples.split_names = artifact_utils.encode_split_names(list(docs))
  for split, split_docs in docs.items():
    path = os.path.join(artifact_utils.get_split_uri([examples], split), 'data.tfrecord.gz')
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, options='GZIP') as writer:
      for doc in split_docs:
        example = tf.train.Example()
        example.features.feature['token_ids'].int64_list.value.extend(doc)
        example.features.feature['cv_id'].bytes_list.value.append(b'cv-1')  # not read
        writer.write(example.SerializeToString())
  transform_graph = standard_artifacts.TransformGraph()
  transform_graph.uri = str(root / 'transform_graph')
  return examples, transform_graph, docs, len(vocabulary)


MULTI_PROCESSING = ['--direct_running_mode=multi_processing', '--direct_num_workers=2']


def _run_executor(tmp_path, examples, transform_graph, beam_args=MULTI_PROCESSING, **params):
  from tfx.utils import json_utils  # pylint: disable=import-outside-toplevel
  from components.cooccurrence import executor  # pylint: disable=import-outside-toplevel
  from components.cooccurrence.artifacts import CooccurrenceMatrix  # pylint: disable=import-outside-toplevel

  output = CooccurrenceMatrix()
  output.uri = str(tmp_path / 'cooccurrence')
  exec_properties = {'window_size': 10, 'symmetric': 1, 'distance_weighting': 1, 'splits': None,
                     'token_feature': 'token_ids', 'num_shards': 8}
  exec_properties.update(params)
  if exec_properties['splits'] is not None:
    exec_properties['splits'] = json_utils.dumps(exec_properties['splits'])
  context = executor.Executor.Context(beam_pipeline_args=beam_args,
                                     tmp_dir=str(tmp_path / 'tmp'))
  executor.Executor(context).Do(
      {'examples': [examples], 'transform_graph': [transform_graph]},
      {'cooccurrence': [output]}, exec_properties)
  return output


@pytest.mark.parametrize('params', [
    dict(window_size=5, symmetric=1, distance_weighting=1, num_shards=3),
    dict(window_size=2, symmetric=0, distance_weighting=0, num_shards=2, splits=['train']),
], ids=['symmetric-weighted-all-splits', 'left-unweighted-train'])
@pytest.mark.slow
def test_executor_end_to_end(transformed, tmp_path, params):
  examples, transform_graph, docs, vocab_size = transformed
  output = _run_executor(tmp_path, examples, transform_graph, **params)

  splits = params.get('splits', ['train', 'eval'])
  reference = brute_force([d for s in splits for d in docs[s]], params['window_size'],
                          bool(params['symmetric']), bool(params['distance_weighting']))
  cells = as_dict(*cio.read_cooccurrence(output.uri))
  assert_matches(cells, reference, dtype=np.float32)
  assert sorted(os.listdir(os.path.join(output.uri, 'matrix'))) == [
      cio.shard_file_name(s, params['num_shards']) for s in range(params['num_shards'])]
  assert sorted(os.listdir(output.uri)) == ['matrix']

  assert output.vocab_size == vocab_size
  assert output.nonzeros == len(reference)
  assert output.total_weight == pytest.approx(float(sum(reference.values())), rel=1e-12)
  assert output.window_size == params['window_size']
  assert output.symmetric == params['symmetric']
  assert output.distance_weighting == params['distance_weighting']


@pytest.mark.slow
def test_executor_reads_other_formats_through_tfxio(transformed, tmp_path):
  """Examples in another format (Parquet here) are read through TFXIO."""
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
  from tfx.components.util import examples_utils  # pylint: disable=import-outside-toplevel
  from tfx.proto import example_gen_pb2  # pylint: disable=import-outside-toplevel
  from tfx.types import artifact_utils, standard_artifacts  # pylint: disable=import-outside-toplevel

  _, transform_graph, docs, _ = transformed
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'parquet_examples')
  examples.split_names = artifact_utils.encode_split_names(['train'])
  examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_PARQUET)
  examples_utils.set_file_format(examples, 'FILE_FORMAT_PARQUET')
  split_dir = artifact_utils.get_split_uri([examples], 'train')
  os.makedirs(split_dir)
  pq.write_table(pa.table({'token_ids': pa.array(docs['train'], pa.large_list(pa.int64()))}),
                 os.path.join(split_dir, 'data.parquet'))
  output = _run_executor(tmp_path, examples, transform_graph, beam_args=[], window_size=3,
                         num_shards=2)
  assert_matches(as_dict(*cio.read_cooccurrence(output.uri)),
                 brute_force(docs['train'], 3, True, True), dtype=np.float32)


@pytest.mark.slow
def test_executor_rejects_unknown_split(transformed, tmp_path):
  examples, transform_graph, _, _ = transformed
  with pytest.raises(ValueError, match=re.escape(
      "splits ['test'] not all in the examples' splits ['train', 'eval']")):
    _run_executor(tmp_path, examples, transform_graph, splits=['test'])


# --- (3) component ----------------------------------------------------------------------------

def test_component_instantiates_and_validates():
  from tfx import types  # pylint: disable=import-outside-toplevel
  from tfx.dsl.components.base import executor_spec  # pylint: disable=import-outside-toplevel
  from tfx.types import standard_artifacts  # pylint: disable=import-outside-toplevel
  from components.cooccurrence import CooccurrenceGen, CooccurrenceMatrix  # pylint: disable=import-outside-toplevel
  from components.cooccurrence import spec  # pylint: disable=import-outside-toplevel

  examples = types.Channel(type=standard_artifacts.Examples)
  transform_graph = types.Channel(type=standard_artifacts.TransformGraph)
  gen = CooccurrenceGen(examples=examples, transform_graph=transform_graph, splits=['cvs'])
  assert isinstance(gen.executor_spec, executor_spec.BeamExecutorSpec)
  assert gen.outputs['cooccurrence'].type is CooccurrenceMatrix
  assert CooccurrenceMatrix.TYPE_NAME == 'CooccurrenceMatrix'
  assert set(CooccurrenceMatrix.PROPERTIES) == {
      'vocab_size', 'nonzeros', 'total_weight', 'window_size', 'symmetric', 'distance_weighting'}
  assert gen.exec_properties == {'window_size': 10, 'symmetric': 1, 'distance_weighting': 1,
                                 'splits': '["cvs"]', 'token_feature': 'token_ids',
                                 'num_shards': 8}
  assert gen.with_beam_pipeline_args(['--direct_num_workers=2']) is gen
  assert gen.executor_spec.beam_pipeline_args == ['--direct_num_workers=2']

  defaults = CooccurrenceGen(examples=examples, transform_graph=transform_graph,
                             symmetric=False, distance_weighting=False)
  assert defaults.exec_properties['splits'] is None
  assert defaults.exec_properties['symmetric'] == 0

  # The spec type-checks parameters.
  with pytest.raises(TypeError, match=re.escape(
      "Expected type <class 'int'> for parameter 'window_size' but got 10 instead.")):
    spec.CooccurrenceGenSpec(
        examples=examples, transform_graph=transform_graph, window_size='10', symmetric=1,
        distance_weighting=1, token_feature='token_ids', num_shards=8,
        cooccurrence=types.Channel(type=CooccurrenceMatrix))
  with pytest.raises(TypeError, match=re.escape(  # inputs are type-checked too
      "Argument examples should be a Channel of type "
      "<class 'tfx.types.standard_artifacts.Examples'> "
      "(got <class 'tfx.types.standard_artifacts.TransformGraph'>).")):
    CooccurrenceGen(examples=transform_graph, transform_graph=transform_graph)
  for bad, message in ((dict(window_size=0), 'window_size must be >= 1, got 0'),
                       (dict(num_shards=0), 'num_shards must be >= 1, got 0'),
                       (dict(splits=[]), 'splits must be None (all splits) or a non-empty list')):
    with pytest.raises(ValueError, match=f'^{re.escape(message)}$'):
      CooccurrenceGen(examples=examples, transform_graph=transform_graph, **bad)
