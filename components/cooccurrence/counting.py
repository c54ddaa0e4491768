"""Vectorised co-occurrence counting (the NumPy core of CooccurrenceGen).

Semantics follow Stanford GloVe's ``cooccur.c``: out-of-vocabulary ids (< 0) are dropped before
windows are formed; for a token at position p and its context at p - d (d = 1..window, same
document) the pair adds 1/d (1 without distance weighting) to X[w_p, w_{p-d}], and for a
symmetric matrix also to X[w_{p-d}, w_p].

Representation. A partial matrix is a `SparseCounts`: sorted, unique int64 cell keys with one value
each. A cell (i, j) has key ``i * vocab_size + j``. Symmetric matrices are stored as their upper
triangle (i <= j): the cell holds L[i, j] + L[j, i] of the left-context matrix L, which equals
X[i, j] = X[j, i] off the diagonal and X[i, i] / 2 on it (`expand_cells` restores the full matrix).
That halves what is shuffled and merged.

Values are integers whenever possible so sums are exact and independent of how a runner splits
and combines the data: without distance weighting they are counts; with it, each pair at distance
d adds ``scale // d`` where ``scale = lcm(1..window)`` and the true value is ``value / scale``.
Windows whose lcm exceeds `MAX_EXACT_SCALE` use float64 weights 1/d (``scale == 1``) instead.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np

# Largest lcm(1..window) used for exact integer weights (window <= 22). Values are co-occurrence
# weights times the lcm in int64, so a cell stays exact up to 2**63 / lcm (~4e10 at window 22,
# ~3.7e15 at window 10).
MAX_EXACT_SCALE = 2**32


class SparseCounts(NamedTuple):
  """A sparse partial matrix: `keys` sorted unique int64 cell keys, `values` int64 or float64."""
  keys: np.ndarray
  values: np.ndarray

  def __len__(self) -> int:
    return int(self.keys.size)


class Weighting(NamedTuple):
  """How pairs are weighted: `table[d - 1]` is added for a pair at distance d; true = value/scale."""
  table: np.ndarray
  scale: int
  by_distance: bool

  @property
  def dtype(self) -> np.dtype:
    return self.table.dtype


def make_weighting(window: int, distance_weighting: bool) -> Weighting:
  """Returns the weight table for `window`; integer (exact) unless the lcm is too large."""
  if window < 1:
    raise ValueError(f'window must be >= 1, got {window}')
  d = np.arange(1, window + 1, dtype=np.int64)
  if not distance_weighting:
    return Weighting(np.ones(window, np.int64), 1, False)
  scale = math.lcm(*range(1, window + 1))
  if scale <= MAX_EXACT_SCALE:
    return Weighting(scale // d, scale, True)
  return Weighting(1.0 / d.astype(np.float64), 1, True)


def empty_counts(weighting: Weighting) -> SparseCounts:
  return SparseCounts(np.empty(0, np.int64), np.empty(0, weighting.dtype))


def check_vocab_size(vocab_size: int, window: int) -> None:
  """Raises if cell keys (with the distance tag used while counting) could overflow int64."""
  if vocab_size < 1:
    raise ValueError(f'vocab_size must be >= 1, got {vocab_size}')
  tag_bits = max(window - 1, 0).bit_length()
  if (vocab_size * vocab_size) << tag_bits >= 2**63:
    raise ValueError(f'vocab_size {vocab_size} too large for int64 cell keys at window {window}')


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
  """Indices where a new run of equal values starts in a sorted array."""
  flag = np.empty(sorted_keys.size, dtype=bool)
  if sorted_keys.size:
    flag[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=flag[1:])
  return np.flatnonzero(flag)


def count_tokens(tokens: np.ndarray, lengths: np.ndarray, vocab_size: int, window: int,
                 symmetric: bool, weighting: Weighting) -> SparseCounts:
  """Counts one batch of documents.

  Args:
    tokens: int64 token ids of all documents concatenated; ids < 0 are out of vocabulary.
    lengths: the number of ids of each document, in order (sums to ``tokens.size``).
    vocab_size: ids must be < vocab_size.
    window: the context window (pairs at distance 1..window).
    symmetric: store the upper triangle of X (see the module docstring) instead of left contexts.
    weighting: from `make_weighting(window, ...)`.

  Returns:
    The batch's partial matrix.
  """
  tokens = np.asarray(tokens, dtype=np.int64)
  lengths = np.asarray(lengths, dtype=np.int64)
  if lengths.sum() != tokens.size:
    raise ValueError('document lengths do not add up to the number of tokens')
  keep = tokens >= 0
  doc = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)[keep]
  tokens = tokens[keep]
  if tokens.size and tokens.max() >= vocab_size:
    raise ValueError(f'token id {int(tokens.max())} out of range for vocab_size {vocab_size}; '
                     'examples and vocabulary do not match')
  n = tokens.size
  if n < 2:
    return empty_counts(weighting)
  # Position of each in-vocabulary token within its document: a pair at distance d is inside one
  # document iff the later token's position is >= d.
  starts = np.flatnonzero(np.concatenate(([True], doc[1:] != doc[:-1])))
  pos = np.arange(n, dtype=np.int64) - np.repeat(starts, np.diff(np.append(starts, n)))

  tag_bits = (window - 1).bit_length() if weighting.by_distance else 0
  parts = []
  for d in range(1, min(window, n - 1) + 1):
    valid = pos[d:] >= d
    i = tokens[d:][valid]  # the token
    j = tokens[:-d][valid]  # its left context
    if symmetric:
      i, j = np.minimum(i, j), np.maximum(i, j)
    key = i * vocab_size + j
    if tag_bits:
      # The distance rides in the low bits so one plain sort groups (cell, distance) runs.
      key <<= tag_bits
      key |= d - 1
    parts.append(key)
  keys = np.concatenate(parts)
  keys.sort()  # in place: NumPy's SIMD sort, much faster than argsort

  starts = _run_starts(keys)
  run_keys = keys[starts]
  counts = np.diff(np.append(starts, keys.size))
  if not tag_bits:
    return SparseCounts(run_keys, (counts * weighting.table[0]).astype(weighting.dtype))
  values = counts * weighting.table[run_keys & ((1 << tag_bits) - 1)]
  cells = run_keys >> tag_bits
  cell_starts = _run_starts(cells)
  return SparseCounts(cells[cell_starts], np.add.reduceat(values, cell_starts))


def chunk_documents(lengths: np.ndarray, max_tokens: int):
  """Splits documents into consecutive chunks of about `max_tokens` tokens.

  Returns (doc_start, doc_end, token_start, token_end) tuples. A chunk only exceeds `max_tokens`
  by its last document, so a document is never split.
  """
  lengths = np.asarray(lengths, dtype=np.int64)
  if not lengths.size:
    return []
  token_starts = np.cumsum(lengths) - lengths
  chunk = token_starts // max(1, max_tokens)
  doc_cuts = np.concatenate(([0], np.flatnonzero(np.diff(chunk)) + 1, [lengths.size]))
  token_cuts = np.append(token_starts, token_starts[-1] + lengths[-1])[doc_cuts]
  return [(int(a), int(b), int(c), int(d)) for a, b, c, d in
          zip(doc_cuts[:-1], doc_cuts[1:], token_cuts[:-1], token_cuts[1:])]


def count_documents(docs: Iterable[Sequence[int]], vocab_size: int, window: int, symmetric: bool,
                    weighting: Weighting) -> SparseCounts:
  """`count_tokens` for a list of documents (each a sequence of token ids)."""
  arrays = [np.asarray(doc, dtype=np.int64).reshape(-1) for doc in docs]
  lengths = np.array([a.size for a in arrays], dtype=np.int64)
  tokens = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
  return count_tokens(tokens, lengths, vocab_size, window, symmetric, weighting)


def merge_counts(parts: Sequence[SparseCounts]) -> SparseCounts:
  """Sums partial matrices. Their keys are sorted runs, which a stable sort merges cheaply."""
  if not parts:
    raise ValueError('merge_counts needs at least one part')
  non_empty = [p for p in parts if len(p)]
  if len(non_empty) <= 1:
    return non_empty[0] if non_empty else parts[0]
  parts = non_empty
  keys = np.concatenate([p.keys for p in parts])
  values = np.concatenate([p.values for p in parts])
  order = np.argsort(keys, kind='stable')
  keys = keys[order]
  values = values[order]
  starts = _run_starts(keys)
  return SparseCounts(keys[starts], np.add.reduceat(values, starts))


def split_by_shard(counts: SparseCounts, vocab_size: int, num_shards: int):
  """Yields (shard, SparseCounts) for the non-empty shards; a cell's shard is ``i % num_shards``."""
  if not len(counts):
    return
  shard = (counts.keys // vocab_size) % num_shards
  if num_shards <= np.iinfo(np.uint16).max:
    shard = shard.astype(np.uint16)  # NumPy's stable sort of 16-bit ints is a radix sort
  order = np.argsort(shard, kind='stable')  # keeps keys sorted within each shard
  bounds = np.searchsorted(shard[order], np.arange(num_shards + 1))
  for s in range(num_shards):
    lo, hi = bounds[s], bounds[s + 1]
    if hi > lo:
      idx = order[lo:hi]
      yield s, SparseCounts(counts.keys[idx], counts.values[idx])


def expand_cells(counts: SparseCounts, vocab_size: int, symmetric: bool, scale: int):
  """Returns the full matrix's cells (i, j int64; x float64) from a partial matrix.

  For a symmetric matrix each stored upper-triangle cell becomes (i, j) and (j, i), and a
  diagonal cell (which holds half of X[i, i]) is doubled.
  """
  i = counts.keys // vocab_size
  j = counts.keys % vocab_size
  x = counts.values.astype(np.float64)
  if symmetric:
    diag = i == j
    x[diag] *= 2
    off = ~diag
    i, j, x = (np.concatenate((i, j[off])), np.concatenate((j, i[off])),
               np.concatenate((x, x[off])))
  if scale != 1:
    x /= scale
  return i, j, x
