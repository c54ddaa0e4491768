"""The data-validation gate: curated schemas (pipeline/schemas/) with ExampleValidator, and the
DataCheck component.

End to end (slow), the validation half of the pipeline that `pipeline.pipeline.create_pipeline`
builds (FileCheck, ExampleGens, StatisticsGens, ImportSchemaGens, ExampleValidators, DataCheck):
the valid tiny dataset passes without anomalies or warnings and DataCheck writes one ranking example
per job with its judgments; jobs whose judgments are all relevance 0 are left out of the ranking
examples with warnings recorded in ML Metadata (`warnings` on `ranking_examples`) and the run goes
on; each kind of bad data fails the run with a DataValidationError naming the file kind, field and
offending values, and a file-level fault stops the run at FileCheck with an InputFileError before
DataCheck. DataCheck's Beam checks and its executor run on Beam (slow); the schemas, the ranking
example, the word buckets, the sample combiner, the coverage warnings and the report are unit tests.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import shutil

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.data_check import DataValidationError
from components.data_check import checks, coverage, report
from config import PROJECT_ROOT, PipelineConfig
from dataset.files import InputFileError
from metadata import mlmd
from orchestration.summary import summarize
from orchestration import runner
from pipeline.pipeline import create_pipeline
from pipeline.beam import IN_PROCESS

TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")
SCHEMAS = os.path.join(PROJECT_ROOT, "pipeline", "schemas")
BEAM_ARGS = list(IN_PROCESS)
SLICE_FEATURES = ("major_group", "text_words_bucket")


# ---- the pipeline's validation half, built by the pipeline's own factory --------------------------

# FileCheck, the ExampleGens and their validation (statistics, curated schema, ExampleValidator) for
# texts, jobs and judgments, then DataCheck: everything of pipeline/pipeline.py before Transform.
VALIDATION_NODES = [
    "FileCheck",
    *(f"{kind}_example_gen" for kind in ("texts", "jobs", "judgments")),
    *(f"{kind}_{node}" for kind in ("texts", "jobs", "judgments")
      for node in ("statistics_gen", "schema_gen", "example_validator")),
    "DataCheck",
]


def validation_config(data_dir: str, workspace: str) -> PipelineConfig:
    return PipelineConfig(data_dir=data_dir, workspace=workspace, beam_pipeline_args=BEAM_ARGS)


def run_validation(config: PipelineConfig, run_id: str) -> str:
    """Runs the validation half of `create_pipeline(config)` as run `run_id`; returns the run id."""
    return runner.run_pipeline(create_pipeline(config), run_id=run_id, nodes=VALIDATION_NODES)


def _read_examples(split_dir: str) -> list[tf.train.Example]:
    out = []
    for path in sorted(glob.glob(os.path.join(split_dir, "*.gz"))):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            out.append(tf.train.Example.FromString(record.numpy()))
    return out


def _values(example: tf.train.Example, name: str) -> list:
    return checks.feature_values(example, name)


# ---- schemas, Beam checks, report, executor -------------------------------------------------------

def _example(**features) -> tf.train.Example:
    """A tf.Example as DatasetExampleGen writes it: str -> bytes, int -> int64, None -> a present
    feature without values (an empty CSV cell)."""
    example = tf.train.Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if value is None:
            feature.bytes_list.SetInParent()
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.bytes_list.value.append(value.encode("utf-8"))
    return example


def _schema_anomalies(schema_name: str, examples) -> dict:
    """{feature: [anomaly type names]} of TFDV's validation of `examples` against a schema file,
    as ExampleValidator validates (statistics of one split, no environment)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx.utils import io_utils
    from tfx_bsl.coders import example_coder

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(
        [e.SerializeToString() for e in examples])
    schema = io_utils.SchemaReader().read(os.path.join(SCHEMAS, f"{schema_name}.pbtxt"))
    anomalies = tfdv.validate_statistics(stats_impl.generate_statistics_in_memory(batch), schema)
    return {name: sorted(anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason)
            for name, info in anomalies.anomaly_info.items()}


CV_TEXT = "Experience: Prepare budgets. Skills: Examine financial records."
JOB = dict(job_id="13-2011.00", title="Accountants", text="Examine records.", major_group=13,
           minor_group="13-20")


