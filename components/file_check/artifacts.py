"""The `DatasetFiles` artifact type: the dataset files FileCheck found valid."""

from tfx.types.artifact import Artifact

FILES_JSON = 'files.json'
# Int custom properties: the number of files and of bytes, and `rows_<kind>` for each file kind
# present (data rows, header and blank lines not counted).
NUM_FILES = 'num_files'
NUM_BYTES = 'num_bytes'
ROWS_PREFIX = 'rows_'
# String custom properties: the checked directory and its fingerprint (dataset.files.fingerprint).
INPUT_BASE = 'input_base'
FINGERPRINT = 'fingerprint'


class DatasetFiles(Artifact):
  """A checked dataset: `files.json` lists every file as {path, kind, rows, bytes, sha256}.

  Custom properties: `num_files`, `num_bytes`, `rows_<kind>` (ints), `input_base`,
  `fingerprint` and `warnings` (strings; `warnings` is a JSON list of sentences, `[]` when none).
  """

  TYPE_NAME = 'cvrank.DatasetFiles'
