"""DatasetExampleGen executor: TFX's BaseExampleGenExecutor with a reader of the dataset's CSV files.

Each input split's files are read with `dataset.files.read_rows` on Beam workers, one file per
element (a quoted field may span lines, so a file is not split), and become tf.train.Examples with
the column types the file kind declares (`dataset.files.COLUMNS`):
  str column -> bytes_list (UTF-8), int column -> int64_list,
  empty cell -> the feature present with no values (as CsvExampleGen writes it).
So ids are always BYTES, even when all digits (CsvExampleGen inferred INT), and major_group and
relevance always INT. A file problem raises `dataset.files.InputFileError` (FileCheck, which runs
first, reports all problems of all files; here the first one stops the run).

Splitting into output splits, writing and the artifact's properties are the base executor's.
"""

import glob
import os
from typing import Any, Dict, Iterator

from absl import logging
import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import standard_component_specs

from dataset import files


def split_kind(split_pattern: str) -> str:
  """The file kind of a split: the first directory of its pattern (`cvs/*.csv` -> `cvs`)."""
  parts = split_pattern.split('/')
  kind = parts[0]
  if len(parts) < 2 or kind not in files.COLUMNS:
    raise ValueError(f'split pattern {split_pattern!r}: its first directory must be a file kind '
                     f'({", ".join(files.KINDS)}), e.g. cvs/*.csv')
  return kind


def row_to_example(row: files.Row, kind: str) -> tf.train.Example:
  """A row of `dataset.files.read_rows` as a tf.train.Example of the kind's declared types."""
  types = files.COLUMNS[kind]
  features = {}
  for name, value in row.items():
    if types[name] is int:
      features[name] = tf.train.Feature(
          int64_list=tf.train.Int64List(value=[] if value is None else [value]))
    else:
      features[name] = tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[] if value is None else [value.encode('utf-8')]))
  return tf.train.Example(features=tf.train.Features(feature=features))


def file_to_examples(path: str, kind: str) -> Iterator[tf.train.Example]:
  """The examples of one file, in file order; raises InputFileError at its first problem."""
  for _, row in files.read_rows(path, kind):
    yield row_to_example(row, kind)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _DatasetCsvToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                         split_pattern: str) -> beam.pvalue.PCollection:
  """Reads the files of one split (`input_base`/`split_pattern`) as tf.train.Examples."""
  kind = split_kind(split_pattern)
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
  paths = sorted(glob.glob(pattern))
  if not paths:
    raise files.InputFileError([files.Problem(pattern, None, 'no files match this pattern')])
  logging.info('DatasetExampleGen: reading %d %s files matching %s', len(paths), kind, pattern)
  return (pipeline
          | 'Files' >> beam.Create(paths)
          | 'ReadRows' >> beam.FlatMap(file_to_examples, kind)
          # One file is read by one worker: spread its examples before they are split and written.
          | 'Reshuffle' >> beam.Reshuffle())


class Executor(BaseExampleGenExecutor):
  """ExampleGen executor for the dataset's CSV files (see the module docstring)."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    """Returns the PTransform reading one split's files as tf.train.Examples."""
    return _DatasetCsvToExample
