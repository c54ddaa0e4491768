"""Ranking-quality benchmark: every output of the cvrank model against external lexical baselines, at
the top of the list and on strict relevance, on the pipeline's own job splits.

Reads a finished pipeline run from ML Metadata (read-only) and ranks *every* CV of the index for every
job of the `eval` split and of `--split` (full-candidate ranking, no sampled negatives) with:

1. the cvrank model: the Model artifact of the latest push (the model that was the input of the newest
   PushedModel with `pushed` = 1), or, when nothing was pushed, the newest Model produced by
   GloveTrainer. Its `evaluate` signature gives one row per output it has (evaluation.outputs, labelled
   with `outputs.LABELS`): `cvrank` (the served ranking), `embedding only`, `bm25`, `tf-idf`. An older
   model has only the served `scores`; the rows of the outputs it lacks are left out. Labels are aligned
   to the model's own `cv_ids`;
2. external baselines, computed here from the CV texts the model indexed, independently of the model:
   TF-IDF cosine (scikit-learn `TfidfVectorizer` fitted on the CVs, default settings and
   `sublinear_tf=True`), BM25 (`rank_bm25.BM25Okapi`, lowercase `[a-z0-9]+` tokens), and uniform random
   scores averaged over several seeds.

Jobs and labels come from the newest `ranking_examples` artifact of DataCheck: one tf.Example per job
(`text`, `judged_cv_ids`, `judged_relevance`), GZIP TFRecords under `Split-<name>/`. Every method ranks
the job's `text` feature, which is what the model's `evaluate` signature reads.

Metrics (evaluation.ranking): MAP, NDCG@10 and P@10 at two levels, strict (relevant = relevance 2, the
CV's occupation is the job's; NDCG gains only from grade 2) and lenient (relevant = relevance >= 1,
graded NDCG gains). Jobs without a relevant CV at a level are excluded from that level.

The report: one table per split; a targets block, the served model's value divided by the best of the
external TF-IDF and BM25 rows for each metric and level (the product target is 1.1x); when
`<data>/distractors.csv` exists (data/derive_dataset.py --distractors), the number of distractor CVs
each method puts in the top 10 of the `--split` jobs they do not match; notes; timings.
`--data` is the dataset the run was made from; its CV files are compared with the indexed CVs, and a
difference is reported. Prints figures only; asserts nothing.

    bin/cvrank exec -- python benchmarks/ranking_quality.py
    bin/cvrank exec -- python benchmarks/ranking_quality.py --workspace .scratch/ws2 --data tests/data/tiny
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import math
import os
import platform
import re
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation import outputs, ranking  # noqa: E402

# (level name, relevance threshold): relevant = relevance >= threshold.
LEVELS = (("strict", 2.0), ("lenient", 1.0))
LEVEL_TITLES = {"strict": "strict (relevance 2)", "lenient": "lenient (relevance >= 1)"}
METRICS = ("MAP", "NDCG@10", "P@10")
K = 10
TARGET_RATIO = 1.1  # the served ranking against the best external lexical baseline
DISTRACTORS_FILE = "distractors.csv"

# External baselines; the lexical ones are what the targets compare with.
TFIDF = "tf-idf (scikit-learn)"
TFIDF_SUBLINEAR = "tf-idf sublinear_tf (scikit-learn)"
BM25 = "bm25 okapi (rank_bm25)"
EXTERNAL_LEXICAL = (TFIDF, TFIDF_SUBLINEAR, BM25)

_TOKEN = re.compile(r"[a-z0-9]+")
_BATCH = 256

# Metrics of one method on one split: {(level, metric): aggregate}.
Metrics = Dict[Tuple[str, str], ranking.RankingAggregate]


# --------------------------------------------------------------------------------------------------
# Labels, metrics and the baselines: NumPy / scikit-learn / rank_bm25 only (no TensorFlow).
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Jobs:
    """The jobs of one split, in file order. `serialized` holds the ranking tf.Examples as read."""

    job_ids: List[str]
    texts: List[str]
    judged_cv_ids: List[List[str]]
    judged_relevance: List[List[float]]
    serialized: List[bytes]


def relevance_matrix(judged_cv_ids: Sequence[Sequence[str]], judged_relevance: Sequence[Sequence[float]],
                     cv_ids: Sequence[str]) -> Tuple[np.ndarray, int]:
    """Graded labels [n_jobs, n_cvs] (float64) aligned to the index order `cv_ids`; unjudged CVs are 0.

    Returns (labels, number of judged pairs whose CV is not in the index; those are ignored, as the
    model's `relevance_labels` signature ignores them)."""
    column = {cv: k for k, cv in enumerate(cv_ids)}
    labels = np.zeros((len(judged_cv_ids), len(cv_ids)), np.float64)
    unknown = 0
    for row, (ids, rels) in enumerate(zip(judged_cv_ids, judged_relevance)):
        if len(ids) != len(rels):
            raise ValueError(f"job {row}: {len(ids)} judged CV ids but {len(rels)} relevance values")
        for cv, rel in zip(ids, rels):
            k = column.get(cv)
            if k is None:
                unknown += 1
            else:
                labels[row, k] = rel
    return labels, unknown


def score_metrics(labels: np.ndarray, scores: np.ndarray,
                  relevance_threshold: float = ranking.DEFAULT_RELEVANCE_THRESHOLD
                  ) -> Dict[str, ranking.RankingAggregate]:
    """MAP, NDCG@10 and P@10 over the rows (jobs) of `labels` / `scores` [n_jobs, n_cvs] with relevant =
    relevance >= `relevance_threshold` (NDCG gains only from those CVs), computed by
    `evaluation.ranking`; jobs without a relevant CV are excluded there."""
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    t = relevance_threshold
    return {
        "MAP": ranking.mean_average_precision(labels, scores, t),
        "NDCG@10": ranking.mean_over_jobs(lambda r, s: ranking.ndcg_at_k(r, s, K, relevance_threshold=t),
                                          labels, scores, t),
        "P@10": ranking.mean_over_jobs(lambda r, s: ranking.precision_at_k(r, s, K, t), labels, scores, t),
    }


def level_metrics(labels: np.ndarray, scores: np.ndarray,
                  levels: Sequence[Tuple[str, float]] = LEVELS) -> Metrics:
    """`score_metrics` at each (level, threshold) of `levels`: {(level, metric): aggregate}."""
    found: Metrics = {}
    for level, threshold in levels:
        for metric, aggregate in score_metrics(labels, scores, threshold).items():
            found[(level, metric)] = aggregate
    return found


def mean_metrics(runs: Sequence[Mapping]) -> Dict:
    """Per key, the mean value over `runs` (e.g. random seeds) of metric dicts with the same keys; job
    counts are those of the first run (they depend only on the labels)."""
    return {key: ranking.RankingAggregate(float(np.mean([r[key].value for r in runs])),
                                          runs[0][key].num_jobs, runs[0][key].num_jobs_without_relevant)
            for key in runs[0]}


@dataclasses.dataclass(frozen=True)
class Target:
    """One metric at one level: the served model's value, the best external lexical baseline (name and
    value) and their ratio (served / best; NaN when either is NaN, inf when only the baseline is 0)."""

    level: str
    metric: str
    served: float
    baseline: str
    baseline_value: float
    ratio: float


def ratio(value: float, reference: float) -> float:
    """value / reference; NaN when either is NaN or both are 0, inf when only the reference is 0."""
    if math.isnan(value) or math.isnan(reference):
        return float("nan")
    if reference == 0:
        return float("inf") if value > 0 else float("nan")
    return value / reference


def targets(rows: Mapping[str, Metrics], served: str, baselines: Sequence[str]) -> List[Target]:
    """For every (level, metric) of `rows[served]`, the served row against the best of the `baselines`
    rows that `rows` has (highest value; the first in `baselines` order on a tie). Empty when `rows` has
    no served row or none of the baselines."""
    present = [b for b in baselines if b in rows]
    if served not in rows or not present:
        return []
    found = []
    for (level, metric), aggregate in rows[served].items():
        def value(name: str) -> float:
            v = rows[name][(level, metric)].value
            return -math.inf if math.isnan(v) else v
        best = max(present, key=value)  # max keeps the first of equal values
        reference = rows[best][(level, metric)].value
        found.append(Target(level, metric, aggregate.value, best, reference, ratio(aggregate.value, reference)))
    return found


def tokenize(text: str) -> List[str]:
    """BM25's tokens: maximal runs of [a-z0-9] in the lowercased text."""
    return _TOKEN.findall(text.lower())


def tfidf_scores(cv_texts: Sequence[str], job_texts: Sequence[str], **vectorizer_args) -> np.ndarray:
    """Cosine similarity [n_jobs, n_cvs] of TF-IDF vectors; the vectorizer is fitted on the CVs only."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(**vectorizer_args)
    cvs = vectorizer.fit_transform(cv_texts)
    jobs = vectorizer.transform(job_texts)
    if vectorizer.norm != "l2":  # the default norm already makes the dot product a cosine
        raise ValueError("tfidf_scores expects the default l2 norm")
    return np.asarray((jobs @ cvs.T).todense(), np.float64)


def bm25_index(cv_texts: Sequence[str]):
    """A `rank_bm25.BM25Okapi` (k1 1.5, b 0.75, epsilon 0.25) over the tokenised CV texts."""
    from rank_bm25 import BM25Okapi

    return BM25Okapi([tokenize(t) for t in cv_texts])


def bm25_scores(bm25, job_texts: Sequence[str]) -> np.ndarray:
    """`bm25.get_scores(tokenize(job))` for every job, [n_jobs, n_cvs], as two sparse products.

    BM25Okapi scores a document as sum over query tokens q (repeats included) of
    idf(q) * f(q, d) * (k1 + 1) / (f(q, d) + k1 * (1 - b + b * |d| / avgdl)); the per-(term, CV) factor
    does not depend on the query, so it is built once from the fitted BM25 and multiplied by the
    query term counts. Terms outside the CVs contribute 0, as in `get_scores`."""
    from scipy import sparse

    terms = {t: k for k, t in enumerate(bm25.idf)}
    rows, cols, vals = [], [], []
    doc_len = np.asarray(bm25.doc_len, np.float64)
    norm = bm25.k1 * (1.0 - bm25.b + bm25.b * doc_len / bm25.avgdl)
    for d, freqs in enumerate(bm25.doc_freqs):
        for term, f in freqs.items():
            rows.append(terms[term])
            cols.append(d)
            vals.append((bm25.idf[term] or 0.0) * f * (bm25.k1 + 1.0) / (f + norm[d]))
    weights = sparse.csr_matrix((vals, (rows, cols)), shape=(len(terms), bm25.corpus_size))
    q_rows, q_cols, q_vals = [], [], []
    for j, text in enumerate(job_texts):
        for term in tokenize(text):
            k = terms.get(term)
            if k is not None:
                q_rows.append(j)
                q_cols.append(k)
                q_vals.append(1.0)  # duplicates are summed: a repeated query token counts again
    queries = sparse.csr_matrix((q_vals, (q_rows, q_cols)), shape=(len(job_texts), len(terms)))
    return np.asarray((queries @ weights).todense(), np.float64)


def random_scores(n_jobs: int, n_cvs: int, seed: int) -> np.ndarray:
    """Uniform random scores [n_jobs, n_cvs] from `numpy.random.default_rng(seed)`."""
    return np.random.default_rng(seed).random((n_jobs, n_cvs))


# --------------------------------------------------------------------------------------------------
# Distractor CVs (data/derive_dataset.py --distractors): unjudged CVs built from several occupations.
# --------------------------------------------------------------------------------------------------


def read_distractors(path: str) -> Dict[str, List[str]]:
    """{cv_id: job_ids} of a distractors file (CSV `cv_id`, `job_ids` space-separated), file order."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {row["cv_id"].strip(): row["job_ids"].split() for row in csv.DictReader(f)}


def read_minor_groups(data_dir: str) -> Dict[str, str]:
    """{job_id: minor_group} of every `<data_dir>/jobs/*.csv` file."""
    groups: Dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "jobs", "*.csv"))):
        with open(path, newline="", encoding="utf-8-sig") as f:
            groups.update((row["job_id"].strip(), (row["minor_group"] or "").strip())
                          for row in csv.DictReader(f))
    return groups


