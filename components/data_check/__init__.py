"""DataCheck: validates the cvrank dataset (schemas via ExampleValidator, cross-references via Beam)
and builds one ranking example per job.

Public names: `DataCheck` (component) and `DataValidationError` (what it raises on bad data). They
are imported lazily so that Beam workers unpickling functions of `checks` do not load TFX.
"""

import importlib

_EXPORTS = {
    'DataCheck': 'components.data_check.component',
    'DataValidationError': 'components.data_check.report',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