@pytest.mark.parametrize("schema_name, examples, expected", [
    ("texts", [_example(cv_id="cv-1", text=CV_TEXT), _example(cv_id="cv-2", text=CV_TEXT)], {}),
    # The corpus split has no cv_id column: the texts schema allows that.
    ("texts", [_example(text="corpus text"), _example(text="more corpus text")], {}),
    ("texts", [_example(cv_id="cv-1"), _example(cv_id="cv-2")],
     {"text": ["SCHEMA_MISSING_COLUMN"]}),
    ("texts", [_example(cv_id="cv-1", text=None), _example(cv_id="cv-2", text=CV_TEXT)],
     {"text": ["FEATURE_TYPE_LOW_NUMBER_VALUES"]}),
    ("jobs", [_example(**JOB)], {}),
    ("jobs", [_example(**{**JOB, "major_group": "13"})],
     {"major_group": ["UNEXPECTED_DATA_TYPE"]}),
    ("jobs", [_example(**{**JOB, "minor_group": None})],
     {"minor_group": ["FEATURE_TYPE_LOW_NUMBER_VALUES"]}),
    ("judgments", [_example(job_id="j", cv_id="c", relevance=r) for r in (0, 1, 2)], {}),
    ("judgments", [_example(job_id="j", cv_id="c", relevance=3)],
     {"relevance": ["INT_TYPE_BIG_INT"]}),
    ("judgments", [_example(job_id="j", relevance=1)], {"cv_id": ["SCHEMA_MISSING_COLUMN"]}),
])
def test_schemas(schema_name, examples, expected):
    assert _schema_anomalies(schema_name, examples) == expected


def test_ranking_example_without_judgments_has_empty_typed_lists():
    example = checks.ranking_example(_example(**JOB), [])
    parsed = tf.io.parse_single_example(example.SerializeToString(), {
        "judged_cv_ids": tf.io.VarLenFeature(tf.string),
        "judged_relevance": tf.io.VarLenFeature(tf.int64),
        "text_words_bucket": tf.io.FixedLenFeature([], tf.string),
        "major_group": tf.io.FixedLenFeature([], tf.int64),
    })
    assert parsed["judged_cv_ids"].values.shape == (0,)
    assert parsed["judged_relevance"].values.shape == (0,)
    assert parsed["text_words_bucket"].numpy() == b"short"
    assert parsed["major_group"].numpy() == 13


@pytest.mark.parametrize("words, bucket", [
    (1, "short"), (19, "short"), (20, "medium"), (39, "medium"), (40, "long"), (500, "long")])
def test_words_bucket(words, bucket):
    assert checks.words_bucket(" ".join(["word"] * words) + "  \n") == bucket


def test_sample_and_count_keeps_a_bounded_sorted_sample():
    fn = checks.SampleAndCount(3)
    left = fn.create_accumulator()
    for v in ["e", "b", "g", "a"]:
        left = fn.add_input(left, v)
    right = fn.add_input(fn.create_accumulator(), "c")
    assert fn.extract_output(fn.merge_accumulators([left, right])) == (5, ["a", "b", "c"])


def _ser(**features) -> bytes:
    return _example(**features).SerializeToString()


def _job(job_id, words=5):
    return _ser(**{**JOB, "job_id": job_id, "text": " ".join(["w"] * words)})


