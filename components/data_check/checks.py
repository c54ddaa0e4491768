"""DataCheck's Beam part: cross-reference checks between CVs, jobs and judgments, and the join that
builds one ranking example per job with a relevant CV.

Every join is a Beam grouping (`CoGroupByKey` on job_id / cv_id, `Count.PerKey` for duplicates);
nothing is collected on the driver. Problems leave the pipeline as a bounded summary: per kind of
problem a count and the first `max_samples` offending values in sorted order; likewise the jobs
per split with and without a relevant CV (with the first `NAMED_JOBS` job ids) and the jobs per
slice value, from which the driver words its warnings (components/data_check/coverage.py).
"""

import heapq
import json
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf

# Features of a job that ranking examples carry over unchanged (major_group stays INT).
JOB_FEATURES = ('job_id', 'title', 'text', 'major_group', 'minor_group')
JUDGED_CV_IDS = 'judged_cv_ids'
JUDGED_RELEVANCE = 'judged_relevance'
TEXT_WORDS_BUCKET = 'text_words_bucket'
RELEVANCE_GRADES = (0, 1, 2)

# text_words_bucket: `short` below SHORT_MAX_WORDS words, `long` from LONG_MIN_WORDS, else `medium`.
# The bounds are near the quartiles of the bundled O*NET descriptions (19, 27 and 40 words), so terse
# and detailed job descriptions each form a slice of useful size.
SHORT_MAX_WORDS = 20
LONG_MIN_WORDS = 40

# Record kinds in the summary file: a kind of problem, a dataset count, the jobs of one split with
# or without a relevant CV (`JOBS`), the jobs of one slice value in one split (`SLICE`).
PROBLEM = 'problem'
COUNT = 'count'
JOBS = 'jobs'
SLICE = 'slice'
# Job ids kept per split for the warning about jobs without a relevant CV.
NAMED_JOBS = 5

# Problem keys are (file kind, field, problem); the report lists them in this file-kind order.
FILE_KIND_ORDER = ('cvs', 'corpus', 'jobs', 'judgments')
_PREVIEW_CHARS = 40


def feature_values(example: tf.train.Example, name: str) -> Optional[List[Any]]:
  """The values of feature `name` (bytes decoded as UTF-8), [] when it has none, None when the
  example has no such feature."""
  if name not in example.features.feature:
    return None
  feature = example.features.feature[name]
  kind = feature.WhichOneof('kind')
  if kind is None:
    return []
  return [v.decode('utf-8', 'replace') if isinstance(v, bytes) else v
          for v in getattr(feature, kind).value]


def single_value(example: tf.train.Example, name: str) -> Optional[str]:
  """The one value of feature `name` as text, or None unless it has exactly one value. Integers are
  accepted as text (the schemas, not this check, decide each feature's type)."""
  values = feature_values(example, name)
  if not values or len(values) != 1:
    return None
  return str(values[0])


def is_blank(text: Optional[str]) -> bool:
  return text is None or not text.strip()


def words_bucket(text: str) -> str:
  """`short` (< 20 words), `medium` (20-39) or `long` (>= 40); words are whitespace-separated."""
  n = len(text.split())
  if n < SHORT_MAX_WORDS:
    return 'short'
  if n < LONG_MIN_WORDS:
    return 'medium'
  return 'long'


def _preview(text: Optional[str]) -> str:
  if text is None:
    return '<none>'
  text = ' '.join(text.split())
  return repr(text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + '...')


def _judgments(n: int) -> str:
  return f'in {n} judgment' + ('' if n == 1 else 's')


def _problem(file_kind: str, field: str, problem: str, value: str):
  return ((file_kind, field, problem), value)


def ranking_example(job: tf.train.Example, judged: Iterable[Tuple[str, int]]) -> tf.train.Example:
  """The ranking example of `job`: its JOB_FEATURES, `judged_cv_ids` / `judged_relevance` (the
  judgments sorted by cv_id; empty lists when there are none) and `text_words_bucket`."""
  out = tf.train.Example()
  features = out.features.feature
  for name in JOB_FEATURES:
    if name in job.features.feature:
      features[name].CopyFrom(job.features.feature[name])
  pairs = sorted(judged)
  # SetInParent: an empty list must still be a typed, present feature.
  features[JUDGED_CV_IDS].bytes_list.SetInParent()
  features[JUDGED_CV_IDS].bytes_list.value.extend(c.encode('utf-8') for c, _ in pairs)
  features[JUDGED_RELEVANCE].int64_list.SetInParent()
  features[JUDGED_RELEVANCE].int64_list.value.extend(r for _, r in pairs)
  text = single_value(job, 'text') or ''
  features[TEXT_WORDS_BUCKET].bytes_list.value.append(words_bucket(text).encode('utf-8'))
  return out


