"""DataCheck executor: gathers ExampleValidator's anomalies, runs the cross-reference checks and the
job-judgment join on Beam (components/data_check/checks.py), writes the ranking examples, and raises
`DataValidationError` with the whole report when anything is wrong. Data warnings (jobs without a
relevant CV left out, slices without an example to score; components/data_check/coverage.py) do
not stop the run: they are logged at WARNING level and recorded in the output's `warnings` property.

Runner options come from the component's `beam_pipeline_args` through
`BaseBeamExecutor._make_beam_pipeline`. The driver reads only the anomaly protos and one small
summary file (bounded: a count and a few sample values per kind of problem, plus dataset counts).
"""

import json
import os
import tempfile
from typing import Any, Dict, List, NamedTuple

from absl import logging
import apache_beam as beam
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.data_check import checks
from components.data_check import coverage
from components.data_check import report
from components.data_check.report import DataValidationError
from metadata import mlmd

# Key names repeat component.py's: the component module imports this one.
TEXTS_KEY = 'texts'
JOBS_KEY = 'jobs'
JUDGMENTS_KEY = 'judgments'
TEXTS_ANOMALIES_KEY = 'texts_anomalies'
JOBS_ANOMALIES_KEY = 'jobs_anomalies'
JUDGMENTS_ANOMALIES_KEY = 'judgments_anomalies'
RANKING_EXAMPLES_KEY = 'ranking_examples'
MAX_SAMPLES_KEY = 'max_samples'
RELEVANCE_THRESHOLD_KEY = 'relevance_threshold'
EVAL_SPLIT_KEY = 'eval_split'
SLICE_FEATURES_KEY = 'slice_features'

# Custom properties of `ranking_examples`, besides mlmd.WARNINGS_PROPERTY: per jobs split, the number
# of jobs left out for having no relevant CV.
JOBS_WITHOUT_RELEVANT_PREFIX = 'num_jobs_without_relevant_'

# Split names of the texts examples; each is its own dataset file kind.
CVS_SPLIT = 'cvs'
CORPUS_SPLIT = 'corpus'
# The file name ExampleGen gives its output shards: Split-<name>/data_tfrecord-*.gz.
OUTPUT_FILE_PREFIX = 'data_tfrecord'
_SUMMARY_FILE = 'data_check_summary.jsonl'


def _check_tf_examples(artifact: types.Artifact, key: str) -> None:
  payload = examples_utils.get_payload_format(artifact)
  if payload != example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE:
    raise ValueError(f'DataCheck reads tf.Examples; {key} has payload format '
                     f'{example_gen_pb2.PayloadFormat.Name(payload)}')


def _split_pattern(artifact: types.Artifact, split: str) -> str:
  return examples_utils.get_split_file_patterns([artifact], split)[0]


def _read(pipeline: beam.Pipeline, artifact: types.Artifact, split: str,
          label: str) -> beam.PCollection:
  """Serialized tf.Examples of one split (gzip is detected from the `.gz` file names)."""
  return pipeline | f'Read[{label}]' >> beam.io.ReadFromTFRecord(_split_pattern(artifact, split))


class Summary(NamedTuple):
  """What the Beam checks found: problems (in report order), dataset counts, jobs per split with
  and without a relevant CV, jobs per slice value."""

  problems: List[report.Problem]
  counts: Dict[str, int]
  jobs: List[coverage.JobCount]
  slices: List[coverage.SliceCount]


def read_summary(path: str) -> Summary:
  """The summary file the Beam pipeline wrote (checks.check_and_join's summary records)."""
  summary = Summary([], {}, [], [])
  with fileio.open(path, 'r') as f:
    for line in f:
      if not line.strip():
        continue
      record = json.loads(line)
      kind = record['record']
      if kind == checks.COUNT:
        summary.counts[record['name']] = int(record['value'])
      elif kind == checks.JOBS:
        summary.jobs.append(coverage.JobCount(record['split'], bool(record['relevant']),
                                              int(record['count']), tuple(record['sample'])))
      elif kind == checks.SLICE:
        summary.slices.append(coverage.SliceCount(record['feature'], record['value'],
                                                  record['split'], bool(record['relevant']),
                                                  int(record['count'])))
      else:
        summary.problems.append(report.Problem(record['file_kind'], record['field'],
                                               record['problem'], int(record['count']),
                                               tuple(record['sample'])))
  order = {kind: i for i, kind in enumerate(checks.FILE_KIND_ORDER)}
  summary.problems.sort(key=lambda p: (order.get(p.file_kind, len(order)), p.file_kind, p.field,
                                       p.problem))
  return summary