@pytest.mark.slow
def test_check_and_join_finds_every_cross_reference_problem():
    cvs = [_ser(cv_id="c1", text=CV_TEXT), _ser(cv_id="c2", text=CV_TEXT),
           _ser(cv_id="c2", text=CV_TEXT), _ser(cv_id="c3", text=None), _ser(text="no id")]
    corpus = [_ser(text="corpus"), _ser(text="   ")]
    jobs = [("eval", _job("j1", 30)), ("test", _job("j2")), ("eval", _job("j3", 120)),
            ("test", _job("j4")), ("test", _job("j4"))]
    judgments = [_ser(job_id=j, cv_id=c, relevance=r) for j, c, r in [
        ("j1", "c2", 2), ("j1", "c1", 1), ("j1", "c1", 1), ("j2", "c1", 0), ("j9", "c1", 1),
        ("j2", "cX", 1), ("j2", "c3", 5)]] + [_ser(job_id="j2", cv_id="c2")]

    def ranking_row(kv):
        split, serialized = kv
        e = tf.train.Example.FromString(serialized)
        return (split, _values(e, "job_id")[0], tuple(_values(e, "judged_cv_ids")),
                tuple(_values(e, "judged_relevance")), _values(e, "text_words_bucket")[0],
                _values(e, "major_group")[0])

    def summary_row(r):
        if r["record"] == checks.COUNT:
            return ("count", r["name"], r["value"])
        if r["record"] == checks.JOBS:
            return ("jobs", r["split"], r["relevant"], r["count"], tuple(r["sample"]))
        if r["record"] == checks.SLICE:
            return ("slice", r["feature"], r["value"], r["split"], r["relevant"], r["count"])
        return (r["file_kind"], r["field"], r["problem"], r["count"], tuple(r["sample"]))

    with beam.Pipeline() as p:
        ranking, summary = checks.check_and_join(
            p | "Cvs" >> beam.Create(cvs), p | "Corpus" >> beam.Create(corpus),
            p | "Jobs" >> beam.Create(jobs), p | "Judgments" >> beam.Create(judgments), 10,
            relevance_threshold=1.0, slice_features=SLICE_FEATURES)
        # j3 has no judgment, so no relevant CV: it is counted, not ranked.
        assert_that(ranking | beam.Map(ranking_row), equal_to([
            ("eval", "j1", ("c1", "c1", "c2"), (1, 1, 2), "medium", 13),
            ("test", "j2", ("c1", "cX"), (0, 1), "short", 13),  # invalid grades are left out
        ]), label="Ranking")
        assert_that(summary | beam.Map(summary_row), equal_to([
            ("cvs", "cv_id", "missing or not a single value (CV text shown)", 1, ("'no id'",)),
            ("cvs", "cv_id", "duplicate cv_id", 1, ("c2 (2 rows)",)),
            ("cvs", "text", "empty text (cv_id shown)", 1, ("c3",)),
            ("corpus", "text", "empty text", 1, ("<empty>",)),
            ("jobs", "job_id", "duplicate job_id", 1, ("j4 (2 rows)",)),
            ("judgments", "(job_id, cv_id)", "duplicate judgment", 1, ("j1, c1 (2 rows)",)),
            ("judgments", "job_id", "not among the jobs (jobs/*.csv)", 1, ("j9 (in 1 judgment)",)),
            ("judgments", "cv_id", "not among the CVs (cvs/*.csv)", 1, ("cX (in 1 judgment)",)),
            ("judgments", "relevance", "not one of 0, 1, 2", 2,
             ("job_id j2, cv_id c2: relevance <none>", "job_id j2, cv_id c3: relevance 5")),
            ("count", "num_cvs", 5), ("count", "num_corpus_texts", 2), ("count", "num_jobs", 5),
            ("count", "num_judgments", 8), ("count", "num_judged_jobs", 3),
            # The duplicated j4 is a problem, not a job.
            ("jobs", "eval", True, 1, ("j1",)), ("jobs", "test", True, 1, ("j2",)),
            ("jobs", "eval", False, 1, ("j3",)),
            ("slice", "major_group", 13, "eval", True, 1),
            ("slice", "major_group", 13, "test", True, 1),
            ("slice", "major_group", 13, "eval", False, 1),
            ("slice", "text_words_bucket", "medium", "eval", True, 1),
            ("slice", "text_words_bucket", "short", "test", True, 1),
            ("slice", "text_words_bucket", "long", "eval", False, 1),
        ]), label="Summary")


@pytest.mark.slow
def test_relevance_threshold_decides_which_jobs_are_ranked():
    jobs = [("eval", _job("j1")), ("eval", _job("j2")), ("eval", _job("j3"))]
    judgments = [_ser(job_id=j, cv_id="c1", relevance=r) for j, r in [("j1", 2), ("j2", 1), ("j3", 0)]]
    with beam.Pipeline() as p:
        ranking, summary = checks.check_and_join(
            p | "Cvs" >> beam.Create([_ser(cv_id="c1", text=CV_TEXT)]), None,
            p | "Jobs" >> beam.Create(jobs), p | "Judgments" >> beam.Create(judgments), 10,
            relevance_threshold=2.0, slice_features=())
        ids = ranking | beam.Map(lambda kv: _values(tf.train.Example.FromString(kv[1]), "job_id")[0])
        assert_that(ids, equal_to(["j1"]), label="Ranked")
        jobs_records = (summary
                        | beam.Filter(lambda r: r["record"] in (checks.JOBS, checks.SLICE))
                        | beam.Map(lambda r: (r["record"], r["relevant"], r["count"],
                                              tuple(r["sample"]))))
        assert_that(jobs_records, equal_to([("jobs", True, 1, ("j1",)),
                                            ("jobs", False, 2, ("j2", "j3"))]), label="Jobs")


def _examples_artifact(root, name, splits):
    """An Examples artifact as ExampleGen writes it: `Split-<name>/*.gz` GZIP TFRecords."""
    artifact = standard_artifacts.Examples()
    artifact.uri = os.path.join(root, name)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for split, records in splits.items():
        directory = artifact_utils.get_split_uri([artifact], split)
        os.makedirs(directory)
        with tf.io.TFRecordWriter(os.path.join(directory, "data_tfrecord-00000-of-00001.gz"),
                                  options="GZIP") as writer:
            for record in records:
                writer.write(record)
    return artifact


