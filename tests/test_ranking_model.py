"""The serving model's ranking outputs on the tiny dataset (a real tf.Transform graph, seeded word vectors):
BM25 and TF-IDF against independent references, the served (fused) score against trainer.fusion's NumPy
computation, and the fit of the fusion parameters."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from evaluation import outputs
from serving.lexical import TermCounts, build_lexical_index
from serving.model import FusionParams, build_model, load_for_indexing, save_model
from tests.serving_support import DIM, TINY, build_transform, tiny_cvs
from trainer import fusion

pytestmark = pytest.mark.slow


def _jobs():
    with open(os.path.join(TINY, "jobs", "jobs.csv"), encoding="utf-8") as f:
        jobs = list(csv.DictReader(f))
    with open(os.path.join(TINY, "judgments", "judgments.csv"), encoding="utf-8") as f:
        judgments = list(csv.DictReader(f))
    examples = []
    for job in jobs:
        judged = [j for j in judgments if j["job_id"] == job["job_id"]]
        feature = {
            "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[job["text"].encode()])),
            "judged_cv_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[j["cv_id"].encode() for j in judged])),
            "judged_relevance": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(j["relevance"]) for j in judged])),
        }
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return [j["text"] for j in jobs], examples


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    transform_dir = build_transform(str(tmp_path_factory.mktemp("transform")))
    tft_output = tft.TFTransformOutput(transform_dir)
    vocab = tft_output.vocabulary_size_by_name("vocab")
    vectors = np.random.default_rng(3).normal(size=(vocab, DIM)).astype(np.float32)
    cv_ids, texts = tiny_cvs()
    return build_model(tft_output, vectors, cv_ids, texts, "sif", 10), texts


def _term_lists(model, texts):
    return [list(map(int, t)) for t in model.term_ids(tf.constant(texts)).numpy()]


def test_bm25_equals_a_plain_reference(model):
    """Lucene's BM25 (k1 1.2, b 0.75), written out term by term over the same Transform terms."""
    m, cv_texts = model
    job_texts, examples = _jobs()
    scores = m.score_examples(examples)[outputs.BM25]
    docs = _term_lists(m, cv_texts)
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = {}
    for d in docs:
        for t in set(d):
            df[t] = df.get(t, 0) + 1
    for row, query in enumerate(_term_lists(m, [t.encode() for t in job_texts])):
        for c, d in enumerate(docs):
            expected = 0.0
            for t in query:
                f = d.count(t)
                if f:
                    idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                    expected += idf * f * 2.2 / (f + 1.2 * (1 - 0.75 + 0.75 * len(d) / avgdl))
            assert scores[row, c] == pytest.approx(expected, rel=1e-6, abs=1e-6), (row, c)
    assert scores.max() > 0


def test_tfidf_equals_scikit_learn_on_the_same_terms(model):
    from sklearn.feature_extraction.text import TfidfVectorizer

    m, cv_texts = model
    job_texts, examples = _jobs()
    scores = m.score_examples(examples)[outputs.TFIDF]
    vectorizer = TfidfVectorizer(analyzer=lambda ids: ids, sublinear_tf=True)
    cvs = vectorizer.fit_transform(_term_lists(m, cv_texts))
    jobs = vectorizer.transform(_term_lists(m, [t.encode() for t in job_texts]))
    np.testing.assert_allclose(scores, (jobs @ cvs.T).toarray(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params", [FusionParams(True, 0.4, 0.35, 3), FusionParams(True, 1.0, 0.0, 1),
                                    FusionParams(True, 0.0, 0.5, 1), FusionParams(False, 0.5, 0.5, 2)])