class SampleAndCount(beam.CombineFn):
  """Combines offending values into (count, the `max_samples` smallest distinct values)."""

  def __init__(self, max_samples: int):
    self._max_samples = max_samples

  def create_accumulator(self):
    return 0, []

  def add_input(self, accumulator, value):
    count, sample = accumulator
    return count + 1, heapq.nsmallest(self._max_samples, set(sample) | {value})

  def merge_accumulators(self, accumulators):
    count, sample = 0, set()
    for c, s in accumulators:
      count += c
      sample.update(s)
    return count, heapq.nsmallest(self._max_samples, sample)

  def extract_output(self, accumulator):
    return accumulator


# ---- per-dataset row checks ---------------------------------------------------------------------

class _CheckCv(beam.DoFn):
  """cvs rows -> (cv_id, 1) for counting; problems to the `problems` output."""

  def process(self, serialized: bytes):
    example = tf.train.Example.FromString(serialized)
    cv_id = single_value(example, 'cv_id')
    text = single_value(example, 'text')
    if cv_id is None:
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'cvs', 'cv_id', 'missing or not a single value (CV text shown)', _preview(text)))
    if is_blank(text):
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'cvs', 'text', 'empty text (cv_id shown)', cv_id or '<no cv_id>'))
    if cv_id is not None:
      yield cv_id, 1


def _check_corpus(serialized: bytes):
  example = tf.train.Example.FromString(serialized)
  if is_blank(single_value(example, 'text')):
    yield _problem('corpus', 'text', 'empty text', '<empty>')


class _CheckJob(beam.DoFn):
  """(split, jobs row) -> (job_id, (split, serialized)); problems to the `problems` output."""

  def process(self, split_and_serialized: Tuple[str, bytes]):
    split, serialized = split_and_serialized
    example = tf.train.Example.FromString(serialized)
    job_id = single_value(example, 'job_id')
    text = single_value(example, 'text')
    if job_id is None:
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'jobs', 'job_id', 'missing or not a single value (title shown)',
          _preview(single_value(example, 'title'))))
    if is_blank(text):
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'jobs', 'text', 'empty text (job_id shown)', job_id or '<no job_id>'))
    if job_id is not None:
      yield job_id, (split, serialized)


class _CheckJudgment(beam.DoFn):
  """judgments rows -> (job_id, cv_id, relevance or None); problems to the `problems` output."""

  def process(self, serialized: bytes):
    example = tf.train.Example.FromString(serialized)
    job_id = single_value(example, 'job_id')
    cv_id = single_value(example, 'cv_id')
    relevance = feature_values(example, 'relevance')
    row = f'job_id {job_id or "<none>"}, cv_id {cv_id or "<none>"}'
    if job_id is None:
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'judgments', 'job_id', 'missing or not a single value', row))
    if cv_id is None:
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'judgments', 'cv_id', 'missing or not a single value', row))
    grade = None
    if (relevance and len(relevance) == 1 and isinstance(relevance[0], int)
        and relevance[0] in RELEVANCE_GRADES):
      grade = relevance[0]
    else:
      shown = '<none>' if not relevance else ' '.join(str(v) for v in relevance)
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'judgments', 'relevance', 'not one of 0, 1, 2', f'{row}: relevance {shown}'))
    if job_id is not None and cv_id is not None:
      yield job_id, cv_id, grade


# ---- joins ---------------------------------------------------------------------------------------

def _duplicates(file_kind: str, field: str, what: str):
  def emit(key_and_count):
    key, count = key_and_count
    if count > 1:
      shown = ', '.join(key) if isinstance(key, tuple) else key
      yield _problem(file_kind, field, f'duplicate {what}', f'{shown} ({count} rows)')
  return emit