def _anomalies_artifact(root, name, splits, anomalies=None):
    """An ExampleAnomalies artifact as ExampleValidator writes it: `Split-<name>/SchemaDiff.pb`."""
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = os.path.join(root, name)
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for split in splits:
        directory = artifact_utils.get_split_uri([artifact], split)
        os.makedirs(directory)
        proto = (anomalies or {}).get(split, anomalies_pb2.Anomalies())
        with open(os.path.join(directory, "SchemaDiff.pb"), "wb") as f:
            f.write(proto.SerializeToString())
    return artifact


def _run_executor(root, judgments, anomalies=None, jobs=None):
    from components.data_check import executor

    texts = {"cvs": [_ser(cv_id="c1", text=CV_TEXT), _ser(cv_id="c2", text=CV_TEXT)]}
    jobs = jobs or {"eval": [_job("j1")], "test": [_job("j2")]}
    output = standard_artifacts.Examples()
    output.uri = os.path.join(root, "ranking_examples")
    inputs = {
        "texts": [_examples_artifact(root, "texts", texts)],
        "jobs": [_examples_artifact(root, "jobs", jobs)],
        "judgments": [_examples_artifact(root, "judgments", {"all": judgments})],
        "texts_anomalies": [_anomalies_artifact(root, "ta", texts, anomalies)],
        "jobs_anomalies": [_anomalies_artifact(root, "ja", jobs)],
        "judgments_anomalies": [_anomalies_artifact(root, "ua", ["all"])],
    }
    context = executor.Executor.Context(beam_pipeline_args=list(IN_PROCESS),  # the executor extends it
                                        tmp_dir=os.path.join(root, "tmp"), unique_id="1")
    executor.Executor(context).Do(inputs, {"ranking_examples": [output]}, {
        "max_samples": 10, "relevance_threshold": 1.0, "eval_split": "eval",
        "slice_features": json.dumps(SLICE_FEATURES)})
    return output


@pytest.mark.slow
def test_executor_writes_ranking_examples(tmp_path):
    output = _run_executor(str(tmp_path), [_ser(job_id="j1", cv_id="c2", relevance=2),
                                           _ser(job_id="j1", cv_id="c1", relevance=1)])
    assert artifact_utils.decode_split_names(output.split_names) == ["eval", "test"]
    assert output.get_int_custom_property("num_judged_jobs") == 1
    (j1,) = _read_examples(artifact_utils.get_split_uri([output], "eval"))
    assert _values(j1, "judged_cv_ids") == ["c1", "c2"]
    assert _values(j1, "judged_relevance") == [1, 2]
    # j2 has no judgment: no ranking example, a count and a warning instead.
    assert _read_examples(artifact_utils.get_split_uri([output], "test")) == []
    assert output.get_int_custom_property("num_jobs_without_relevant_eval") == 0
    assert output.get_int_custom_property("num_jobs_without_relevant_test") == 1
    assert json.loads(output.get_string_custom_property("warnings")) == [
        "1 test job has no relevant CV and is left out of the metrics: j2"]


@pytest.mark.slow
def test_executor_stops_when_no_eval_job_has_a_relevant_cv(tmp_path):
    with pytest.raises(DataValidationError) as raised:
        _run_executor(str(tmp_path), [_ser(job_id="j1", cv_id="c1", relevance=0),
                                      _ser(job_id="j2", cv_id="c1", relevance=2)])
    message = str(raised.value)
    assert "(schema anomalies: 0, kinds of cross-reference problems: 1)" in message
    assert ("judgments: relevance: no eval job has a relevant CV (relevance >= 1), so the "
            "evaluation has no job to score: 1 found: j1") in message


@pytest.mark.slow
def test_executor_raises_on_cross_reference_problems(tmp_path):
    unknown = [_ser(job_id="j1", cv_id=f"cv-{k:02d}", relevance=1) for k in range(12, 0, -1)]
    with pytest.raises(DataValidationError) as raised:
        _run_executor(str(tmp_path), unknown + [_ser(job_id="j7", cv_id="c1", relevance=1)])
    message = str(raised.value)
    assert ("judgments: cv_id: not among the CVs (cvs/*.csv): 12 found: "
            + ", ".join(f"cv-{k:02d} (in 1 judgment)" for k in range(1, 11))
            + ", ... (2 more)") in message
    assert "judgments: job_id: not among the jobs (jobs/*.csv): 1 found: j7 (in 1 judgment)" \
        in message


