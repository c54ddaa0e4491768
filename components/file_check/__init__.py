"""FileCheck: the TFX component that checks the dataset's files (dataset.files) before anything
reads them, and fails the run with every file problem (file, line, problem) at once.

Public names: `FileCheck` (component) and `DatasetFiles` (artifact type). They are imported lazily,
like the other components' names, so that importing a submodule does not load TFX.
"""

import importlib

_EXPORTS = {
    'FileCheck': 'components.file_check.component',
    'DatasetFiles': 'components.file_check.artifacts',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