def distractor_matches(job_id: str, distractor_job_ids: Sequence[str], minor_group: Mapping[str, str]) -> bool:
    """True when the distractor was built from the job's occupation, or from an occupation of the job's
    SOC minor group (`minor_group`: {job_id: minor group}; a job without one matches only itself)."""
    if job_id in distractor_job_ids:
        return True
    group = minor_group.get(job_id)
    return bool(group) and any(minor_group.get(j) == group for j in distractor_job_ids)


def unmatched_distractors_in_top_k(scores: np.ndarray, cv_ids: Sequence[str], job_ids: Sequence[str],
                                   distractors: Mapping[str, Sequence[str]], minor_group: Mapping[str, str],
                                   k: int = K) -> np.ndarray:
    """Per job (row of `scores` [n_jobs, n_cvs], columns in `cv_ids` order), the number of distractor
    CVs among its first k ranks (evaluation.ranking's order: score descending, ties by column, NaN
    last) that do not match the job (`distractor_matches`). int64 [n_jobs]."""
    columns = {cv: c for c, cv in enumerate(cv_ids) if cv in distractors}
    counts = np.zeros(len(job_ids), np.int64)
    if not columns:
        return counts
    is_distractor = np.zeros(len(cv_ids), bool)
    is_distractor[list(columns.values())] = True
    for row, job in enumerate(job_ids):
        for c in ranking.rank_order(scores[row])[:k]:
            if is_distractor[c] and not distractor_matches(job, distractors[cv_ids[c]], minor_group):
                counts[row] += 1
    return counts