@pytest.mark.slow
def test_executor_raises_on_anomalies(tmp_path):
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["text"]
    info.short_description = "Column dropped"
    info.description = "Column is completely missing"
    info.reason.add(type=anomalies_pb2.AnomalyInfo.SCHEMA_MISSING_COLUMN,
                    short_description="Column dropped",
                    description="The feature was present in fewer examples than expected.")
    with pytest.raises(DataValidationError) as raised:
        _run_executor(str(tmp_path), [_ser(job_id="j1", cv_id="c1", relevance=1)],
                      {"cvs": anomalies})
    assert ("cvs (split cvs): feature 'text': Column dropped: The feature was present in fewer "
            "examples than expected. [SCHEMA_MISSING_COLUMN]") in str(raised.value)


def test_report_reads_text_anomalies_files(tmp_path):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(["corpus", "missing"])
    os.makedirs(tmp_path / "Split-corpus")
    (tmp_path / "Split-corpus" / "anomalies.pbtxt").write_text(
        'anomaly_info { key: "text" value { short_description: "Missing values" '
        'description: "Some examples have fewer values than expected." } }')
    found = report.anomalies_of(artifact, {"corpus": "corpus"}, "texts")
    assert [(a.file_kind, a.split, a.feature, a.short_description) for a in found] == [
        ("corpus", "corpus", "text", "Missing values"),
        ("texts", "missing", "", "No validation result")]


def _jobs(split, relevant, *ids, count=None):
    return coverage.JobCount(split, relevant, len(ids) if count is None else count, ids)


def _assess(jobs, slices=(), splits=("eval", "test")):
    return coverage.assess(jobs, slices, list(splits), "eval", SLICE_FEATURES, 1.0)


def test_coverage_without_anything_left_out_has_no_warning():
    slices = [coverage.SliceCount("major_group", 13, "eval", True, 2),
              coverage.SliceCount("major_group", 13, "test", True, 1)]
    assert _assess([_jobs("eval", True, "a", "b"), _jobs("test", True, "c")], slices) == ([], [])


def test_coverage_names_jobs_without_a_relevant_cv_per_split():
    jobs = [_jobs("eval", True, "e1"),
            _jobs("eval", False, "11-1011.00", "11-1021.00", "13-1071.00"),
            _jobs("test", False, "t1", "t2", "t3", "t4", "t5", count=12),
            _jobs("test", True, "t9"),
            _jobs("other", False, "o1")]
    problems, warnings = _assess(jobs, splits=("eval", "test", "other"))
    assert problems == []
    assert warnings == [
        "3 eval jobs have no relevant CV and are left out of the metrics: 11-1011.00, 11-1021.00, "
        "13-1071.00",
        "12 test jobs have no relevant CV and are left out of the metrics: t1, t2, t3, t4, t5, ... "
        "(7 more)",
        "1 other job has no relevant CV and is left out of the metrics: o1"]
    assert [coverage.jobs_left_out(jobs, s) for s in ("eval", "test", "other")] == [3, 12, 1]


def test_coverage_names_slices_without_an_eval_example():
    jobs = [_jobs("eval", True, "a", "b"), _jobs("eval", False, "c"), _jobs("test", True, "d")]
    slices = [
        coverage.SliceCount("major_group", 13, "eval", True, 2),
        # 31: its only eval job has no relevant CV, the others are test jobs.
        coverage.SliceCount("major_group", 31, "eval", False, 1),
        coverage.SliceCount("major_group", 31, "test", True, 3),
        coverage.SliceCount("major_group", 31, "test", False, 1),
        coverage.SliceCount("major_group", 5, "test", True, 1),  # numbers sort as numbers
        coverage.SliceCount("text_words_bucket", "short", "eval", True, 2),
        coverage.SliceCount("text_words_bucket", "long", "eval", False, 1),
        coverage.SliceCount("minor_group", "13-10", "test", True, 1),  # not a slice feature
    ]
    problems, warnings = _assess(jobs, slices)
    assert problems == []
    assert warnings == [
        "1 eval job has no relevant CV and is left out of the metrics: c",
        "slice major_group=5 has no example in the eval split and is missing from the metrics (its "
        "1 job: 1 test job)",
        "slice major_group=31 has no example in the eval split and is missing from the metrics (its "
        "5 jobs: 1 eval job without a relevant CV, 4 test jobs)",
        "slice text_words_bucket=long has no example in the eval split and is missing from the "
        "metrics (its 1 job: 1 eval job without a relevant CV)"]


def test_coverage_stops_when_no_eval_job_has_a_relevant_cv():
    jobs = [_jobs("eval", False, "a", "b"), _jobs("test", False, "c"), _jobs("test", True, "d")]
    slices = [coverage.SliceCount("major_group", 13, "eval", False, 2)]
    problems, warnings = _assess(jobs, slices)
    assert [p.format() for p in problems] == [
        "judgments: relevance: no eval job has a relevant CV (relevance >= 1), so the evaluation "
        "has no job to score: 2 found: a, b"]
    # The slices are not listed as well: with no eval job at all, each would be.
    assert warnings == ["1 test job has no relevant CV and is left out of the metrics: c"]


