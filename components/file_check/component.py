"""FileCheck: a TFX component checking the dataset's files against their contract (dataset.files)."""

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec

from components.file_check import executor
from components.file_check.artifacts import DatasetFiles
from components.file_check.spec import FileCheckSpec
from dataset import files


class FileCheck(base_component.BaseComponent):
  """Fails the run when a dataset file breaks the file contract of `dataset.files`.

  Checks encoding (UTF-8, byte order mark accepted), headers, field counts, field sizes, integer
  columns, empty files, and that cvs, jobs and judgments have files; raises
  `dataset.files.InputFileError` naming the file, line and problem of each (all files are checked,
  up to `dataset.files.MAX_PROBLEMS` problems). A header-only file stops the run when no file of
  its kind has rows (`<path>: header only, no rows`); beside files with rows it is a warning
  (`<path>: header only, no rows; ignored`), logged and recorded in the output's `warnings`
  property. Runs in the launcher's process without Beam.

  Order the ExampleGens after it (they have no input channel from it):
  ```
  file_check = FileCheck(input_base=data_dir)
  jobs_gen = DatasetExampleGen(input_base=data_dir, input_config=...)
  jobs_gen.add_upstream_node(file_check)
  ```

  Component `outputs` contains:
   - `dataset_files`: a `DatasetFiles` artifact (`files.json`, per-kind row counts, `warnings`).
  """

  SPEC_CLASS = FileCheckSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, input_base: str, fingerprint: Optional[str] = None):
    """Constructs a FileCheck component.

    Args:
      input_base: the dataset directory (cvs/, jobs/, judgments/, optional corpus/).
      fingerprint: `dataset.files.fingerprint(input_base)`, computed here when None. It is part of
        TFX's cache key, so a cached check is reused only while no dataset file has changed since
        the pipeline was built.
    """
    if fingerprint is None:
      fingerprint = files.fingerprint(input_base)
    spec = FileCheckSpec(
        input_base=input_base,
        fingerprint=fingerprint,
        dataset_files=types.Channel(type=DatasetFiles))
    super().__init__(spec=spec)