# --------------------------------------------------------------------------------------------------
# ML Metadata: which artifacts to benchmark.
# --------------------------------------------------------------------------------------------------


def _value(v):
    """The Python value of an MLMD Value proto."""
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _succeeded(execution) -> bool:
    from metadata import mlmd

    return execution.last_known_state in (mlmd.Execution.COMPLETE, mlmd.Execution.CACHED)


def _live(artifacts) -> list:
    from metadata import mlmd

    return [a for a in artifacts if a.state == mlmd.Artifact.LIVE]


def _newest(artifacts):
    return max(artifacts, key=lambda a: (a.create_time_since_epoch, a.id)) if artifacts else None


@dataclasses.dataclass
class RunArtifacts:
    """What the benchmark reads, as MLMD artifacts, plus how the model was chosen."""

    model: object
    model_choice: str
    trainer_execution: object
    transform_graph: object
    cvs: object
    ranking_examples: object
    notes: List[str]


def find_run_artifacts(store, pipeline_name: str) -> RunArtifacts:
    """Chooses the model (latest pushed, else newest GloveTrainer Model), follows its GloveTrainer
    execution to the Transform graph and CV examples it consumed, and takes DataCheck's newest
    `ranking_examples`. Raises LookupError when a piece is missing."""
    from metadata import mlmd

    notes: List[str] = []
    trainer_execs = [e for e in mlmd.node_executions(store, pipeline_name, "GloveTrainer") if _succeeded(e)]
    producer_of: Dict[int, object] = {}
    trained: Dict[int, object] = {}
    for e in sorted(trainer_execs, key=lambda e: e.id, reverse=True):  # earliest producer wins
        for artifact in mlmd.execution_outputs(store, e.id).get("model", []):
            producer_of[artifact.id] = e
            trained[artifact.id] = artifact

    model, choice = None, ""
    pushes = []
    for e in mlmd.node_executions(store, pipeline_name, "Pusher"):
        if not _succeeded(e):
            continue
        models = mlmd.execution_inputs(store, e.id).get("model", [])
        for pushed in _live(mlmd.execution_outputs(store, e.id).get("pushed_model", [])):
            props = pushed.custom_properties
            if models and "pushed" in props and _value(props["pushed"]) == 1:
                pushes.append((pushed, models[0]))
    if pushes:
        pushed, model = max(pushes, key=lambda p: (p[0].create_time_since_epoch, p[0].id))
        props = pushed.custom_properties
        version = _value(props["pushed_version"]) if "pushed_version" in props else "?"
        choice = f"latest pushed model (pushed version {version})"
    else:
        model = _newest(_live(trained.values()))
        choice = "newest GloveTrainer Model (nothing was pushed)"
    if model is None:
        raise LookupError(f"no GloveTrainer Model in pipeline {pipeline_name!r}")
    trainer = producer_of.get(model.id)
    if trainer is None:
        raise LookupError(f"Model {model.uri} was not produced by a successful GloveTrainer execution")
    inputs = mlmd.execution_inputs(store, trainer.id)
    transform_graph = inputs["transform_graph"][0]
    cvs = inputs["cvs"][0]

    checks: Dict[int, object] = {}
    checked: Dict[int, object] = {}
    for e in mlmd.node_executions(store, pipeline_name, "DataCheck"):
        if _succeeded(e):
            for artifact in mlmd.execution_outputs(store, e.id).get("ranking_examples", []):
                checks.setdefault(artifact.id, e)
                checked[artifact.id] = artifact
    ranking_examples = _newest(_live(checked.values()))
    if ranking_examples is None:
        raise LookupError(f"no DataCheck ranking_examples in pipeline {pipeline_name!r}")
    texts_of_check = [a.id for a in mlmd.execution_inputs(store, checks[ranking_examples.id].id).get("texts", [])]
    if cvs.id not in texts_of_check:
        # Not fatal (labels are matched by cv_id), but the jobs may then be judged against other CVs.
        notes.append(f"the ranking examples were checked against texts artifact(s) {texts_of_check}, "
                     f"the model indexed texts artifact {cvs.id}")
    return RunArtifacts(model, choice, trainer, transform_graph, cvs, ranking_examples, notes)


