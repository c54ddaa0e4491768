"""DataCheck's findings and the report it raises: ExampleValidator anomalies read back from their
artifacts, cross-reference problems found by the Beam checks, and `DataValidationError`."""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

# File names ExampleValidator writes in each `Split-<name>/` directory: TFX 1.21 writes the binary
# `SchemaDiff.pb`; some older releases wrote the text proto `anomalies.pbtxt`.
BINARY_ANOMALIES_FILE = 'SchemaDiff.pb'
TEXT_ANOMALIES_FILE = 'anomalies.pbtxt'


class DataValidationError(RuntimeError):
  """The input data failed validation; the message is the full, human-readable report."""


@dataclasses.dataclass(frozen=True)
class Anomaly:
  """One reason ExampleValidator gave for one feature (or for the whole split when `feature` is
  empty), in the dataset file kind (`cvs`, `corpus`, `jobs`, `judgments`) and example split it was
  found in."""

  file_kind: str
  split: str
  feature: str
  anomaly_type: str
  short_description: str
  description: str

  def format(self) -> str:
    where = f'{self.file_kind} (split {self.split})'
    what = f"feature '{self.feature}'" if self.feature else 'whole split'
    return (f'{where}: {what}: {self.short_description}: {self.description} '
            f'[{self.anomaly_type}]')


@dataclasses.dataclass(frozen=True)
class Problem:
  """One kind of cross-reference problem: `count` offending values in total, `sample` the first
  few in sorted order."""

  file_kind: str
  field: str
  problem: str
  count: int
  sample: Sequence[str]

  def format(self) -> str:
    shown = ', '.join(self.sample)
    more = f', ... ({self.count - len(self.sample)} more)' if self.count > len(self.sample) else ''
    return f'{self.file_kind}: {self.field}: {self.problem}: {self.count} found: {shown}{more}'


def read_anomalies_proto(split_dir: str) -> Optional[anomalies_pb2.Anomalies]:
  """The Anomalies proto ExampleValidator wrote in `split_dir`, or None when it holds none."""
  binary = os.path.join(split_dir, BINARY_ANOMALIES_FILE)
  if fileio.exists(binary):
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(io_utils.read_bytes_file(binary))
    return anomalies
  text = os.path.join(split_dir, TEXT_ANOMALIES_FILE)
  if fileio.exists(text):
    return io_utils.parse_pbtxt_file(text, anomalies_pb2.Anomalies())
  return None


def _type_name(anomaly_type: int) -> str:
  try:
    return anomalies_pb2.AnomalyInfo.Type.Name(anomaly_type)
  except ValueError:
    return str(anomaly_type)


def _from_info(file_kind: str, split: str, feature: str,
               info: anomalies_pb2.AnomalyInfo) -> List[Anomaly]:
  if not info.reason:
    return [Anomaly(file_kind, split, feature, 'UNKNOWN_TYPE', info.short_description,
                    info.description)]
  return [Anomaly(file_kind, split, feature, _type_name(r.type), r.short_description,
                  r.description) for r in info.reason]


def anomalies_of(artifact: types.Artifact, file_kinds: Dict[str, str],
                 default_kind: str) -> List[Anomaly]:
  """Every anomaly recorded in an ExampleAnomalies artifact, split by split.

  Args:
    artifact: an ExampleAnomalies artifact (ExampleValidator's `anomalies` output).
    file_kinds: split name -> dataset file kind, for artifacts whose splits are different files
      (texts: `cvs`, `corpus`).
    default_kind: the file kind of splits not in `file_kinds`.

  A split listed in the artifact's `split_names` without an anomalies file is reported as an anomaly
  too: the validation result is unknown.
  """
  found = []
  for split in artifact_utils.decode_split_names(artifact.split_names):
    kind = file_kinds.get(split, default_kind)
    anomalies = read_anomalies_proto(artifact_utils.get_split_uri([artifact], split))
    if anomalies is None:
      found.append(Anomaly(kind, split, '', 'UNKNOWN_TYPE', 'No validation result',
                           f'no {BINARY_ANOMALIES_FILE} or {TEXT_ANOMALIES_FILE} in '
                           f'{artifact.uri}'))
      continue
    for feature in sorted(anomalies.anomaly_info):
      found.extend(_from_info(kind, split, feature, anomalies.anomaly_info[feature]))
    if anomalies.HasField('dataset_anomaly_info'):
      found.extend(_from_info(kind, split, '', anomalies.dataset_anomaly_info))
  return found


def format_report(anomalies: Sequence[Anomaly], problems: Sequence[Problem],
                  warnings: Sequence[str] = ()) -> str:
  """The report DataCheck raises: a headline, then ExampleValidator anomalies (schema violations),
  then cross-reference problems, then the data warnings (which alone would not stop the run), one
  line each."""
  lines = [f'DataCheck: the input data is not valid (schema anomalies: {len(anomalies)}, '
           f'kinds of cross-reference problems: {len(problems)}); the run stops before training.']
  if anomalies:
    lines.append('ExampleValidator anomalies (data against pipeline/schemas/*.pbtxt):')
    lines.extend('  - ' + a.format() for a in anomalies)
  if problems:
    lines.append('Cross-reference problems:')
    lines.extend('  - ' + p.format() for p in problems)
  if warnings:
    lines.append('Warnings (these alone would not stop the run):')
    lines.extend('  - ' + w for w in warnings)
  return '\n'.join(lines)
