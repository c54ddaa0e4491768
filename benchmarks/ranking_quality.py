"""Ranking-quality benchmark: the cvrank model against simple baselines, on the pipeline's own splits.

Reads a finished pipeline run from ML Metadata (read-only) and ranks *every* CV of the index for every
job of a split (full-candidate ranking, no sampled negatives) with:

1. the cvrank model: the GloVe Model artifact of the latest push (the model that was the input of the
   newest PushedModel with `pushed` = 1), or, when nothing was pushed, the newest Model artifact
   produced by GloveTrainer; scored with its `evaluate` signature, labels aligned to its `cv_ids`;
2. the same word vectors (`word_vectors.txt` of that Model) with each document weighting `mean`, `idf`
   and `sif`, rebuilt with `serving.model.build_model` from the Transform graph and the CV examples
   that the model's GloveTrainer execution consumed;
3. TF-IDF cosine (scikit-learn `TfidfVectorizer` fitted on the CV texts), default settings and
   `sublinear_tf=True`;
4. BM25 (`rank_bm25.BM25Okapi` over the CVs, lowercase `[a-z0-9]+` tokens);
5. random scores, averaged over several seeds.

Jobs and labels come from the newest `ranking_examples` artifact of DataCheck: one tf.Example per job
(`text`, `judged_cv_ids`, `judged_relevance`), GZIP TFRecords under `Split-<name>/`. Every method ranks
the job's `text` feature, which is what the model's `evaluate` signature reads. Metrics come from
`evaluation.ranking` (MAP, NDCG@10, P@10, R@100; jobs without a relevant CV are excluded as that
module defines). The table is printed for the `eval` split and for `--split`; the weighting table
compares the three schemes on `eval` (where a default should be chosen) and on `--split`.
`--data` is the dataset the run was made from; its CV file is compared with the CV examples, and a
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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation import ranking  # noqa: E402

WEIGHTINGS = ("mean", "idf", "sif")
METRICS = ("MAP", "NDCG@10", "P@10", "R@100")
_TOKEN = re.compile(r"[a-z0-9]+")
_BATCH = 256


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


def score_metrics(labels: np.ndarray, scores: np.ndarray) -> Dict[str, ranking.RankingAggregate]:
    """MAP, NDCG@10, P@10 and R@100 over the rows (jobs) of `labels` / `scores` [n_jobs, n_cvs],
    computed by `evaluation.ranking` (jobs without a relevant CV are excluded there)."""
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    return {
        "MAP": ranking.mean_average_precision(labels, scores),
        "NDCG@10": ranking.mean_over_jobs(lambda r, s: ranking.ndcg_at_k(r, s, 10), labels, scores),
        "P@10": ranking.mean_over_jobs(lambda r, s: ranking.precision_at_k(r, s, 10), labels, scores),
        "R@100": ranking.mean_over_jobs(lambda r, s: ranking.recall_at_k(r, s, 100), labels, scores),
    }


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


def mean_metrics(runs: Sequence[Dict[str, ranking.RankingAggregate]]) -> Dict[str, ranking.RankingAggregate]:
    """Per metric, the mean value over `runs` (e.g. random seeds); job counts are those of the first
    run (they depend only on the labels)."""
    return {name: ranking.RankingAggregate(float(np.mean([r[name].value for r in runs])),
                                           runs[0][name].num_jobs, runs[0][name].num_jobs_without_relevant)
            for name in runs[0]}


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
    from tfx.types import artifact_utils

    files = sorted(tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*")))
    if not files:
        raise FileNotFoundError(f"no ranking examples in split {split!r} of {examples.uri}")
    jobs = Jobs([], [], [], [], [])
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        data = record.numpy()
        feature = tf.train.Example.FromString(data).features.feature
        jobs.serialized.append(data)
        jobs.job_ids.append(feature["job_id"].bytes_list.value[0].decode("utf-8"))
        # The same joining as the model's `evaluate` signature: values of `text` joined by a space.
        jobs.texts.append(" ".join(v.decode("utf-8") for v in feature["text"].bytes_list.value))
        jobs.judged_cv_ids.append([v.decode("utf-8") for v in feature["judged_cv_ids"].bytes_list.value])
        jobs.judged_relevance.append([float(v) for v in feature["judged_relevance"].int64_list.value])
    return jobs


def warm_up(fn: Callable, serialized: Sequence[bytes]) -> None:
    """Calls `fn` on one example, so that tracing a tf.function is not counted as scoring time."""
    import tensorflow as tf

    if serialized:
        fn(tf.constant(list(serialized[:1])))


def score_in_batches(fn: Callable, serialized: Sequence[bytes]) -> np.ndarray:
    """Concatenated `fn(examples)["scores"]` over batches of serialized examples."""
    import tensorflow as tf

    parts = [fn(tf.constant(list(serialized[k:k + _BATCH])))["scores"].numpy()
             for k in range(0, len(serialized), _BATCH)]
    return np.concatenate(parts).astype(np.float64)


def load_vectors(model_uri: str, tft_output) -> np.ndarray:
    """The model's word vectors [vocab_size, dim] in the vocabulary order of the Transform graph."""
    import tensorflow as tf

    from trainer.glove import load_glove_text

    words, vectors = load_glove_text(os.path.join(model_uri, "word_vectors.txt"))
    with tf.io.gfile.GFile(tft_output.vocabulary_file_by_name("vocab"), "rb") as f:
        vocab = [w.decode("utf-8") for w in f.read().splitlines()]
    if words == vocab:
        return vectors
    row = {w: k for k, w in enumerate(words)}
    missing = [w for w in vocab if w not in row]
    if missing:
        raise ValueError(f"{len(missing)} vocabulary words have no vector, e.g. {missing[:3]}")
    return vectors[[row[w] for w in vocab]]


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
    return "   nan" if math.isnan(x) else f"{x:.4f}"