def test_served_scores_equal_the_numpy_fusion(model, params, tmp_path):
    """The exported SavedModel's `scores` equal trainer.fusion.fused_scores on its own parts."""
    m, _ = model
    m.set_fusion(params)
    _, examples = _jobs()
    save_model(m, str(tmp_path / "1"))
    evaluate = tf.saved_model.load(str(tmp_path / "1")).signatures["evaluate"]
    served = {k: v.numpy() for k, v in evaluate(examples=tf.constant(examples)).items()}
    tfidf = fusion.tfidf_matrix(m.lexical_index(), len(m.cv_ids.numpy()))
    expected = fusion.fused_scores(served[outputs.EMBEDDING], served[outputs.BM25], tfidf, m.fusion())
    np.testing.assert_allclose(served[outputs.SERVED], expected, rtol=1e-4, atol=1e-4)
    top = m.serve(tf.constant([b"", b"zzzz qqqq"]))["scores"].numpy()
    assert np.all(top == 0.0), "a text without known words matches nothing"


def test_fit_finds_the_better_ranking_and_prefers_the_simplest(model):
    m, _ = model
    _, examples = _jobs()
    labels = m.labels_of_examples(examples)
    scores = m.score_examples(examples)
    tfidf = fusion.tfidf_matrix(m.lexical_index(), len(m.cv_ids.numpy()))
    # The random word vectors rank no better than chance; BM25 knows the words: the fit leans on BM25.
    fit = fusion.fit_fusion(labels, scores[outputs.EMBEDDING], scores[outputs.BM25], tfidf)
    assert fit.params.hybrid and fit.params.lexical_weight >= 0.5
    assert fit.objective > fit.embedding_objective
    assert fit.objective == pytest.approx(fusion.objective(labels, fusion.fused_scores(
        scores[outputs.EMBEDDING], scores[outputs.BM25], tfidf, fit.params)))
    # Labels that make the embedding's own ranking perfect: nothing beats it, the first grid point wins.
    perfect = (scores[outputs.EMBEDDING] >= np.sort(scores[outputs.EMBEDDING], axis=1)[:, [-3]]) * 2.0
    fit = fusion.fit_fusion(perfect, scores[outputs.EMBEDDING], scores[outputs.BM25], tfidf)
    assert fit.params == FusionParams(True, 0.0, 0.0, fusion.FEEDBACK_DOCS[0]) and fit.objective == 1.0
    with pytest.raises(ValueError, match="no eval job has a relevant CV"):
        fusion.fit_fusion(np.zeros_like(labels), scores[outputs.EMBEDDING], scores[outputs.BM25], tfidf)


def test_feedback_of_fewer_cvs_is_the_first_part_of_one_similarity_product():
    from scipy import sparse

    rng = np.random.default_rng(3)
    tfidf = sparse.random(30, 50, density=0.2, format="csr", random_state=4)
    first = rng.normal(size=(6, 30))
    first[2, :10] = first[2, 0]  # ties: lower index first
    similarity = fusion.top_similarity(first, tfidf, 5)
    for docs in (1, 2, 3, 5):
        assert np.array_equal(fusion.decayed_feedback(similarity[:, :docs]), fusion.feedback_scores(first, tfidf, docs))


def test_index_rebuild_keeps_everything_and_reweights_terms(model, tmp_path):
    m, cv_texts = model
    m.set_fusion(FusionParams(True, 0.3, 0.2, 2))
    save_model(m, str(tmp_path / "1"))
    again = load_for_indexing(str(tmp_path / "1"), str(tmp_path / "work"))
    assert again.fusion() == m.fusion()
    _, examples = _jobs()
    before, after = m.score_examples(examples), again.score_examples(examples)
    for name in outputs.VARIANTS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-5)
    # The lexical index of the first half of the CVs equals one built from those CVs alone.
    ids, vectors, snippets, counts = again.index_parts()
    half = len(ids) // 2
    again.set_index_parts(ids[:half], vectors[:half], snippets[:half], counts.rows(range(half)))
    alone = build_lexical_index(TermCounts.from_token_ids(_term_lists(m, cv_texts[:half])), m.n_terms)
    np.testing.assert_allclose(again.bm25_values.numpy(), alone.bm25_values, rtol=1e-6)
    np.testing.assert_array_equal(again.term_column.numpy(), alone.term_column)
    # The weights were recomputed for the smaller index, not kept from the full one.
    full = m.lexical_index()
    assert len(again.idf.numpy()) < len(full.idf)
    assert not np.allclose(again.bm25_values.numpy(), full.bm25_values[:len(again.bm25_values.numpy())])


