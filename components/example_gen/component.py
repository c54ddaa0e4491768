"""DatasetExampleGen: TFX's FileBasedExampleGen with the dataset's CSV reader (executor.py)."""

from typing import Optional, Union

from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2

from components.example_gen import executor


class DatasetExampleGen(FileBasedExampleGen):
  """Reads dataset CSV files (dataset.files) into tf.train.Examples with the declared column types.

  The file kind of each input split is the first directory of its pattern: `cvs/*.csv` reads CV
  files, `jobs/*.csv` jobs, `judgments/*.csv` judgments, `corpus/*.csv` corpus texts. Everything else
  is FileBasedExampleGen's: the driver resolves and fingerprints the input files (the cache key),
  the output config splits by hash (optionally of a feature, e.g. `job_id`), and the output is
  GZIP TFRecords of tf.train.Examples.

  ## Example
  ```
  jobs_gen = DatasetExampleGen(
      input_base=data_dir,
      input_config=example_gen_pb2.Input(splits=[
          example_gen_pb2.Input.Split(name='jobs', pattern='jobs/*.csv')]))
  ```

  Component `outputs` contains:
   - `examples`: an `Examples` artifact.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(
      self,
      input_base: str,
      input_config: Union[example_gen_pb2.Input, data_types.RuntimeParameter],
      output_config: Optional[Union[example_gen_pb2.Output,
                                    data_types.RuntimeParameter]] = None):
    """Constructs a DatasetExampleGen component.

    Args:
      input_base: the dataset directory.
      input_config: the input splits; each pattern is relative to `input_base` and its first
        directory is a file kind (cvs, jobs, judgments, corpus).
      output_config: the output splits; None keeps the input splits when there are several, and
        splits a single input 2:1 into train and eval (FileBasedExampleGen's default).
    """
    if isinstance(input_config, example_gen_pb2.Input):
      for split in input_config.splits:
        executor.split_kind(split.pattern)  # fail at pipeline construction, not at run time
    super().__init__(input_base=input_base, input_config=input_config,
                     output_config=output_config)