def tfx_artifact(store, mlmd_artifact):
    """The TFX Artifact object of an MLMD artifact (for `artifact_utils` split helpers)."""
    from tfx.types import artifact_utils

    artifact_type = store.get_artifact_types_by_id([mlmd_artifact.type_id])[0]
    return artifact_utils.deserialize_artifact(artifact_type, mlmd_artifact)


def exec_property(execution, name: str, default=None):
    """An execution property of a TFX execution (stored as a property or custom property)."""
    for props in (execution.properties, execution.custom_properties):
        if name in props:
            return _value(props[name])
    return default


# --------------------------------------------------------------------------------------------------
# Reading data, and TensorFlow scoring.
# --------------------------------------------------------------------------------------------------


def read_jobs(examples, split: str) -> Jobs:
    """The ranking examples of `split` of a TFX Examples artifact (GZIP TFRecords in Split-<split>/)."""
    import tensorflow as tf

    from components.glove_trainer.executor import read_examples

    jobs = Jobs([], [], [], [], [])
    for data in read_examples(examples, split, "ranking examples"):
        feature = tf.train.Example.FromString(data).features.feature
        jobs.serialized.append(data)
        jobs.job_ids.append(feature["job_id"].bytes_list.value[0].decode("utf-8"))
        # The same joining as the model's `evaluate` signature: values of `text` joined by a space.
        jobs.texts.append(" ".join(v.decode("utf-8") for v in feature["text"].bytes_list.value))
        jobs.judged_cv_ids.append([v.decode("utf-8") for v in feature["judged_cv_ids"].bytes_list.value])
        jobs.judged_relevance.append([float(v) for v in feature["judged_relevance"].int64_list.value])
    return jobs