def test_index_update_replaces_and_adds_cvs_and_reweights_the_whole_index(model, tmp_path):
    from serving.index import update_index

    m, cv_texts = model
    m.set_fusion(FusionParams(True, 0.5, 0.2, 2))
    base = tmp_path / "serving"
    save_model(m, str(base / "1"))
    ids = [i.decode() for i in m.cv_ids.numpy()]
    replaced_text = "Lighthouse keeper: fog signal maintenance and Fresnel lens polishing"
    added_text = "Registered nurse: patient triage; ventilator management and medication"
    (tmp_path / "cvs.csv").write_text(f"cv_id,text\n{ids[0]},{replaced_text}\ncv-new-1,{added_text}\n",
                                      encoding="utf-8")
    from config import PipelineConfig

    metadata = PipelineConfig.create({"workspace": str(tmp_path)}).metadata_connection()
    result = update_index([str(tmp_path / "cvs.csv")], str(base), metadata)
    assert (result.added, result.replaced, result.index_size) == (1, 1, len(ids) + 1)

    updated = load_for_indexing(result.path, str(tmp_path / "work"))
    assert [i.decode() for i in updated.cv_ids.numpy()] == ids + ["cv-new-1"]
    assert updated.fusion() == m.fusion()
    texts = [replaced_text.encode()] + list(cv_texts[1:]) + [added_text.encode()]
    expected = build_lexical_index(TermCounts.from_token_ids(_term_lists(m, texts)), m.n_terms)
    np.testing.assert_array_equal(updated.lexical_indices.numpy(), expected.indices)
    np.testing.assert_allclose(updated.bm25_values.numpy(), expected.bm25_values, rtol=1e-6)
    top = updated.serve(tf.constant([b"lighthouse fresnel lens fog signal"]))["cv_ids"].numpy()[0]
    assert top[0] == ids[0].encode()


def test_relevance_labels_place_each_judged_cv_in_its_index_column(model):
    m, _ = model
    index = [i.decode() for i in m.cv_ids.numpy()]
    rng = np.random.default_rng(3)
    jobs = []
    for _ in range(7):
        judged = [index[k] for k in rng.choice(len(index), size=rng.integers(0, 6), replace=False)]
        judged += ["cv-not-indexed", ""][: rng.integers(0, 3)]  # unknown ids get no column
        jobs.append({cv: int(rng.integers(1, 3)) for cv in judged})
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "judged_cv_ids": tf.train.Feature(bytes_list=tf.train.BytesList(value=[c.encode() for c in job])),
        "judged_relevance": tf.train.Feature(int64_list=tf.train.Int64List(value=list(job.values()))),
    })).SerializeToString() for job in jobs]
    expected = np.zeros((len(jobs), len(index)), np.float32)
    for row, job in enumerate(jobs):
        for cv, relevance in job.items():
            if cv in index:
                expected[row, index.index(cv)] = relevance
    np.testing.assert_array_equal(m.labels_of_examples(examples), expected)
    assert expected.sum() > 0


def test_the_fusion_fit_takes_at_most_its_job_limit_evenly_spaced_whatever_the_order():
    from components.glove_trainer.executor import fit_jobs

    jobs = [f"job-{k:03d}".encode() for k in range(10)]
    shuffled = [jobs[k] for k in np.random.default_rng(1).permutation(10)]
    assert fit_jobs(shuffled, 10) == jobs and fit_jobs(shuffled, 50) == jobs
    assert fit_jobs(shuffled, 4) == fit_jobs(jobs, 4) == [jobs[0], jobs[3], jobs[6], jobs[9]]
    assert fit_jobs(shuffled, 1) == [jobs[0]]
