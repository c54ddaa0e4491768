"""DataCheck: the pipeline's data-validation gate, a TFX component that fails the run on bad input
data and otherwise builds the ranking examples the Evaluator reads."""

import json
from typing import Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.data_check import executor
from evaluation import ranking
from evaluation import slices

TEXTS_KEY = executor.TEXTS_KEY
JOBS_KEY = executor.JOBS_KEY
JUDGMENTS_KEY = executor.JUDGMENTS_KEY
TEXTS_ANOMALIES_KEY = executor.TEXTS_ANOMALIES_KEY
JOBS_ANOMALIES_KEY = executor.JOBS_ANOMALIES_KEY
JUDGMENTS_ANOMALIES_KEY = executor.JUDGMENTS_ANOMALIES_KEY
RANKING_EXAMPLES_KEY = executor.RANKING_EXAMPLES_KEY
MAX_SAMPLES_KEY = executor.MAX_SAMPLES_KEY
RELEVANCE_THRESHOLD_KEY = executor.RELEVANCE_THRESHOLD_KEY
EVAL_SPLIT_KEY = executor.EVAL_SPLIT_KEY
SLICE_FEATURES_KEY = executor.SLICE_FEATURES_KEY

DEFAULT_MAX_SAMPLES = 10
DEFAULT_EVAL_SPLIT = 'eval'


class DataCheckSpec(ComponentSpec):
  """DataCheck component spec."""

  PARAMETERS = {
      MAX_SAMPLES_KEY: ExecutionParameter(type=int),
      RELEVANCE_THRESHOLD_KEY: ExecutionParameter(type=float),
      EVAL_SPLIT_KEY: ExecutionParameter(type=str),
      SLICE_FEATURES_KEY: ExecutionParameter(type=str),  # a JSON list of feature names
  }
  INPUTS = {
      TEXTS_KEY: ChannelParameter(type=standard_artifacts.Examples),
      JOBS_KEY: ChannelParameter(type=standard_artifacts.Examples),
      JUDGMENTS_KEY: ChannelParameter(type=standard_artifacts.Examples),
      TEXTS_ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
      JOBS_ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
      JUDGMENTS_ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
  }
  OUTPUTS = {
      RANKING_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
  }


class DataCheck(base_beam_component.BaseBeamComponent):
  """Fails the run on invalid input data; otherwise joins jobs with their judgments.

  Raises `DataValidationError` (components.data_check.DataValidationError), whose message is a
  report naming file kind, split, field and offending values, when
   - any of the three ExampleValidator outputs records an anomaly (the data breaks the schemas in
     pipeline/schemas/), or
   - the cross-reference checks find a judgment whose job_id is not a job or cv_id is not a CV, a
     duplicate cv_id, job_id or (job_id, cv_id) judgment, a relevance outside {0, 1, 2}, a missing
     id or an empty text, or
   - no job of the eval split has a relevant CV (nothing to evaluate).

  Data warnings do not stop the run; each is a sentence, logged at WARNING level and recorded in
  the output's `warnings` property:
   - jobs without a relevant CV (no judgment of relevance >= `relevance_threshold`, the ranking
     metrics' definition) get no ranking example, as the metrics are undefined for them; they are
     counted per split and the first few named;
   - a value of a slice feature that some job has but no ranking example of the eval split has
     (its slice would be missing from the metrics) is named.

  ## Example
  ```
  data_check = DataCheck(
      texts=texts_example_gen.outputs['examples'],
      jobs=jobs_example_gen.outputs['examples'],
      judgments=judgments_example_gen.outputs['examples'],
      texts_anomalies=texts_validator.outputs['anomalies'],
      jobs_anomalies=jobs_validator.outputs['anomalies'],
      judgments_anomalies=judgments_validator.outputs['anomalies'])
  ```

  Component `outputs` contains:
   - `ranking_examples`: Examples (GZIP TFRecord tf.Examples in `Split-<name>/`, the splits of
     `jobs`), one per job with a relevant CV: job_id, title, text, major_group (int),
     minor_group, `judged_cv_ids` (bytes list) and `judged_relevance` (int list), the job's
     judgments sorted by cv_id, and `text_words_bucket` (`short` < 20 words, `medium` 20-39,
     `long` >= 40). Int custom properties num_cvs, num_corpus_texts (with a corpus), num_jobs,
     num_judgments, num_judged_jobs and `num_jobs_without_relevant_<split>`; string custom
     property `warnings`, a JSON list of the warning sentences (`[]` when none).
  """

  SPEC_CLASS = DataCheckSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self,
               texts: types.BaseChannel,
               jobs: types.BaseChannel,
               judgments: types.BaseChannel,
               texts_anomalies: types.BaseChannel,
               jobs_anomalies: types.BaseChannel,
               judgments_anomalies: types.BaseChannel,
               max_samples: int = DEFAULT_MAX_SAMPLES,
               relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD,
               eval_split: str = DEFAULT_EVAL_SPLIT,
               slice_features: Sequence[str] = slices.SLICE_FEATURES):
    """Constructs a DataCheck component.

    Args:
      texts: Examples with split `cvs` (cv_id, text) and optionally `corpus` (text).
      jobs: Examples of the jobs (job_id, title, text, major_group, minor_group); the output has
        the same splits.
      judgments: Examples of the judgments (job_id, cv_id, relevance); every split is read.
      texts_anomalies: ExampleValidator's anomalies for `texts`.
      jobs_anomalies: ExampleValidator's anomalies for `jobs`.
      judgments_anomalies: ExampleValidator's anomalies for `judgments`.
      max_samples: offending values listed per kind of problem (the count is always total).
      relevance_threshold: a CV is relevant for a job from this relevance on; keep it equal to the
        ranking metrics' (evaluation.tfma_metrics), whose default is the default here.
      eval_split: the jobs split the Evaluator scores (`example_splits`).
      slice_features: the features the Evaluator slices by (evaluation.slices, the default).
    """
    if max_samples < 1:
      raise ValueError(f'max_samples must be >= 1, got {max_samples}')
    relevance_threshold = ranking.check_relevance_threshold(relevance_threshold)
    spec = DataCheckSpec(
        texts=texts,
        jobs=jobs,
        judgments=judgments,
        texts_anomalies=texts_anomalies,
        jobs_anomalies=jobs_anomalies,
        judgments_anomalies=judgments_anomalies,
        max_samples=max_samples,
        relevance_threshold=relevance_threshold,
        eval_split=eval_split,
        slice_features=json.dumps(list(slice_features)),
        ranking_examples=types.Channel(type=standard_artifacts.Examples))
    super().__init__(spec=spec)
