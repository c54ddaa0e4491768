"""Loads a `CooccurrenceMatrix` artifact for training: the cells, checked for what GloVe needs.

Parsing is `components.cooccurrence.io.read_cooccurrence` (the artifact's one reader); this adds the
checks the trainer relies on: ids within int32, every x finite and positive (GloVe takes log x), and
each cell once.
"""

from __future__ import annotations

import numpy as np

from components.cooccurrence.io import read_cooccurrence


def read_cooccurrence_shards(uri: str, validate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matrix at `uri` as (i int32, j int32, x float32). Raises FileNotFoundError when it has no
    shard and ValueError when a record is malformed or, with `validate`, a check above fails."""
    i64, j64, x = read_cooccurrence(uri)
    if validate:
        _validate(uri, i64, j64, x)
    return i64.astype(np.int32), j64.astype(np.int32), x.astype(np.float32, copy=False)


def _validate(uri: str, i: np.ndarray, j: np.ndarray, x: np.ndarray) -> None:
    if i.size == 0:
        return
    limit = np.iinfo(np.int32).max
    if min(i.min(), j.min()) < 0 or max(i.max(), j.max()) > limit:
        raise ValueError(f"{uri}: ids must lie in [0, {limit}]")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"{uri}: every x must be a finite positive number")
    keys = np.sort((i << 32) | j)
    if np.any(keys[1:] == keys[:-1]):
        raise ValueError(f"{uri}: a cell (i, j) appears more than once")
