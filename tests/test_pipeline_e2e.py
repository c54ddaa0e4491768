"""The whole cvrank pipeline on the tiny dataset: real TFX components, real ML Metadata, real Beam."""

import csv
import importlib.util
import os
import re
import shutil
import sys

import pytest
import tensorflow as tf

from config import PROJECT_ROOT, PipelineConfig
from metadata import mlmd
from orchestration import runner
from pipeline.pipeline import create_pipeline
from orchestration.summary import summarize
from ml_metadata.proto import metadata_store_pb2
from components.data_check import DataValidationError
from dataset.files import InputFileError
from serving import pushes
from serving.base_path import versions_on_disk
from serving.index import update_index
from tests.serving_support import assert_standard_ops

TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")
UPSTREAM = ["FileCheck", "jobs_example_gen", "texts_example_gen", "judgments_example_gen", "texts_statistics_gen",
            "texts_schema_gen", "texts_example_validator", "DataCheck", "Transform", "CooccurrenceGen"]

pytestmark = pytest.mark.slow


def tiny_settings(data_dir=TINY, **overrides):
    """Settings that keep a run on the tiny dataset short."""
    return {**dict(data_dir=str(data_dir), vocab_min_count=2, embedding_dim=16, epochs=5, batch_size=2048,
                   map_floor=0.05), **overrides}


def tiny_config(workspace, data_dir=TINY, **overrides):
    return PipelineConfig(**tiny_settings(data_dir, workspace=str(workspace), **overrides))


def run(config):
    pipeline = create_pipeline(config)
    run_id = runner.run_pipeline(pipeline)
    order = runner.node_ids(runner.compile_pipeline(pipeline))
    return summarize(mlmd.open_store(config.metadata_connection()), config.pipeline_name, run_id, order)


def states(summary):
    return dict(summary.node_states)


def pushed_versions(config):
    return [str(v) for v in sorted(versions_on_disk(config.serving_dir))]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    config = tiny_config(tmp_path_factory.mktemp("ws"))
    return config, run(config)


def test_first_run_executes_every_node_and_pushes(first_run):
    config, summary = first_run
    assert all(state == "COMPLETE" for node, state in summary.node_states
               if node != "previous_blessed_model_resolver"), summary.format()
    assert summary.blessed is True, summary.format()
    assert summary.pushed_version and pushed_versions(config) == [summary.pushed_version]
    overall = summary.metrics["Overall"]
    assert 0.0 < overall["map"] <= 1.0 and 0.0 < overall["ndcg@10"] <= 1.0
    assert any(name.startswith("major_group=") for name in summary.metrics)
    assert any(name.startswith("text_words_bucket=") for name in summary.metrics)


def test_lineage_pushed_model_back_to_example_gen(first_run):
    """ML Metadata links pushed model <- GloveTrainer <- CooccurrenceGen <- Transform <- ExampleGen:
    each node's output was produced by an execution that consumed its parent node's output."""
    config, summary = first_run
    store = mlmd.sqlite_store(config.metadata_path)

    def output(node, key):
        [artifact] = mlmd.run_node_outputs(store, config.pipeline_name, summary.run_id, node)[key]
        return artifact

    chain = [("Pusher", "pushed_model", "GloveTrainer"), ("GloveTrainer", "model", "CooccurrenceGen"),
             ("CooccurrenceGen", "cooccurrence", "Transform"),
             ("Transform", "transformed_examples", "texts_example_gen")]
    for node, key, parent in chain:
        upstream = mlmd.upstream_nodes(store, output(node, key).id, config.pipeline_name)
        assert upstream[node] == 1 and upstream[parent] == 2, (node, upstream)


def test_pushed_model_answers_raw_text(first_run):
    config, summary = first_run
    model = tf.saved_model.load(os.path.join(config.serving_dir, summary.pushed_version))
    out = model.signatures["serving_default"](text=tf.constant(
        ["Registered nurse: care for patients, administer medication.", ""]))
    ids, scores = out["cv_ids"].numpy(), out["scores"].numpy()
    with open(os.path.join(TINY, "cvs", "cvs.csv")) as f:
        all_ids = {row["cv_id"] for row in csv.DictReader(f)}
    assert ids.shape == scores.shape and ids.shape[1] == min(config.top_k, len(all_ids))
    assert {i.decode() for i in ids[0]} <= all_ids
    assert all(scores[0][:-1] >= scores[0][1:]), "best first"
    assert scores[1].max() == 0.0, "a text without known words matches nothing"


def test_second_run_is_all_cached_then_trainer_change_reruns_downstream_only(first_run):
    config, first = first_run
    again = run(config)
    assert all(state == "CACHED" for node, state in again.node_states
               if node != "previous_blessed_model_resolver"), again.format()
    assert pushed_versions(config) == [first.pushed_version]

    changed = run(tiny_config(config.workspace, epochs=6))
    s = states(changed)
    for node in UPSTREAM:
        assert s[node] == "CACHED", changed.format()
    for node in ("GloveTrainer", "Evaluator", "Pusher"):
        assert s[node] == "COMPLETE", changed.format()