def read_cvs(examples, split: str) -> Tuple[List[str], List[str]]:
    """(cv_ids, texts) of split `split` of the CV Examples artifact, as GloveTrainer reads them for the
    model's index (sorted by cv_id, `text` values joined by a space)."""
    from components.glove_trainer.executor import read_cvs as read_index_cvs

    ids, texts = read_index_cvs(examples, split)
    return [i.decode("utf-8") for i in ids], [t.decode("utf-8") for t in texts]


def warm_up(fn: Callable, serialized: Sequence[bytes]) -> None:
    """Calls `fn` on one example, so that tracing a tf.function is not counted as scoring time."""
    import tensorflow as tf

    if serialized:
        fn(tf.constant(list(serialized[:1])))


def score_outputs(fn: Callable, serialized: Sequence[bytes], names: Sequence[str]) -> Dict[str, np.ndarray]:
    """{name: [n_examples, n_cvs] float64} of the outputs `names` of `fn(examples)`, called on batches of
    serialized examples."""
    import tensorflow as tf

    parts: Dict[str, List[np.ndarray]] = {name: [] for name in names}
    for k in range(0, len(serialized), _BATCH):
        result = fn(tf.constant(list(serialized[k:k + _BATCH])))
        for name in names:
            parts[name].append(result[name].numpy())
    return {name: np.concatenate(p).astype(np.float64) for name, p in parts.items()}


def served_difference(saved_model_dir: str, scored: Mapping[str, np.ndarray]) -> float:
    """The largest |difference| between the model's served `scores` and `trainer.fusion.fused_scores`
    computed in NumPy from the same model's embedding and BM25 outputs, its fusion parameters and its CVs'
    TF-IDF vectors (rebuilt from the term counts in the SavedModel's variables): a check that the served
    graph computes the documented score."""
    from serving.lexical import build_lexical_index
    from serving.model import read_ranking_variables
    from trainer import fusion

    params, counts = read_ranking_variables(saved_model_dir)
    index = build_lexical_index(counts, int(counts.terms.max()) + 1 if len(counts.terms) else 0)
    tfidf = fusion.tfidf_matrix(index, counts.n_rows)
    expected = fusion.fused_scores(scored[outputs.EMBEDDING], scored[outputs.BM25], tfidf, params)
    served = scored[outputs.SERVED]
    return float(np.max(np.abs(served - expected))) if served.size else 0.0


def compare_dataset(data_dir: str, cv_ids: Sequence[str], cv_texts: Sequence[str]) -> str:
    """One line saying whether `<data_dir>/cvs/*.csv` holds exactly the indexed CVs (ids and texts)."""
    files = sorted(glob.glob(os.path.join(data_dir, "cvs", "*.csv")))
    if not files:
        return f"dataset {data_dir}: no cvs/*.csv (not compared)"
    rows = {}
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            rows.update((r["cv_id"], r["text"]) for r in csv.DictReader(f))
    indexed = dict(zip(cv_ids, cv_texts))
    if rows == indexed:
        return f"dataset {data_dir}: {len(rows)} CVs, identical to the indexed CV examples"
    only_data = len(rows.keys() - indexed.keys())
    only_index = len(indexed.keys() - rows.keys())
    changed = sum(rows[k] != indexed[k] for k in rows.keys() & indexed.keys())
    return (f"WARNING dataset {data_dir} differs from the indexed CVs: {only_data} only in the dataset, "
            f"{only_index} only in the index, {changed} with other text")


