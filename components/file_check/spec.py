"""FileCheck's ComponentSpec and its parameter and output names."""

from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.file_check.artifacts import DatasetFiles

INPUT_BASE_KEY = 'input_base'
FINGERPRINT_KEY = 'fingerprint'
DATASET_FILES_KEY = 'dataset_files'


class FileCheckSpec(ComponentSpec):
  """FileCheck component spec.

  `fingerprint` is not read by the executor: it is a parameter so that TFX's cache key (inputs,
  parameters, executor spec) changes, and the check runs again, whenever a dataset file changes.
  """

  PARAMETERS = {
      INPUT_BASE_KEY: ExecutionParameter(type=str),
      FINGERPRINT_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {}
  OUTPUTS = {
      DATASET_FILES_KEY: ChannelParameter(type=DatasetFiles),
  }