def test_report_lists_warnings_after_the_problems():
    problem = report.Problem("cvs", "cv_id", "duplicate cv_id", 1, ("c2 (2 rows)",))
    assert report.format_report([], [problem], ["1 test job has no relevant CV and is left out of "
                                                "the metrics: j2"]).splitlines()[1:] == [
        "Cross-reference problems:",
        "  - cvs: cv_id: duplicate cv_id: 1 found: c2 (2 rows)",
        "Warnings (these alone would not stop the run):",
        "  - 1 test job has no relevant CV and is left out of the metrics: j2"]


# ---- the valid tiny dataset ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One run of the validation half over the valid tiny dataset (shared by the tests below)."""
    config = validation_config(TINY, str(tmp_path_factory.mktemp("baseline")))
    run_id = run_validation(config, "baseline")
    store = mlmd.sqlite_store(config.metadata_path)
    (mlmd_artifact,) = mlmd.run_node_outputs(store, config.pipeline_name, run_id,
                                             "DataCheck")["ranking_examples"]
    artifact = standard_artifacts.Examples()
    artifact.set_mlmd_artifact(mlmd_artifact)
    return {"config": config, "states": mlmd.run_node_states(store, config.pipeline_name, run_id),
            "artifact": artifact}


@pytest.mark.slow
def test_only_the_validation_half_runs(baseline):
    assert baseline["states"] == {node: "COMPLETE" for node in VALIDATION_NODES}
    assert sorted(os.listdir(baseline["config"].pipeline_root)) == sorted(VALIDATION_NODES)


@pytest.mark.slow
def test_valid_tiny_dataset_has_no_anomalies(baseline):
    root = baseline["config"].pipeline_root
    split_dirs = glob.glob(os.path.join(root, "*_example_validator", "anomalies", "*", "Split-*"))
    names = sorted(os.path.relpath(d, root).split(os.sep)[0] + "/" + os.path.basename(d)
                   for d in split_dirs)
    assert names == ["jobs_example_validator/Split-eval", "jobs_example_validator/Split-test",
                     "judgments_example_validator/Split-all",
                     "texts_example_validator/Split-corpus", "texts_example_validator/Split-cvs"]
    for d in split_dirs:
        anomalies = report.read_anomalies_proto(d)
        assert anomalies is not None and not anomalies.anomaly_info, (d, anomalies)
        assert not anomalies.HasField("dataset_anomaly_info")


@pytest.mark.slow
def test_ranking_examples_artifact(baseline):
    artifact = baseline["artifact"]
    assert artifact_utils.decode_split_names(artifact.split_names) == ["eval", "test"]
    assert artifact.get_string_custom_property("file_format") == "tfrecords_gzip"
    assert artifact.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert artifact.get_int_custom_property("num_jobs") == 16
    assert artifact.get_int_custom_property("num_cvs") == 48
    assert artifact.get_int_custom_property("num_judgments") == 96
    assert artifact.get_int_custom_property("num_judged_jobs") == 16
    assert artifact.get_int_custom_property("num_corpus_texts") == 200
    # Every job has relevant CVs and every slice value has eval jobs: checked, nothing to say.
    assert artifact.get_string_custom_property("warnings") == "[]"
    assert artifact.get_int_custom_property("num_jobs_without_relevant_eval") == 0
    assert artifact.get_int_custom_property("num_jobs_without_relevant_test") == 0

    by_split = {s: _read_examples(artifact_utils.get_split_uri([artifact], s))
                for s in ("eval", "test")}
    # jobs_example_gen splits the 16 jobs by a hash of job_id: 6 in eval, 10 in test.
    assert {s: len(examples) for s, examples in by_split.items()} == {"eval": 6, "test": 10}
    jobs = [e for examples in by_split.values() for e in examples]
    ids = [_values(e, "job_id")[0] for e in jobs]
    assert len(ids) == 16 and len(set(ids)) == 16
    assert sum(len(_values(e, "judged_cv_ids")) for e in jobs) == 96

    (hr,) = [e for e in jobs if _values(e, "job_id") == ["13-1071.00"]]
    # tests/data/tiny/judgments/judgments.csv rows of job 13-1071.00, sorted by cv_id.
    assert _values(hr, "judged_cv_ids") == ["cv-000001", "cv-000027", "cv-000033",
                                            "cv-000039", "cv-000042", "cv-000047"]
    assert _values(hr, "judged_relevance") == [2, 1, 2, 1, 2, 1]
    assert _values(hr, "title") == ["Human Resources Specialists"]
    assert _values(hr, "major_group") == [13]  # stays INT
    assert _values(hr, "minor_group") == ["13-10"]
    assert _values(hr, "text_words_bucket") == ["short"]  # 18 words
    (strategists,) = [e for e in jobs if _values(e, "job_id") == ["13-1161.01"]]
    assert _values(strategists, "text_words_bucket") == ["long"]  # 48 words