# --------------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


def _fmt_ratio(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.2f}x")


@dataclasses.dataclass
class Row:
    """One line of a split's table: a method, its metrics and its scoring seconds (None: not timed on
    its own, e.g. a model output scored in the same call as the row above)."""

    method: str
    metrics: Metrics
    seconds: Optional[float]
    group: str


def level_counts(labels: np.ndarray) -> str:
    """'jobs averaged: strict 466, lenient 466': the jobs each level averages over, with the number
    left out for having no relevant CV at that level when there are any."""
    parts = []
    for level, threshold in LEVELS:
        used = int(sum(ranking.has_relevant(row, threshold) for row in labels))
        left_out = len(labels) - used
        parts.append(f"{level} {used:,}" + (f" ({left_out:,} without a relevant CV left out)" if left_out else ""))
    return "jobs averaged: " + ", ".join(parts)


def print_table(title: str, rows: Sequence[Row]) -> None:
    """The split's table: one column per (level, metric), the scoring seconds, a heading per group."""
    width = max([len(r.method) for r in rows] + [len("method")])
    cell = 8
    gap = "   "
    print(f"\n{title}")
    block = len(METRICS) * (cell + 1) - 1
    print((" " * width + "".join(f"{gap}{LEVEL_TITLES[level]:^{block}}" for level, _ in LEVELS)).rstrip())
    header = f"{'method':<{width}}" + "".join(
        gap + " ".join(f"{m:>{cell}}" for m in METRICS) for _ in LEVELS) + f"{gap}score s"
    print(header)
    print("-" * len(header))
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            print(group)
        line = f"{row.method:<{width}}"
        for level, _ in LEVELS:
            line += gap + " ".join(f"{_fmt(row.metrics[(level, m)].value):>{cell}}" for m in METRICS)
        seconds = "" if row.seconds is None else f"{row.seconds:.2f}"
        print((line + f"{gap}{seconds:>7}").rstrip())


def print_targets(split: str, found: Sequence[Target]) -> None:
    """The targets block of one split: served value, best external lexical baseline, ratio."""
    served = outputs.LABELS[outputs.SERVED]
    print(f"\ntargets, split {split}: {served} / the best of the external tf-idf and bm25 rows "
          f"(target >= {TARGET_RATIO:.2f}x)")
    if not found:
        print("(no served model row or no baseline row)")
        return
    width = max(len(t.baseline) for t in found)
    header = (f"{'level':<8} {'metric':<8} {served:>8}   {'best baseline':<{width}} {'value':>8}   "
              f"{'ratio':>7}")
    print(header)
    print("-" * len(header))
    for t in found:
        verdict = "" if math.isnan(t.ratio) else ("met" if t.ratio >= TARGET_RATIO else "below")
        print(f"{t.level:<8} {t.metric:<8} {_fmt(t.served):>8}   {t.baseline:<{width}} "
              f"{_fmt(t.baseline_value):>8}   {_fmt_ratio(t.ratio):>7}  {verdict}")


