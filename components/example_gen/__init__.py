"""DatasetExampleGen: the ExampleGen for the dataset's CSV files (dataset.files), replacing TFX's
CsvExampleGen: byte order marks, CRLF and quoted multi-line fields are read, column types are
declared instead of inferred, and file problems are reported with file and line.

Public names: `DatasetExampleGen` (component) and `Executor`. They are imported lazily so that Beam
workers importing a submodule do not load the component's TFX dependencies twice.
"""

import importlib

_EXPORTS = {
    'DatasetExampleGen': 'components.example_gen.component',
    'Executor': 'components.example_gen.executor',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