def _unknown_cv_ids(cv_id_and_groups):
  """CoGroupByKey on cv_id of CV counts and judgment counts: judged cv_ids without a CV."""
  cv_id, groups = cv_id_and_groups
  judged = sum(groups['judgments'])
  if judged and not any(True for _ in groups['cvs']):
    yield _problem('judgments', 'cv_id', 'not among the CVs (cvs/*.csv)',
                   f'{cv_id} ({_judgments(judged)})')


class _JoinJob(beam.DoFn):
  """CoGroupByKey on job_id of jobs rows and (cv_id, relevance) judgments: one (split, serialized
  ranking example) per job with a relevant CV (relevance >= `relevance_threshold`); unknown and
  duplicate job_ids to the `problem` output. Every joined job also goes to the `jobs` output as
  ((split, has a relevant CV), job_id), and to the `slice` output as ((feature, value, split, has
  a relevant CV), 1) for each value of each of `slice_features` in its ranking example."""

  def __init__(self, relevance_threshold: float, slice_features: Sequence[str]):
    self._relevance_threshold = relevance_threshold
    self._slice_features = tuple(slice_features)

  def process(self, job_id_and_groups):
    job_id, groups = job_id_and_groups
    jobs = list(groups['jobs'])
    if not jobs:
      judged = sum(1 for _ in groups['judgments'])
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'judgments', 'job_id', 'not among the jobs (jobs/*.csv)',
          f'{job_id} ({_judgments(judged)})'))
      return
    if len(jobs) > 1:
      yield beam.pvalue.TaggedOutput(PROBLEM, _problem(
          'jobs', 'job_id', 'duplicate job_id', f'{job_id} ({len(jobs)} rows)'))
      return
    split, serialized = jobs[0]
    judged = list(groups['judgments'])
    relevant = any(grade >= self._relevance_threshold for _, grade in judged)
    example = ranking_example(tf.train.Example.FromString(serialized), judged)
    yield beam.pvalue.TaggedOutput(JOBS, ((split, relevant), job_id))
    for feature in self._slice_features:
      for value in feature_values(example, feature) or ():
        yield beam.pvalue.TaggedOutput(SLICE, ((feature, value, split, relevant), 1))
    # Ranking metrics are undefined for a job without a relevant CV: it would only add a NaN or
    # an empty slice to the evaluation, so it is counted and named instead of scored.
    if relevant:
      yield split, example.SerializeToString()


def _count(name: str, pcoll: beam.PCollection, label: str) -> beam.PCollection:
  return (pcoll
          | f'Count{label}' >> beam.combiners.Count.Globally()
          | f'CountRecord{label}' >> beam.Map(lambda n: {'record': COUNT, 'name': name,
                                                         'value': n}))


