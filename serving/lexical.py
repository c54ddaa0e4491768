"""The lexical half of the serving model: BM25 and TF-IDF weights of the CVs of the index, in NumPy.

A CV is its bag of Transform terms (`transform.contract.TERM_IDS_KEY`: every token, no frequency cut, so
rare terms such as a certification or a tool keep their weight). The index keeps each CV's term counts
(`TermCounts`, CSR rows), from which `build_lexical_index` computes the matrices that the serving graph
multiplies with a query's term counts. Only terms that occur in some CV get a column: the others cannot
match a CV.

- BM25 (Lucene's formula): idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)); a CV d scores, for a
  query q, sum over the query's tokens t (repeats count again) of
  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)), with |d| the CV's number
  of tokens and avgdl the mean over the index. k1 = 1.2, b = 0.75 (Lucene's defaults).
- TF-IDF: sublinear tf (1 + ln tf), smooth idf ln((1 + N) / (1 + df)) + 1, each vector l2-normalised,
  score = cosine (scikit-learn's TfidfVectorizer(sublinear_tf=True) over the same tokens). The same CV
  vectors give the CV-to-CV similarity used for pseudo-relevance feedback.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

BM25_K1 = 1.2
BM25_B = 0.75


@dataclasses.dataclass
class TermCounts:
    """Term counts of n documents as CSR rows: row r's terms are `terms[row_splits[r]:row_splits[r+1]]`
    (Transform term ids, ascending, unique within a row) with `counts` at the same positions."""

    row_splits: np.ndarray  # [n + 1] int64
    terms: np.ndarray       # [nnz] int64
    counts: np.ndarray      # [nnz] float32

    @property
    def n_rows(self) -> int:
        return len(self.row_splits) - 1

    @classmethod
    def from_token_ids(cls, docs: Sequence[np.ndarray]) -> "TermCounts":
        """Counts from one array of term ids per document (negative ids, out of vocabulary, are dropped)."""
        splits, terms, counts = [0], [], []
        for ids in docs:
            ids = np.asarray(ids, np.int64)
            uniq, cnt = np.unique(ids[ids >= 0], return_counts=True)
            terms.append(uniq)
            counts.append(cnt.astype(np.float32))
            splits.append(splits[-1] + len(uniq))
        return cls(np.asarray(splits, np.int64),
                   np.concatenate(terms) if terms else np.zeros(0, np.int64),
                   np.concatenate(counts) if counts else np.zeros(0, np.float32))

    def rows(self, order: Sequence[int]) -> "TermCounts":
        """The rows `order` (indices into this matrix), in that order."""
        parts = [(self.terms[self.row_splits[r]:self.row_splits[r + 1]],
                  self.counts[self.row_splits[r]:self.row_splits[r + 1]]) for r in order]
        lengths = [len(t) for t, _ in parts]
        return TermCounts(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                          np.concatenate([t for t, _ in parts]) if parts else np.zeros(0, np.int64),
                          np.concatenate([c for _, c in parts]) if parts else np.zeros(0, np.float32))

    @staticmethod
    def concat(a: "TermCounts", b: "TermCounts") -> "TermCounts":
        """The rows of `a` followed by those of `b`."""
        return TermCounts(np.concatenate([a.row_splits, b.row_splits[1:] + a.row_splits[-1]]),
                          np.concatenate([a.terms, b.terms]), np.concatenate([a.counts, b.counts]))


@dataclasses.dataclass
class LexicalIndex:
    """What the serving graph needs (see the module docstring). Matrices over CVs x columns are sparse,
    as (row, column) index pairs sorted by row then column, with their values.

    term_column [n_terms]: the column of each Transform term id, -1 for terms in no CV.
    idf [n_columns]: TF-IDF's idf of each column.
    indices [nnz, 2]: the (CV, column) pairs where a CV holds a term, the entries of both matrices; the
    entries of CV r are those from `row_splits[r]` to `row_splits[r + 1]` of the TermCounts they came from.
    bm25_values [nnz]: per entry, the BM25 contribution of one query token.
    tfidf_values [nnz]: per entry, the CV's l2-normalised TF-IDF weight."""

    term_column: np.ndarray
    idf: np.ndarray
    indices: np.ndarray
    bm25_values: np.ndarray
    tfidf_values: np.ndarray

    @property
    def n_columns(self) -> int:
        return len(self.idf)


def build_lexical_index(counts: TermCounts, n_terms: int, k1: float = BM25_K1, b: float = BM25_B) -> LexicalIndex:
    """The BM25 and TF-IDF weights of the documents of `counts` (term ids below `n_terms`)."""
    n = counts.n_rows
    present = np.unique(counts.terms)
    term_column = np.full(n_terms, -1, np.int64)
    term_column[present] = np.arange(len(present))
    cols = term_column[counts.terms]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(counts.row_splits))
    tf = counts.counts.astype(np.float64)
    df = np.bincount(cols, minlength=len(present)).astype(np.float64)

    doc_len = np.bincount(rows, weights=tf, minlength=n)
    avgdl = doc_len.mean() if n and doc_len.mean() > 0 else 1.0
    bm25_idf = np.log1p((n - df + 0.5) / (df + 0.5))
    bm25 = bm25_idf[cols] * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * doc_len[rows] / avgdl))

    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    weights = (1.0 + np.log(tf)) * idf[cols] if len(tf) else np.zeros(0)
    norms = np.sqrt(np.bincount(rows, weights=weights * weights, minlength=n))
    tfidf = weights / np.where(norms[rows] > 0, norms[rows], 1.0) if len(tf) else weights

    # CSR rows hold ascending term ids and columns follow term order, so (row, column) pairs are sorted.
    indices = np.stack([rows, cols], axis=1) if len(cols) else np.zeros((0, 2), np.int64)
    return LexicalIndex(term_column, idf.astype(np.float32), indices, bm25.astype(np.float32),
                        tfidf.astype(np.float32))