def test_a_model_worse_than_the_blessed_one_is_not_pushed(first_run):
    config, first = first_run
    # A blessed model other than the first run's, whatever the other tests ran: a MAP drop of up to 1.0
    # still blesses.
    other = run(tiny_config(config.workspace, epochs=7, map_tolerance=1.0, bless_over_bm25=False))
    assert other.blessed is True, other.format()
    versions = pushed_versions(config)
    # Back to the first run's model (cached), compared with that one: a negative tolerance demands a MAP
    # above it by 1.0, which is impossible.
    strict = run(tiny_config(config.workspace, map_tolerance=-1.0))
    assert states(strict)["Evaluator"] == "COMPLETE" and states(strict)["GloveTrainer"] == "CACHED"
    assert strict.blessed is False, strict.format()
    assert strict.pushed_version is None
    assert pushed_versions(config) == versions


@pytest.mark.parametrize("corruption, error, message, failed_node", [
    ("unknown_cv", DataValidationError, "judgments: cv_id: not among the CVs (cvs/*.csv): 1 found: cv-999999", "DataCheck"),
    ("bad_relevance", DataValidationError, "judgments: relevance: not one of 0, 1, 2: 1 found:", "DataCheck"),
    ("empty_text", DataValidationError, "cvs: text: empty text (cv_id shown): 1 found: cv-000001", "DataCheck"),
    ("not_utf8", InputFileError, "cvs.csv, line 50: not UTF-8 (byte 0xe9", "FileCheck"),
])
def test_bad_input_stops_before_training_and_keeps_pushed_model(first_run, tmp_path, corruption, error, message,
                                                               failed_node):
    config, first = first_run
    data = tmp_path / "data"
    shutil.copytree(TINY, data)
    judgments = data / "judgments" / "judgments.csv"
    cvs = data / "cvs" / "cvs.csv"
    if corruption == "unknown_cv":
        with open(judgments, "a") as f:
            f.write("11-1011.00,cv-999999,2\n")
    elif corruption == "bad_relevance":
        rows = judgments.read_text().splitlines()
        rows[1] = rows[1].rsplit(",", 1)[0] + ",7"
        judgments.write_text("\n".join(rows) + "\n")
    elif corruption == "empty_text":
        rows = cvs.read_text().splitlines()
        rows[1] = rows[1].split(",", 1)[0] + ","
        cvs.write_text("\n".join(rows) + "\n")
    else:
        with open(cvs, "ab") as f:
            f.write(b"cv-999999,caf\xe9 manager\n")
    before = pushed_versions(config)
    store = mlmd.sqlite_store(config.metadata_path)
    executions_before = {e.id: (e.last_known_state, e.type_id) for e in store.get_executions()}

    bad = tiny_config(config.workspace, data_dir=data)
    pipeline = create_pipeline(bad)
    run_id = runner.new_run_id()
    with pytest.raises(error) as raised:
        runner.run_pipeline(pipeline, run_id=run_id)
    assert message in str(raised.value), str(raised.value)
    assert pushed_versions(config) == before
    # The failed node is recorded as FAILED; nothing after it ran; every earlier execution is unchanged.
    states_of_run = mlmd.run_node_states(store, config.pipeline_name, run_id)
    assert states_of_run[failed_node] == "FAILED"
    assert "Transform" not in states_of_run and "GloveTrainer" not in states_of_run
    after = {e.id: (e.last_known_state, e.type_id) for e in store.get_executions()}
    assert {k: after[k] for k in executions_before} == executions_before
    assert states(run(config))["GloveTrainer"] == "CACHED"


def test_pushed_model_uses_standard_ops_only(first_run):
    config, first = first_run
    assert_standard_ops(os.path.join(config.serving_dir, first.pushed_version))