def check_and_join(cvs: beam.PCollection,
                   corpus: Optional[beam.PCollection],
                   jobs: beam.PCollection,
                   judgments: beam.PCollection,
                   max_samples: int,
                   *,
                   relevance_threshold: float,
                   slice_features: Sequence[str]) -> Tuple[beam.PCollection, beam.PCollection]:
  """Runs every cross-reference check and builds the ranking examples.

  Args:
    cvs: serialized tf.Examples of the cvs split (cv_id, text).
    corpus: serialized tf.Examples of the corpus split (text), or None without a corpus.
    jobs: (split name, serialized tf.Example) of every jobs split.
    judgments: serialized tf.Examples of the judgments (job_id, cv_id, relevance).
    max_samples: offending values kept per kind of problem.
    relevance_threshold: a CV is relevant for a job from this relevance on (the ranking metrics'
      threshold); a job without a relevant CV gets no ranking example.
    slice_features: features of the ranking examples the evaluation slices by; jobs are counted
      per value of each.

  Returns:
    (ranking, summary): ranking is (jobs split name, serialized ranking example), one per job with
    a unique job_id and a relevant CV; summary holds small JSON-able dicts: one `problem` record
    per kind of problem (file_kind, field, problem, count, sample), `count` records (name, value)
    for num_cvs, num_corpus_texts, num_jobs, num_judgments, num_judged_jobs, one `jobs` record per
    split and relevance (split, relevant, count, sample: the first `NAMED_JOBS` job ids in sorted
    order) and one `slice` record per slice value, split and relevance (feature, value, split,
    relevant, count).
  """
  problems = []

  cv_rows = cvs | 'CheckCvs' >> beam.ParDo(_CheckCv()).with_outputs(PROBLEM, main='ids')
  problems.append(cv_rows[PROBLEM])
  cv_counts = cv_rows.ids | 'CountCvIds' >> beam.CombinePerKey(sum)
  problems.append(cv_counts | 'DuplicateCvIds' >> beam.FlatMap(
      _duplicates('cvs', 'cv_id', 'cv_id')))

  if corpus is not None:
    problems.append(corpus | 'CheckCorpus' >> beam.FlatMap(_check_corpus))

  job_rows = jobs | 'CheckJobs' >> beam.ParDo(_CheckJob()).with_outputs(PROBLEM, main='keyed')
  problems.append(job_rows[PROBLEM])

  judgment_rows = (judgments
                   | 'CheckJudgments' >> beam.ParDo(_CheckJudgment()).with_outputs(
                       PROBLEM, main='rows'))
  problems.append(judgment_rows[PROBLEM])
  rows = judgment_rows.rows
  problems.append(rows
                  | 'KeyByPair' >> beam.Map(lambda r: ((r[0], r[1]), 1))
                  | 'CountPairs' >> beam.CombinePerKey(sum)
                  | 'DuplicatePairs' >> beam.FlatMap(
                      _duplicates('judgments', '(job_id, cv_id)', 'judgment')))

  judged_per_cv = (rows
                   | 'KeyByCvId' >> beam.Map(lambda r: (r[1], 1))
                   | 'CountJudgedCvIds' >> beam.CombinePerKey(sum))
  problems.append({'cvs': cv_counts, 'judgments': judged_per_cv}
                  | 'JoinOnCvId' >> beam.CoGroupByKey()
                  | 'UnknownCvIds' >> beam.FlatMap(_unknown_cv_ids))

  judged_per_job = (rows
                    | 'ValidGrades' >> beam.Filter(lambda r: r[2] is not None)
                    | 'KeyByJobId' >> beam.Map(lambda r: (r[0], (r[1], r[2]))))
  joined = ({'jobs': job_rows.keyed, 'judgments': judged_per_job}
            | 'JoinOnJobId' >> beam.CoGroupByKey()
            | 'JoinJobs' >> beam.ParDo(_JoinJob(relevance_threshold, slice_features)).with_outputs(
                PROBLEM, JOBS, SLICE, main='ranking'))
  problems.append(joined[PROBLEM])
  ranking = joined.ranking
  job_records = (joined[JOBS]
                 | 'SampleJobs' >> beam.CombinePerKey(SampleAndCount(NAMED_JOBS))
                 | 'JobRecords' >> beam.Map(lambda kv: {
                     'record': JOBS, 'split': kv[0][0], 'relevant': kv[0][1], 'count': kv[1][0],
                     'sample': list(kv[1][1])}))
  slice_records = (joined[SLICE]
                   | 'CountSlices' >> beam.CombinePerKey(sum)
                   | 'SliceRecords' >> beam.Map(lambda kv: {
                       'record': SLICE, 'feature': kv[0][0], 'value': kv[0][1],
                       'split': kv[0][2], 'relevant': kv[0][3], 'count': kv[1]}))

  problem_records = (problems
                     | 'FlattenProblems' >> beam.Flatten()
                     | 'SampleProblems' >> beam.CombinePerKey(SampleAndCount(max_samples))
                     | 'ProblemRecords' >> beam.Map(lambda kv: {
                         'record': PROBLEM, 'file_kind': kv[0][0], 'field': kv[0][1],
                         'problem': kv[0][2], 'count': kv[1][0], 'sample': list(kv[1][1])}))
  counts = [
      _count('num_cvs', cvs, 'Cvs'),
      _count('num_jobs', jobs, 'Jobs'),
      _count('num_judgments', judgments, 'Judgments'),
      _count('num_judged_jobs',
             judged_per_job | 'JudgedJobIds' >> beam.Keys()
             | 'DistinctJudgedJobIds' >> beam.Distinct(), 'JudgedJobs'),
  ]
  if corpus is not None:
    counts.append(_count('num_corpus_texts', corpus, 'Corpus'))
  summary = ([problem_records, job_records, slice_records] + counts
             | 'FlattenSummary' >> beam.Flatten())
  return ranking, summary


def to_json_line(record: Dict[str, Any]) -> str:
  return json.dumps(record, sort_keys=True)
