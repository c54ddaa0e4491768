"""The outputs of the serving model's `evaluate` signature: one score per CV of the index for each job,
for the served ranking and for each ranking it is built from. The Evaluator reports metrics for every
output (TFMA output names), so each run shows whether the embeddings beat the lexical baselines.

- `scores`: the served ranking (what `serving_default` returns, best first).
- `embedding_scores`: cosine similarity of the GloVe document vectors (the `embed` signature's vectors).
- `bm25_scores`: BM25 (Lucene's formula, k1 1.2, b 0.75) over the Transform tokens of the CVs.
- `tfidf_scores`: cosine similarity of TF-IDF vectors (sublinear tf, smooth idf, l2-normalised).
"""

SERVED = "scores"
EMBEDDING = "embedding_scores"
BM25 = "bm25_scores"
TFIDF = "tfidf_scores"

# Every output, served ranking first; the lexical baselines.
VARIANTS = (SERVED, EMBEDDING, BM25, TFIDF)
BASELINES = (BM25, TFIDF)

# Short names for tables and the run summary.
LABELS = {SERVED: "cvrank", EMBEDDING: "embedding only", BM25: "bm25", TFIDF: "tf-idf"}