def test_index_update_pushes_a_version_with_lineage_to_the_trained_model(first_run, tmp_path):
    """`cvrank index` after a real run: the new version ranks the new CV first, and ML Metadata links it
    to the version it started from, that version's Pusher, and the GloveTrainer model behind it."""
    config, first = first_run
    cvs = tmp_path / "new_cvs.csv"
    text = "Registered nurse; intensive care unit; ventilator management; patient triage and medication"
    cvs.write_text(f"cv_id,text\ncv-added-1,{text}\n", encoding="utf-8")
    latest = max(pushed_versions(config), key=int)
    result = update_index([str(cvs)], config.serving_dir, config.metadata_connection(), config.pipeline_name)
    assert result.source_version == int(latest) and result.added == 1 and result.replaced == 0
    assert str(result.version) in pushed_versions(config) and result.version > int(latest)

    model = tf.saved_model.load(result.path)
    top = model.signatures["serving_default"](text=tf.constant([text]))["cv_ids"].numpy()[0]
    assert top[0] == b"cv-added-1"

    store = mlmd.sqlite_store(config.metadata_path)
    pushed = pushes.push_records(store, config.serving_dir)[result.version].artifact
    execution, exec_type, inputs = mlmd.producer(store, pushed.id)
    assert exec_type == "cvrank.CvIndexUpdate"
    assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    [cv_file] = inputs["cvs"]
    assert cv_file.uri == str(cvs) and len(cv_file.custom_properties["sha256"].string_value) == 64
    [source] = inputs["source_model"]
    assert source.custom_properties["pushed_version"].string_value == latest
    _, source_type, pusher_inputs = mlmd.producer(store, source.id)
    assert source_type.endswith("Pusher")
    [trained] = pusher_inputs["model"]
    _, trainer_type, _ = mlmd.producer(store, trained.id)
    assert trainer_type.endswith("GloveTrainer")



def _ranking_job_ids(examples_uri, split):
    files = [os.path.join(examples_uri, f"Split-{split}", f) for f in os.listdir(os.path.join(examples_uri, f"Split-{split}"))]
    return {tf.train.Example.FromString(r.numpy()).features.feature["job_id"].bytes_list.value[0].decode()
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")}


def test_fusion_is_fitted_on_eval_jobs_only(first_run, tmp_path):
    """New labels for the held-out test jobs re-run GloveTrainer (its ranking examples changed) and change
    nothing in the trained model: word vectors, fusion weights and index are identical."""
    config, first = first_run
    store = mlmd.sqlite_store(config.metadata_path)

    [examples] = mlmd.run_node_outputs(store, config.pipeline_name, first.run_id, "DataCheck")["ranking_examples"]
    test_jobs = _ranking_job_ids(examples.uri, "test")
    data = tmp_path / "data"
    shutil.copytree(TINY, data)
    path = data / "judgments" / "judgments.csv"
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if not (r["job_id"] in test_jobs and r["relevance"] == "1")]
    assert test_jobs and len(kept) < len(rows)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ["job_id", "cv_id", "relevance"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)

    changed_config = tiny_config(tmp_path / "ws", data_dir=data)
    changed = run(changed_config)
    assert states(changed)["GloveTrainer"] == "COMPLETE", changed.format()
    changed_store = mlmd.sqlite_store(changed_config.metadata_path)
    [changed_examples] = mlmd.run_node_outputs(changed_store, changed_config.pipeline_name, changed.run_id,
                                               "DataCheck")["ranking_examples"]
    assert _ranking_job_ids(changed_examples.uri, "test") == test_jobs

    [model] = mlmd.run_node_outputs(store, config.pipeline_name, first.run_id, "GloveTrainer")["model"]
    [changed_model] = mlmd.run_node_outputs(changed_store, changed_config.pipeline_name, changed.run_id,
                                            "GloveTrainer")["model"]
    fusion = {k: v for k, v in model.custom_properties.items() if k.startswith("fusion_")}
    assert fusion and fusion == {k: v for k, v in changed_model.custom_properties.items() if k.startswith("fusion_")}
    readers = [tf.train.load_checkpoint(os.path.join(m.uri, "Format-Serving", "variables", "variables"))
               for m in (model, changed_model)]
    names = sorted(readers[0].get_variable_to_shape_map())
    assert sorted(readers[1].get_variable_to_shape_map()) == names
    for name in names:
        if name.endswith("VARIABLE_VALUE"):
            a, b = readers[0].get_tensor(name), readers[1].get_tensor(name)
            assert a.shape == b.shape and (a == b).all(), name


def test_ranking_benchmark_recomputes_the_served_scores(first_run, capsys):
    """benchmarks/ranking_quality.py on the tiny run: every model output is reported, and its NumPy
    recomputation of the served score equals what the pushed model's graph returns."""
    config, _ = first_run
    spec = importlib.util.spec_from_file_location(
        "ranking_quality_e2e", os.path.join(PROJECT_ROOT, "benchmarks", "ranking_quality.py"))
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up while the file executes
    spec.loader.exec_module(bench)
    assert bench.main(["--workspace", str(config.workspace), "--data", TINY]) == 0
    out = capsys.readouterr().out
    for label in ("cvrank", "embedding only", "bm25", "tf-idf", "bm25 okapi (rank_bm25)"):
        assert re.search(rf"^{re.escape(label)}\s+\d\.\d{{4}}", out, re.M), (label, out)
    diffs = re.findall(r"served scores vs their NumPy recomputation .*: max \|difference\| (\S+)", out)
    assert len(diffs) == 2 and all(float(d) < 1e-4 for d in diffs), out