def print_distractors(title: str, counts: Sequence[Tuple[str, np.ndarray]], n_jobs: int) -> None:
    """Per method: unmatched distractors in the top 10 in total, per job (mean), jobs with at least one,
    and the most in one job. `counts` holds per method an array [n_jobs] or, for random, [seeds,
    n_jobs] (its figures are means over the seeds)."""
    print(f"\n{title}")
    width = max([len(name) for name, _ in counts] + [len("method")])
    header = f"{'method':<{width}}  {'total':>8}  {'per job':>8}  {'jobs with any':>13}  {'max':>5}"
    print(header)
    print("-" * len(header))
    for name, c in counts:
        c = np.atleast_2d(np.asarray(c, np.float64))
        total = float(np.mean(c.sum(axis=1)))
        per_job = total / n_jobs if n_jobs else float("nan")
        with_any = float(np.mean((c > 0).sum(axis=1)))
        most = float(np.mean(c.max(axis=1))) if c.shape[1] else 0.0
        as_int = c.shape[0] == 1
        print(f"{name:<{width}}  {total:>8.{0 if as_int else 1}f}  {per_job:>8.3f}  "
              f"{with_any:>13.{0 if as_int else 1}f}  {most:>5.{0 if as_int else 1}f}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", default="workspace", help="pipeline workspace (metadata/<name>.sqlite)")
    ap.add_argument("--data", default=os.path.join("data", "onet"), help="dataset the run was made from")
    ap.add_argument("--split", default="test", help="split of the ranking examples to report")
    ap.add_argument("--pipeline-name", default="cvrank")
    ap.add_argument("--random-seeds", type=int, default=5, help="seeds averaged for the random ranking")
    args = ap.parse_args(argv)
    if args.random_seeds < 1:
        ap.error("--random-seeds must be at least 1")

    timings: Dict[str, float] = {}
    t_total = t0 = time.perf_counter()
    import tensorflow as tf

    from metadata import mlmd

    timings["imports"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metadata_path = os.path.join(args.workspace, "metadata", f"{args.pipeline_name}.sqlite")
    try:
        store = mlmd.sqlite_store(metadata_path, read_only=True)
        run = find_run_artifacts(store, args.pipeline_name)
    except (FileNotFoundError, LookupError) as err:
        print(f"ranking_quality: {err}", file=sys.stderr)
        return 1
    timings["ML Metadata lookup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ranking_examples = tfx_artifact(store, run.ranking_examples)
    splits = ["eval"] + ([args.split] if args.split != "eval" else [])
    from tfx.types import artifact_utils

    available = artifact_utils.decode_split_names(ranking_examples.split_names)
    if any(s not in available for s in splits):
        ap.error(f"the ranking examples {run.ranking_examples.uri} have splits {available}, not {splits}")
    jobs = {s: read_jobs(ranking_examples, s) for s in splits}
    cv_ids, cv_texts = read_cvs(tfx_artifact(store, run.cvs),
                                exec_property(run.trainer_execution, "cv_split", "cvs"))
    dataset_line = compare_dataset(args.data, cv_ids, cv_texts)
    labels = {}
    for s in splits:
        labels[s], unknown = relevance_matrix(jobs[s].judged_cv_ids, jobs[s].judged_relevance, cv_ids)
        if unknown:
            run.notes.append(f"split {s}: {unknown} judged pairs name a CV outside the index (ignored)")
    timings["reading jobs and CVs"] = time.perf_counter() - t0

    settings = ", ".join(f"{name}={exec_property(run.trainer_execution, name)}"
                         for name in ("doc_weighting", "hybrid_ranking")
                         if exec_property(run.trainer_execution, name) is not None)
    print(f"ranking quality: pipeline {args.pipeline_name!r}, workspace {os.path.abspath(args.workspace)}")
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"model: {run.model.uri} [{run.model_choice}]" + (f", {settings}" if settings else ""))
    print(f"transform graph: {run.transform_graph.uri}")
    print(f"CVs: {run.cvs.uri} ({len(cv_ids):,} in the index)")
    print(f"jobs: {run.ranking_examples.uri} ("
          + ", ".join(f"{s}: {len(jobs[s].job_ids)}" for s in splits) + ")")
    print(dataset_line)
    print(f"every method ranks all indexed CVs for every job; metrics at {K}: NDCG@{K} and P@{K}")

    rows: Dict[str, List[Row]] = {s: [] for s in splits}
    # Scores kept for the distractor count of args.split: (method, columns' cv_ids, scores).
    kept: List[Tuple[str, Sequence[str], np.ndarray]] = []

    def add(split: str, name: str, scores: np.ndarray, seconds: Optional[float], group: str,
            row_labels: Optional[np.ndarray] = None, ids: Sequence[str] = cv_ids) -> None:
        t = time.perf_counter()
        metrics = level_metrics(labels[split] if row_labels is None else row_labels, scores)
        rows[split].append(Row(name, metrics, seconds, group))
        timings["metrics"] = timings.get("metrics", 0.0) + time.perf_counter() - t
        if split == args.split:
            kept.append((name, ids, scores))

    # 1. The cvrank model: every output of its `evaluate` signature.
    model_group = "model outputs (evaluate signature)"
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(os.path.join(run.model.uri, "Format-Serving"))
    evaluate = loaded.signatures["evaluate"]
    model_cv_ids = [c.decode("utf-8") for c in loaded.cv_ids.numpy().tolist()]
    names = [n for n in outputs.VARIANTS if n in evaluate.structured_outputs]
    missing = [n for n in outputs.VARIANTS if n not in names]
    if missing:
        run.notes.append(f"the model's evaluate signature has no {', '.join(missing)} (a model older than "
                         f"those outputs): their rows are left out")
    warm_up(evaluate, jobs[splits[0]].serialized)
    timings["loading the SavedModel"] = time.perf_counter() - t0
    for s in splits:
        t0 = time.perf_counter()
        scored = score_outputs(evaluate, jobs[s].serialized, names)
        seconds = time.perf_counter() - t0
        model_labels = None
        if model_cv_ids != cv_ids:  # the model's own index order decides the label columns
            model_labels, _ = relevance_matrix(jobs[s].judged_cv_ids, jobs[s].judged_relevance, model_cv_ids)
        for k, name in enumerate(names):
            add(s, outputs.LABELS[name], scored[name], seconds if k == 0 else None, model_group,
                model_labels, model_cv_ids)
        if len(names) == len(outputs.VARIANTS):
            diff = served_difference(os.path.join(run.model.uri, "Format-Serving"), scored)
            run.notes.append(f"split {s}: the model's served scores vs their NumPy recomputation from its "
                             f"embedding and bm25 outputs (trainer.fusion): max |difference| {diff:.2e}")
    if model_cv_ids != cv_ids:
        run.notes.append(f"the model's cv_ids ({len(model_cv_ids)}) differ from its CV examples "
                         f"({len(cv_ids)}); model rows are judged in the model's order")

    # 2. External baselines, from the CV texts alone.
    external = "external baselines"
    for name, kwargs in ((TFIDF, {}), (TFIDF_SUBLINEAR, {"sublinear_tf": True})):
        for s in splits:
            t0 = time.perf_counter()
            scores = tfidf_scores(cv_texts, jobs[s].texts, **kwargs)
            add(s, name, scores, time.perf_counter() - t0, external)

    t0 = time.perf_counter()
    bm25 = bm25_index(cv_texts)
    timings["building the BM25 index"] = time.perf_counter() - t0
    for s in splits:
        t0 = time.perf_counter()
        scores = bm25_scores(bm25, jobs[s].texts)
        add(s, BM25, scores, time.perf_counter() - t0, external)
        check = min(5, len(jobs[s].texts))  # the sparse products must equal rank_bm25's own scoring
        diff = max((float(np.max(np.abs(bm25.get_scores(tokenize(jobs[s].texts[k])) - scores[k])))
                    for k in range(check)), default=0.0)
        run.notes.append(f"split {s}: bm25 sparse scores vs BM25Okapi.get_scores on {check} jobs: "
                         f"max |difference| {diff:.2e}")

    random_name = f"random (mean of {args.random_seeds} seeds)"
    random_runs: Dict[str, List[np.ndarray]] = {s: [] for s in splits}
    for s in splits:
        runs, seconds = [], 0.0
        for seed in range(args.random_seeds):
            t0 = time.perf_counter()
            scores = random_scores(labels[s].shape[0], labels[s].shape[1], seed)
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            runs.append(level_metrics(labels[s], scores))
            timings["metrics"] = timings.get("metrics", 0.0) + time.perf_counter() - t0
            random_runs[s].append(scores)
        rows[s].append(Row(random_name, mean_metrics(runs), seconds / args.random_seeds, external))

    # Tables and targets.
    for s in splits:
        print_table(f"split {s}: {len(jobs[s].job_ids):,} jobs x {len(cv_ids):,} CVs; "
                    f"{level_counts(labels[s])}", rows[s])
    served = outputs.LABELS[outputs.SERVED]
    for s in reversed(splits):  # --split first
        print_targets(s, targets({r.method: r.metrics for r in rows[s]}, served, EXTERNAL_LEXICAL))

    # Distractors.
    distractors_path = os.path.join(args.data, DISTRACTORS_FILE)
    if os.path.isfile(distractors_path):
        t0 = time.perf_counter()
        distractors = read_distractors(distractors_path)
        minor_group = read_minor_groups(args.data)
        indexed = len(set(distractors) & set(cv_ids))
        job_ids = jobs[args.split].job_ids
        counts: List[Tuple[str, np.ndarray]] = [
            (name, unmatched_distractors_in_top_k(scores, ids, job_ids, distractors, minor_group))
            for name, ids, scores in kept]
        counts.append((random_name, np.stack([
            unmatched_distractors_in_top_k(scores, cv_ids, job_ids, distractors, minor_group)
            for scores in random_runs[args.split]])))
        print_distractors(
            f"distractors ({distractors_path}: {len(distractors):,} CVs, {indexed:,} in the index): "
            f"unmatched distractors in the top {K} of the {len(job_ids):,} {args.split} jobs\n"
            f"(a distractor matches a job when it was built from the job's occupation or from "
            f"an occupation in the job's SOC minor group)", counts, len(job_ids))
        if indexed < len(distractors):
            run.notes.append(f"{len(distractors) - indexed} distractors of {distractors_path} are not in "
                             f"the index (was the run made from {args.data}?)")
        timings["distractor counts"] = time.perf_counter() - t0
    else:
        print(f"\ndistractors: none ({distractors_path} does not exist; "
              f"data/derive_dataset.py --distractors N writes one)")

    if run.notes:
        print("\nnotes")
        for note in run.notes:
            print(f"- {note}")

    timings["total"] = time.perf_counter() - t_total
    print("\ntimings (s)")
    for name, seconds in timings.items():
        print(f"{name:<28} {seconds:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