class Executor(base_beam_executor.BaseBeamExecutor):
  """Validates the cvrank dataset and builds one ranking example per job."""

  def _summary_path(self) -> str:
    try:
      tmp_dir = self._get_tmp_dir()
    except RuntimeError:  # No executor context (a direct call): a local temporary directory.
      tmp_dir = tempfile.mkdtemp(prefix='data_check_')
    return os.path.join(tmp_dir, _SUMMARY_FILE)

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Checks the data; writes `ranking_examples` or raises.

    Args:
      input_dict: `texts` (Examples, splits `cvs` and optionally `corpus`), `jobs` (Examples, any
        splits), `judgments` (Examples, any splits, all read), and the ExampleAnomalies
        `texts_anomalies`, `jobs_anomalies`, `judgments_anomalies` of ExampleValidator.
      output_dict: `ranking_examples` (Examples): the splits of `jobs`, one tf.Example per job
        with a relevant CV; custom properties `warnings` (a JSON list of sentences, `[]` when
        none), `num_jobs_without_relevant_<split>` and the dataset counts.
      exec_properties: `max_samples`, offending values listed per kind of problem;
        `relevance_threshold`, the relevance from which a CV is relevant (the metrics'); `eval_split`,
        the jobs split the Evaluator scores; `slice_features`, a JSON list of the features it
        slices by.

    Raises:
      DataValidationError: any anomaly in the three anomalies artifacts, any cross-reference
        problem, or no job of `eval_split` with a relevant CV; the message is the report. The
        ranking examples are then not published.
      ValueError: an input is not tf.Example data or `texts` has no `cvs` split.
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    texts = artifact_utils.get_single_instance(input_dict[TEXTS_KEY])
    jobs = artifact_utils.get_single_instance(input_dict[JOBS_KEY])
    judgments = artifact_utils.get_single_instance(input_dict[JUDGMENTS_KEY])
    for key, artifact in ((TEXTS_KEY, texts), (JOBS_KEY, jobs), (JUDGMENTS_KEY, judgments)):
      _check_tf_examples(artifact, key)
    max_samples = int(exec_properties.get(MAX_SAMPLES_KEY) or 10)
    relevance_threshold = float(exec_properties[RELEVANCE_THRESHOLD_KEY])
    eval_split = exec_properties[EVAL_SPLIT_KEY]
    slice_features = json.loads(exec_properties[SLICE_FEATURES_KEY])

    anomalies = (
        report.anomalies_of(
            artifact_utils.get_single_instance(input_dict[TEXTS_ANOMALIES_KEY]),
            {CVS_SPLIT: 'cvs', CORPUS_SPLIT: 'corpus'}, 'texts')
        + report.anomalies_of(
            artifact_utils.get_single_instance(input_dict[JOBS_ANOMALIES_KEY]), {}, 'jobs')
        + report.anomalies_of(
            artifact_utils.get_single_instance(input_dict[JUDGMENTS_ANOMALIES_KEY]), {},
            'judgments'))

    text_splits = artifact_utils.decode_split_names(texts.split_names)
    if CVS_SPLIT not in text_splits:
      raise ValueError(f'{TEXTS_KEY} must have a split {CVS_SPLIT!r}; it has {text_splits}')
    job_splits = artifact_utils.decode_split_names(jobs.split_names)
    judgment_splits = artifact_utils.decode_split_names(judgments.split_names)

    output = artifact_utils.get_single_instance(output_dict[RANKING_EXAMPLES_KEY])
    output.split_names = artifact_utils.encode_split_names(job_splits)
    output.span = jobs.span
    examples_utils.set_payload_format(output, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(output, 'tfrecords_gzip')

    summary_path = self._summary_path()
    with self._make_beam_pipeline() as pipeline:
      cvs = _read(pipeline, texts, CVS_SPLIT, 'texts-cvs')
      corpus = (_read(pipeline, texts, CORPUS_SPLIT, 'texts-corpus')
                if CORPUS_SPLIT in text_splits else None)
      job_rows = [
          _read(pipeline, jobs, split, f'jobs-{split}')
          | f'TagSplit[{split}]' >> beam.Map(lambda s, split=split: (split, s))
          for split in job_splits]
      judgment_rows = [_read(pipeline, judgments, split, f'judgments-{split}')
                       for split in judgment_splits]
      ranking, summary = checks.check_and_join(
          cvs, corpus,
          job_rows | 'FlattenJobs' >> beam.Flatten(),
          judgment_rows | 'FlattenJudgments' >> beam.Flatten(),
          max_samples, relevance_threshold=relevance_threshold, slice_features=slice_features)
      for split in job_splits:
        _ = (ranking
             | f'Select[{split}]' >> beam.Filter(lambda kv, split=split: kv[0] == split)
             | f'Values[{split}]' >> beam.Values()
             | f'Write[{split}]' >> beam.io.WriteToTFRecord(
                 os.path.join(artifact_utils.get_split_uri([output], split), OUTPUT_FILE_PREFIX),
                 file_name_suffix='.gz'))
      _ = (summary
           | 'SummaryJson' >> beam.Map(checks.to_json_line)
           | 'WriteSummary' >> beam.io.WriteToText(summary_path, num_shards=1,
                                                   shard_name_template=''))

    summary = read_summary(summary_path)
    for name, value in sorted(summary.counts.items()):
      output.set_int_custom_property(name, value)
    for split in job_splits:
      output.set_int_custom_property(JOBS_WITHOUT_RELEVANT_PREFIX + split,
                                     coverage.jobs_left_out(summary.jobs, split))
    uncovered, warnings = coverage.assess(summary.jobs, summary.slices, job_splits, eval_split,
                                          slice_features, relevance_threshold)
    problems = summary.problems + uncovered
    # Set even when empty: "[]" says the data was checked and nothing was found.
    output.set_string_custom_property(mlmd.WARNINGS_PROPERTY, json.dumps(warnings))
    if anomalies or problems:
      message = report.format_report(anomalies, problems, warnings)
      logging.error('%s', message)
      raise DataValidationError(message)
    for warning in warnings:
      logging.warning('DataCheck: %s', warning)
    logging.info('DataCheck: data valid; counts %s; ranking examples in splits %s; %d warnings',
                 summary.counts, job_splits, len(warnings))