def print_table(title: str, rows: List[Tuple[str, Dict[str, ranking.RankingAggregate], float]]) -> None:
    """rows: (method, metrics, scoring seconds). Scoring seconds exclude loading, index building and
    tf.function tracing; for TF-IDF they include fitting the vectorizer, for random they are per seed."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}")
    header = f"{'method':<{width}}  " + "  ".join(f"{m:>7}" for m in METRICS) + "   jobs  excl  score s"
    print(header)
    print("-" * len(header))
    for name, metrics, seconds in rows:
        first = metrics["MAP"]
        print(f"{name:<{width}}  " + "  ".join(f"{_fmt(metrics[m].value):>7}" for m in METRICS)
              + f"  {first.num_jobs:>5.0f}  {first.num_jobs_without_relevant:>4.0f}  {seconds:>7.2f}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", default="workspace", help="pipeline workspace (metadata/<name>.sqlite)")
    ap.add_argument("--data", default=os.path.join("data", "onet"), help="dataset the run was made from")
    ap.add_argument("--split", default="test", help="split of the ranking examples to report")
    ap.add_argument("--pipeline-name", default="cvrank")
    ap.add_argument("--random-seeds", type=int, default=5, help="seeds averaged for the random ranking")
    args = ap.parse_args(argv)

    timings: Dict[str, float] = {}
    t_total = t0 = time.perf_counter()
    import tensorflow as tf
    import tensorflow_transform as tft

    from serving.model import build_model
    from components.glove_trainer.executor import read_cvs
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
    configured = exec_property(run.trainer_execution, "doc_weighting", "?")
    timings["ML Metadata lookup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ranking_examples = tfx_artifact(store, run.ranking_examples)
    splits = ["eval"] + ([args.split] if args.split != "eval" else [])
    from tfx.types import artifact_utils

    available = artifact_utils.decode_split_names(ranking_examples.split_names)
    if any(s not in available for s in splits):
        ap.error(f"the ranking examples {run.ranking_examples.uri} have splits {available}, not {splits}")
    jobs = {s: read_jobs(ranking_examples, s) for s in splits}
    cv_ids_bytes, cv_texts_bytes = read_cvs(tfx_artifact(store, run.cvs), exec_property(
        run.trainer_execution, "cv_split", "cvs"))
    cv_ids = [c.decode("utf-8") for c in cv_ids_bytes]
    cv_texts = [t.decode("utf-8") for t in cv_texts_bytes]
    dataset_line = compare_dataset(args.data, cv_ids, cv_texts)
    labels = {}
    for s in splits:
        labels[s], unknown = relevance_matrix(jobs[s].judged_cv_ids, jobs[s].judged_relevance, cv_ids)
        if unknown:
            run.notes.append(f"split {s}: {unknown} judged pairs name a CV outside the index (ignored)")
    timings["reading jobs and CVs"] = time.perf_counter() - t0

    print(f"ranking quality: pipeline {args.pipeline_name!r}, workspace {os.path.abspath(args.workspace)}")
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"model: {run.model.uri} [{run.model_choice}], doc_weighting={configured}")
    print(f"transform graph: {run.transform_graph.uri}")
    print(f"CVs: {run.cvs.uri} ({len(cv_ids)} in the index)")
    print(f"jobs: {run.ranking_examples.uri} ("
          + ", ".join(f"{s}: {len(jobs[s].job_ids)}" for s in splits) + ")")
    print(dataset_line)
    print("every method ranks all indexed CVs for every job; relevant = relevance >= 1; "
          "jobs without a relevant CV are excluded ('excl')")

    # (split -> list of (method, metrics, scoring seconds))
    rows: Dict[str, List[Tuple[str, Dict[str, ranking.RankingAggregate], float]]] = {s: [] for s in splits}

    def add(split: str, name: str, scores: np.ndarray, seconds: float, row_labels=None) -> None:
        t = time.perf_counter()
        rows[split].append((name, score_metrics(labels[split] if row_labels is None else row_labels, scores),
                            seconds))
        timings["metrics"] = timings.get("metrics", 0.0) + time.perf_counter() - t

    # 1. The cvrank model, as exported.
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(os.path.join(run.model.uri, "Format-Serving"))
    model_cv_ids = [c.decode("utf-8") for c in loaded.cv_ids.numpy().tolist()]
    warm_up(loaded.signatures["evaluate"], jobs[splits[0]].serialized)
    timings["loading the SavedModel"] = time.perf_counter() - t0
    model_scores = {}
    for s in splits:
        t0 = time.perf_counter()
        model_scores[s] = score_in_batches(loaded.signatures["evaluate"], jobs[s].serialized)
        seconds = time.perf_counter() - t0
        model_labels = None
        if model_cv_ids != cv_ids:  # the model's own index order decides the label columns
            model_labels, _ = relevance_matrix(jobs[s].judged_cv_ids, jobs[s].judged_relevance, model_cv_ids)
        add(s, f"cvrank model ({configured})", model_scores[s], seconds, model_labels)

    # 2. The same word vectors with each document weighting.
    t0 = time.perf_counter()
    tft_output = tft.TFTransformOutput(run.transform_graph.uri)
    vectors = load_vectors(run.model.uri, tft_output)
    timings["loading word vectors"] = time.perf_counter() - t0
    for scheme in WEIGHTINGS:
        t0 = time.perf_counter()
        rebuilt = build_model(tft_output, vectors, cv_ids_bytes, cv_texts_bytes, scheme, top_k=100)
        warm_up(rebuilt.evaluate, jobs[splits[0]].serialized)
        timings[f"building the {scheme} index"] = time.perf_counter() - t0
        for s in splits:
            t0 = time.perf_counter()
            scores = score_in_batches(rebuilt.evaluate, jobs[s].serialized)
            add(s, f"glove {scheme}", scores, time.perf_counter() - t0)
            if scheme == configured and model_cv_ids == cv_ids:
                diff = float(np.max(np.abs(scores - model_scores[s]))) if scores.size else 0.0
                run.notes.append(f"split {s}: rebuilt 'glove {scheme}' vs the exported model: "
                                 f"max |score difference| {diff:.2e}")

    # 3. TF-IDF cosine.
    for name, kwargs in (("tfidf", {}), ("tfidf sublinear_tf", {"sublinear_tf": True})):
        for s in splits:
            t0 = time.perf_counter()
            scores = tfidf_scores(cv_texts, jobs[s].texts, **kwargs)
            add(s, name, scores, time.perf_counter() - t0)

    # 4. BM25.
    t0 = time.perf_counter()
    bm25 = bm25_index(cv_texts)
    timings["building the BM25 index"] = time.perf_counter() - t0
    for s in splits:
        t0 = time.perf_counter()
        scores = bm25_scores(bm25, jobs[s].texts)
        add(s, "bm25 okapi", scores, time.perf_counter() - t0)
        check = min(5, len(jobs[s].texts))  # the sparse products must equal rank_bm25's own scoring
        diff = max((float(np.max(np.abs(bm25.get_scores(tokenize(jobs[s].texts[k])) - scores[k])))
                    for k in range(check)), default=0.0)
        run.notes.append(f"split {s}: bm25 sparse scores vs BM25Okapi.get_scores on {check} jobs: "
                         f"max |difference| {diff:.2e}")

    # 5. Random.
    for s in splits:
        runs, seconds = [], 0.0
        for seed in range(args.random_seeds):
            t0 = time.perf_counter()
            scores = random_scores(labels[s].shape[0], labels[s].shape[1], seed)
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            runs.append(score_metrics(labels[s], scores))
            timings["metrics"] = timings.get("metrics", 0.0) + time.perf_counter() - t0
        rows[s].append((f"random (mean of {args.random_seeds} seeds)", mean_metrics(runs),
                        seconds / max(args.random_seeds, 1)))

    for s in splits:
        print_table(f"split {s}: {len(jobs[s].job_ids)} jobs x {len(cv_ids)} CVs", rows[s])

    print("\ndocument weighting of the GloVe vectors (MAP; choose on eval)")
    maps = {s: {name: m["MAP"].value for name, m, _ in rows[s]} for s in splits}
    header = f"{'weighting':<10}  {'eval':>7}" + (f"  {args.split:>7}" if args.split != "eval" else "")
    print(header)
    print("-" * len(header))
    for scheme in WEIGHTINGS:
        line = f"{scheme:<10}  {_fmt(maps['eval'][f'glove {scheme}']):>7}"
        if args.split != "eval":
            line += f"  {_fmt(maps[args.split][f'glove {scheme}']):>7}"
        print(line + ("   (the model's doc_weighting)" if scheme == configured else ""))
    candidates = [s for s in WEIGHTINGS if not math.isnan(maps["eval"][f"glove {s}"])]
    if candidates:
        best = max(candidates, key=lambda s: maps["eval"][f"glove {s}"])
        print(f"best on eval: {best}")

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
