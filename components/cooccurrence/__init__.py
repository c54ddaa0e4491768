"""CooccurrenceGen: the TFX component building GloVe's word-word co-occurrence matrix.

Public names: `CooccurrenceGen` (component), `CooccurrenceMatrix` (artifact type) and
`read_cooccurrence` (reads an artifact's cells as NumPy arrays). They are imported lazily so that
Beam workers and readers importing a submodule (counting, io, transforms) do not load TFX.
"""

import importlib

_EXPORTS = {
    'CooccurrenceGen': 'components.cooccurrence.component',
    'CooccurrenceMatrix': 'components.cooccurrence.artifacts',
    'read_cooccurrence': 'components.cooccurrence.io',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