# ---- bad data: each case alone fails the run -----------------------------------------------------

def _rewrite(path: str, edit) -> None:
    """Rewrites the CSV at `path` with `edit(rows)` (rows include the header)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows = edit(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _drop_column(name):
    def edit(rows):
        k = rows[0].index(name)
        return [r[:k] + r[k + 1:] for r in rows]
    return edit


def _set_cell(row, column, value):
    def edit(rows):
        rows[row][rows[0].index(column)] = value
        return rows
    return edit


def _append(row):
    return lambda rows: rows + [row]


def _zero_relevance(*job_ids):
    """Every judgment of these jobs becomes relevance 0: they keep judged CVs, none relevant."""
    def edit(rows):
        job, relevance = rows[0].index("job_id"), rows[0].index("relevance")
        return [rows[0]] + [r[:relevance] + ["0"] + r[relevance + 1:] if r[job] in job_ids else r
                            for r in rows[1:]]
    return edit


# The jobs jobs_example_gen puts in the eval split of the tiny dataset (a hash of job_id); the other
# 10 are in test. Only 31-9093.00 is of major group 31, and 13-1161.01 of group 13.
TINY_EVAL_JOBS = ("13-1161.01", "31-9093.00", "33-2022.00", "33-3021.02", "33-3031.00", "37-3013.00")


def _duplicate_row(row):
    return lambda rows: rows + [list(rows[row])]


BAD_CASES = {
    # case: ([(file, edit), ...], (schema anomalies, kinds of cross-reference problems),
    #        substrings the report must contain)
    "empty_cv_text": (
        [("cvs/cvs.csv", _set_cell(5, "text", ""))], (1, 1),
        ["cvs (split cvs): feature 'text': Missing values", "[FEATURE_TYPE_LOW_NUMBER_VALUES]",
         "cvs: text: empty text (cv_id shown): 1 found: cv-000005"]),
    "unknown_cv_id_and_job_id": (
        [("judgments/judgments.csv", _append(["13-1071.00", "cv-999999", "1"])),
         ("judgments/judgments.csv", _append(["99-9999.00", "cv-000001", "1"]))], (0, 2),
        ["judgments: cv_id: not among the CVs (cvs/*.csv): 1 found: cv-999999 (in 1 judgment)",
         "judgments: job_id: not among the jobs (jobs/*.csv): 1 found: "
         "99-9999.00 (in 1 judgment)"]),
    "relevance_3": (
        [("judgments/judgments.csv", _set_cell(1, "relevance", "3"))], (1, 1),
        ["judgments (split all): feature 'relevance': Out-of-range values", "[INT_TYPE_BIG_INT]",
         "judgments: relevance: not one of 0, 1, 2: 1 found: "
         "job_id 13-1071.00, cv_id cv-000001: relevance 3"]),
    "duplicate_cv_id": (
        [("cvs/cvs.csv", _duplicate_row(3))], (0, 1),
        ["cvs: cv_id: duplicate cv_id: 1 found: cv-000003 (2 rows)"]),
    "no_relevant_eval_job": (
        [("judgments/judgments.csv", _zero_relevance(*TINY_EVAL_JOBS))], (0, 1),
        ["judgments: relevance: no eval job has a relevant CV (relevance >= 1), so the evaluation "
         "has no job to score: 6 found: 13-1161.01, 31-9093.00, 33-2022.00, 33-3021.02, "
         "33-3031.00, ... (1 more)"]),
}


def _bad_dataset(tmp_path, edits) -> str:
    """The tiny dataset without its corpus (optional; dropping it keeps the runs short), edited."""
    data = tmp_path / "data"
    shutil.copytree(TINY, data)
    shutil.rmtree(data / "corpus")
    for path, edit in edits:
        _rewrite(str(data / path), edit)
    return str(data)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_fails_the_run_with_a_report(case, tmp_path):
    edits, (n_anomalies, n_problems), expected = BAD_CASES[case]
    config = validation_config(_bad_dataset(tmp_path, edits), str(tmp_path / "work"))
    with pytest.raises(DataValidationError) as raised:
        run_validation(config, case)
    message = str(raised.value)
    assert (f"(schema anomalies: {n_anomalies}, kinds of cross-reference problems: "
            f"{n_problems})") in message, message
    for text in expected:
        assert text in message, f"{text!r} not in the report:\n{message}"
    store = mlmd.sqlite_store(config.metadata_path)
    # The files themselves are fine: every node before DataCheck completes, DataCheck fails.
    assert mlmd.run_node_states(store, config.pipeline_name, case) == {
        **{node: "COMPLETE" for node in VALIDATION_NODES[:-1]}, "DataCheck": "FAILED"}
    # Nothing downstream may read a half-checked output: the failed execution publishes nothing.
    assert mlmd.run_node_outputs(store, config.pipeline_name, case, "DataCheck") == {}
    published = [a.uri for a in store.get_artifacts_by_type("Examples")
                 if "/DataCheck/" in a.uri and a.state == a.LIVE]
    assert published == []


# ---- data warnings: recorded, and the run goes on ------------------------------------------------

@pytest.mark.slow
def test_jobs_without_relevant_cv_are_left_out_with_warnings_in_mlmd(tmp_path, caplog):
    # 31-9093.00 is the only eval job of major group 31; 13-1071.00 is a test job.
    data = _bad_dataset(tmp_path, [
        ("judgments/judgments.csv", _zero_relevance("31-9093.00", "13-1071.00"))])
    config = validation_config(data, str(tmp_path / "work"))
    with caplog.at_level(logging.WARNING):
        run_validation(config, "all-zero")
    store = mlmd.sqlite_store(config.metadata_path)
    assert mlmd.run_node_states(store, config.pipeline_name, "all-zero") == {
        node: "COMPLETE" for node in VALIDATION_NODES}

    expected = [
        "1 eval job has no relevant CV and is left out of the metrics: 31-9093.00",
        "1 test job has no relevant CV and is left out of the metrics: 13-1071.00",
        "slice major_group=31 has no example in the eval split and is missing from the metrics "
        "(its 4 jobs: 1 eval job without a relevant CV, 3 test jobs)",
    ]
    (mlmd_artifact,) = mlmd.run_node_outputs(store, config.pipeline_name, "all-zero",
                                             "DataCheck")["ranking_examples"]
    assert json.loads(mlmd_artifact.custom_properties["warnings"].string_value) == expected
    assert mlmd_artifact.custom_properties["num_jobs_without_relevant_eval"].int_value == 1
    assert mlmd_artifact.custom_properties["num_jobs_without_relevant_test"].int_value == 1
    (dataset_files,) = mlmd.run_node_outputs(store, config.pipeline_name, "all-zero",
                                             "FileCheck")["dataset_files"]
    assert dataset_files.custom_properties["warnings"].string_value == "[]"
    for warning in expected:
        assert f"DataCheck: {warning}" in [r.getMessage() for r in caplog.records
                                           if r.levelno == logging.WARNING]
    # The run summary prints them.
    summary = summarize(mlmd.open_store(config.metadata_connection()), config.pipeline_name, "all-zero", list(VALIDATION_NODES))
    assert summary.warnings == expected
    assert f"warning: {expected[0]}" in summary.format().splitlines()

    artifact = standard_artifacts.Examples()
    artifact.set_mlmd_artifact(mlmd_artifact)
    ids = {s: sorted(_values(e, "job_id")[0]
                     for e in _read_examples(artifact_utils.get_split_uri([artifact], s)))
           for s in ("eval", "test")}
    assert ids["eval"] == sorted(set(TINY_EVAL_JOBS) - {"31-9093.00"})
    assert len(ids["test"]) == 9 and "13-1071.00" not in ids["test"]
    # Dataset counts still count every job.
    assert mlmd_artifact.custom_properties["num_jobs"].int_value == 16


@pytest.mark.slow
def test_cvs_without_text_column_stops_the_run_at_file_check(tmp_path):
    data = _bad_dataset(tmp_path, [("cvs/cvs.csv", _drop_column("text"))])
    config = validation_config(data, str(tmp_path / "work"))
    with pytest.raises(InputFileError) as raised:
        run_validation(config, "no-text-column")
    cvs = os.path.join(data, "cvs", "cvs.csv")
    assert str(raised.value) == (
        "the input files have problems (1 problem):\n"
        f"  - {cvs}, line 1: missing column 'text' (the header is 'cv_id'; cvs files have "
        "cv_id,text)")
    # FileCheck failed and nothing after it ran: no ExampleGen, no validation, no DataCheck.
    store = mlmd.sqlite_store(config.metadata_path)
    assert mlmd.run_node_states(store, config.pipeline_name, "no-text-column") == {
        "FileCheck": "FAILED"}
    assert [e.last_known_state for e in store.get_executions()] == [metadata_store_pb2.Execution.FAILED]
    assert store.get_artifacts_by_type("Examples") == []
