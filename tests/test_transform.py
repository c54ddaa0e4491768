"""The Transform step: the tokenizer's rules, and the real preprocessing_fn run by tf.Transform on
Beam, its vocabulary (min count, max size) and its transform graph as the serving model uses it.

The tokenizer and preprocessing_fn's helpers are TensorFlow unit tests; everything that runs
tf.Transform's Beam analysis, or the TFX Transform component, is slow."""

from __future__ import annotations

import collections
import json
import re

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from transform import contract, preprocessing
from transform.tokenizer import tokenize
from pipeline.beam import IN_PROCESS


def _tokens(texts):
    return [[t.decode("utf-8") for t in row] for row in tokenize(tf.constant(texts)).to_list()]


# (raw text, expected tokens): every rule of transform/tokenizer.py's docstring.
TOKENIZER_CASES = [
    # technical tokens stay whole
    ("C#", ["c#"]),
    ("C++", ["c++"]),
    ("F#", ["f#"]),
    (".NET", [".net"]),
    ("ASP.NET", ["asp.net"]),
    ("Node.js", ["node.js"]),
    ("CI/CD", ["ci/cd"]),
    ("TCP/IP", ["tcp/ip"]),
    ("PL/SQL", ["pl/sql"]),
    ("e-commerce", ["e-commerce"]),
    ("CISSP", ["cissp"]),
    ("X.509", ["x.509"]),
    ("3D", ["3d"]),
    ("24/7", ["24/7"]),
    ("Notepad++", ["notepad++"]),
    ("C++11", ["c++11"]),
    ("Python3", ["python3"]),
    # edges: punctuation around technical tokens
    ("(C++)", ["c++"]),
    ("C++.", ["c++"]),
    ("C#,", ["c#"]),
    ("[.NET]", [".net"]),
    (".NET.", [".net"]),
    ("-.NET", [".net"]),
    ("PL/SQL.", ["pl/sql"]),
    ("{Node.js};", ["node.js"]),
    ("'X.509'", ["x.509"]),
    # ordinary punctuation splits
    ("python.", ["python"]),
    ("...and.", ["and"]),
    ("c++, c#; f#: go", ["c++", "c#", "f#", "go"]),
    ('"quoted" \'single\' “curly” ‘curly’', ["quoted", "single", "curly", "curly"]),
    ("(a)[b]{c}<d>", ["a", "b", "c", "d"]),
    ("yes! no? maybe*", ["yes", "no", "maybe"]),
    ("etc.)", ["etc"]),
    ("and...then", ["and", "then"]),
    ("/python/ -java- _sql_", ["python", "java", "sql"]),
    ("pre- and post-processing", ["pre", "and", "post-processing"]),
    ("well--known", ["well", "known"]),
    ("2010–2015 and 2016—2018", ["2010", "2015", "and", "2016", "2018"]),
    ("• Python ✓ Java ★", ["python", "java"]),
    ("#hashtag +44 a + b & c", ["hashtag", "44", "a", "b", "c"]),
    ("5+ years", ["5", "years"]),
    ("100% $100k", ["100", "100k"]),
    # abbreviations keep inner periods only
    ("e.g.", ["e.g"]),
    ("Ph.D.", ["ph.d"]),
    (".5 FTE", ["5", "fte"]),
    # numbers
    ("3.5 years", ["3.5", "years"]),
    ("1,000", ["1", "000"]),
    ("12:30", ["12", "30"]),
    # slashes: short parts stay together, a 4+ character part splits the token
    ("and/or", ["and/or"]),
    ("UI/UX I/O C/C++", ["ui/ux", "i/o", "c/c++"]),
    ("HTML/CSS/JavaScript", ["html", "css", "javascript"]),
    ("Java/Python", ["java", "python"]),
    ("ASP.NET/C#", ["asp.net", "c#"]),
    ("Java/-C", ["java", "c"]),
    ("01/02/2020", ["01", "02", "2020"]),
    ("https://www.example.com/jobs", ["https", "www.example.com", "jobs"]),
    # apostrophes, ampersands, underscores
    ("company's", ["company"]),
    ("Master’s degree", ["master", "degree"]),
    ("O'Reilly rock'n'roll", ["o'reilly", "rock'n'roll"]),
    ("C#'s", ["c#"]),
    ("R&D AT&T", ["r&d", "at&t"]),
    ("snake_case __init__", ["snake_case", "init"]),
    ("john@example.com", ["john", "example.com"]),
    # Unicode
    ("ÉCOLE Polytechnique", ["école", "polytechnique"]),
    ("Москва İstanbul Straße", ["москва", "i̇stanbul", "straße"]),
    ("naïve café", ["naïve", "café"]),
    ("cafe\u0301", ["cafe\u0301"]),  # decomposed: the combining mark stays in the word
    ("co\u00adoperate e\u2011commerce", ["cooperate", "e-commerce"]),
    ("a\u00a0b\tc\nd\u2003e", ["a", "b", "c", "d", "e"]),
    (b"ab\xffcd", ["ab", "cd"]),  # invalid UTF-8 splits instead of failing
    # nothing to keep
    ("", []),
    ("  ,;; -- ... / + # ", []),
]


@pytest.mark.parametrize("text,expected", TOKENIZER_CASES, ids=[repr(c[0])[:40] for c in TOKENIZER_CASES])
def test_tokenizer_case(text, expected):
    assert _tokens([text]) == [expected]


def test_tokenizer_sentence_and_batch_shape():
    cv = ("Senior .NET developer (C#, ASP.NET Core, Node.js) with 5+ years in e-commerce; "
          "built CI/CD pipelines, debugged TCP/IP stacks and tuned PL/SQL... "
          "Holds CISSP, signs X.509 certificates, prints in 3D, on call 24/7. "
          "Knows HTML/CSS and C/C++ -- and/or Python.")
    expected = ["senior", ".net", "developer", "c#", "asp.net", "core", "node.js", "with", "5", "years",
                "in", "e-commerce", "built", "ci/cd", "pipelines", "debugged", "tcp/ip", "stacks", "and",
                "tuned", "pl/sql", "holds", "cissp", "signs", "x.509", "certificates", "prints", "in",
                "3d", "on", "call", "24/7", "knows", "html", "css", "and", "c/c++", "and/or", "python"]
    rows = _tokens([cv, "", "One more."])
    assert rows == [expected, [], ["one", "more"]]


def test_tokenizer_runs_in_a_graph_and_checks_rank():
    fn = tf.function(tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    out = fn(tf.constant(["C++ and .NET", ""]))
    assert isinstance(out, tf.RaggedTensor)
    assert out.to_list() == [[b"c++", b"and", b".net"], []]
    with pytest.raises(ValueError, match=re.escape(
            "tokenize expects a string tensor of shape [batch], got shape (1, 1)")):
        tokenize(tf.constant([["a"]]))


# --- preprocessing_fn -----------------------------------------------------------------------------

def test_vocab_params_defaults_and_validation():
    assert preprocessing.vocab_params(None) == (5, None)
    assert preprocessing.vocab_params({"other": 1}) == (5, None)
    assert preprocessing.vocab_params({"vocab_min_count": 2, "vocab_max_size": 1000}) == (2, 1000)
    assert preprocessing.vocab_params({"vocab_min_count": 2.0, "vocab_max_size": None}) == (2, None)
    for bad, message in (
            ({"vocab_min_count": 0}, "custom_config['vocab_min_count'] must be a positive integer, got 0"),
            ({"vocab_min_count": "5"}, "custom_config['vocab_min_count'] must be a positive integer, got '5'"),
            ({"vocab_max_size": 0}, "custom_config['vocab_max_size'] must be a positive integer, got 0"),
            ({"vocab_max_size": True}, "custom_config['vocab_max_size'] must be a positive integer, got True"),
            ({"vocab_min_cnt": 2}, "unknown vocabulary setting(s) in custom_config: ['vocab_min_cnt']")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            preprocessing.vocab_params(bad)


@pytest.mark.parametrize("raw", [
    tf.constant(["a b", "c"]),
    tf.constant([["a b"], ["c"]]),
    tf.sparse.from_dense(tf.constant([["a", "b"], ["c", ""]])),
    tf.ragged.constant([["a b"], ["c"]]),
], ids=["dense", "dense_batch_1", "sparse", "ragged"])
def test_join_text_accepts_every_text_layout(raw):
    assert [d.split() for d in contract.join_text(raw).numpy().tolist()] == [[b"a", b"b"], [b"c"]]


def test_join_text_sparse_example_without_value_is_empty():
    sparse = tf.SparseTensor(indices=[[1, 0]], values=["x"], dense_shape=[3, 1])
    assert contract.join_text(sparse).numpy().tolist() == [b"", b"x", b""]


# Tokens and counts: developer 5, c# 3, and 3, python 2, sql 2; java, with, go, rust, .net once.
DOCS = [
    "Python developer, Python and SQL; developer (C#).",
    "SQL developer: Java and C#. Developer!",
    "C# developer with Go, Rust and .NET",
    "",
    "-- ;;",
]
FIXED_LEN_SPEC = {"text": tf.io.FixedLenFeature([], tf.string)}
VAR_LEN_SPEC = {"text": tf.io.VarLenFeature(tf.string)}


def _run_transform(tmp_path, feature_spec, custom_config):
    """Runs preprocessing_fn with tf.Transform on Beam over DOCS; returns (token_ids rows,
    transform_fn dir)."""
    transform_fn_dir = str(tmp_path / "transform_fn")
    out_prefix = str(tmp_path / "transformed")
    if isinstance(feature_spec["text"], tf.io.VarLenFeature):
        instances = [{"text": [d] if d else []} for d in DOCS]
    else:
        instances = [{"text": d} for d in DOCS]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))

    def fn(inputs):
        return preprocessing.preprocessing_fn(inputs, custom_config=custom_config)

    # FnApiRunner in-process: the default DirectRunner may try to start the Prism runner first.
    with beam.Pipeline(runner=FnApiRunner()) as p, tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        raw = p | beam.Create(instances, reshuffle=False)
        (transformed, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(transform_fn_dir)
        # Beam does not keep the input order: callers compare rows as multisets.
        _ = (transformed
             | beam.Map(lambda row: json.dumps([int(i) for i in row["token_ids"]]))
             | beam.io.WriteToText(out_prefix, shard_name_template=""))
    with open(out_prefix) as f:
        rows = [json.loads(line) for line in f]
    return rows, transform_fn_dir


def _vocab(transform_fn_dir):
    tft_output = tft.TFTransformOutput(transform_fn_dir)
    path = tft_output.vocabulary_file_by_name(preprocessing.VOCAB_NAME)
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _expected_rows(vocab):
    index = {t: i for i, t in enumerate(vocab)}
    return [[index.get(t, preprocessing.OOV_ID) for t in row] for row in _tokens(DOCS)]


@pytest.fixture(scope="module")
def min_count_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("min_count")
    return _run_transform(tmp_path, FIXED_LEN_SPEC, {"vocab_min_count": 2})


@pytest.mark.slow
def test_vocabulary_honours_min_count(min_count_run):
    rows, transform_fn_dir = min_count_run
    counts = collections.Counter(t for row in _tokens(DOCS) for t in row)
    vocab = _vocab(transform_fn_dir)
    assert set(vocab) == {"developer", "c#", "and", "python", "sql"}
    assert [counts[t] for t in vocab] == sorted((counts[t] for t in vocab), reverse=True)
    assert vocab[0] == "developer"

    assert sorted(rows) == sorted(_expected_rows(vocab))
    ids = {t: i for i, t in enumerate(vocab)}
    assert [ids["c#"], ids["developer"], -1, -1, -1, ids["and"], -1] in rows  # third document
    assert rows.count([]) == 2  # documents without tokens
    assert tft.TFTransformOutput(transform_fn_dir).transformed_feature_spec() == {
        "token_ids": tf.io.VarLenFeature(tf.int64), "term_ids": tf.io.VarLenFeature(tf.int64)}
    # The `terms` vocabulary keeps every token: the lexical scores need the rare ones.
    with open(tft.TFTransformOutput(transform_fn_dir).vocabulary_file_by_name("terms"), encoding="utf-8") as f:
        assert set(f.read().split()) == set(counts)


@pytest.mark.slow
def test_vocabulary_honours_max_size_with_varlen_text(tmp_path):
    rows, transform_fn_dir = _run_transform(tmp_path, VAR_LEN_SPEC,
                                            {"vocab_min_count": 2, "vocab_max_size": 3})
    vocab = _vocab(transform_fn_dir)
    assert vocab[0] == "developer" and set(vocab) == {"developer", "c#", "and"}
    assert sorted(rows) == sorted(_expected_rows(vocab))
    assert tft.TFTransformOutput(transform_fn_dir).vocabulary_size_by_name("vocab") == 3


@pytest.mark.slow
def test_transform_graph_serves_raw_text(min_count_run, tmp_path):
    """The serving model's path: raw text through transform_features_layer in a tf.function,
    saved and reloaded as a SavedModel, gives the ids of the Beam output."""
    rows, transform_fn_dir = min_count_run
    tft_output = tft.TFTransformOutput(transform_fn_dir)

    class Serve(tf.Module):
        def __init__(self):
            super().__init__()
            self.transform_layer = tft_output.transform_features_layer()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            token_ids = self.transform_layer({"text": text})["token_ids"]
            return tf.RaggedTensor.from_sparse(token_ids).to_tensor(default_value=-2)

    serve = Serve()
    expected = _expected_rows(_vocab(transform_fn_dir))
    assert sorted(rows) == sorted(expected)

    def as_rows(padded):
        return [[int(i) for i in row if i != -2] for row in padded.numpy()]

    assert as_rows(serve(tf.constant(DOCS))) == expected
    saved = str(tmp_path / "serving")
    tf.saved_model.save(serve, saved)
    del serve
    reloaded = tf.saved_model.load(saved)
    assert as_rows(reloaded(tf.constant(DOCS))) == expected
    assert as_rows(reloaded(tf.constant(["Rust developer knows SQL."]))) == [
        [-1, expected[0][1], -1, expected[1][0]]]


# --- the TFX Transform component ------------------------------------------------------------------

SCHEMA_PBTXT = """
feature {
  name: "text"
  type: BYTES
  presence { min_fraction: 1.0 min_count: 1 }
  shape { dim { size: 1 } }
}
"""


@pytest.mark.slow
def test_tfx_transform_component(tmp_path):
    """CsvExampleGen -> Transform (preprocessing_fn by name, custom_config) under LocalDagRunner:
    the component binds custom_config, writes the `vocab` vocabulary and int64 `token_ids`."""
    from tfx import v1 as tfx

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    with open(csv_dir / "texts.csv", "w", encoding="utf-8") as f:
        f.write("text\n")
        for k in range(30):
            # "python" 3 times: in the vocabulary with min count 2, not with the default 5.
            extra = (" python" if k < 3 else "") + (" rare" if k == 0 else "")
            f.write(f"developer {k} knows C# and .NET;{extra}\n")
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "schema.pbtxt").write_text(SCHEMA_PBTXT)

    one_split = tfx.proto.Output(split_config=tfx.proto.SplitConfig(
        splits=[tfx.proto.SplitConfig.Split(name="train", hash_buckets=1)]))
    example_gen = tfx.components.CsvExampleGen(input_base=str(csv_dir), output_config=one_split)
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(tmp_path / "schema" / "schema.pbtxt"))
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn="transform.preprocessing.preprocessing_fn",
        custom_config={"vocab_min_count": 2},
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train"]),
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="transform-test",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen, schema_gen, transform],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")),
        beam_pipeline_args=list(IN_PROCESS),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    graph_dirs = list((tmp_path / "root" / "Transform" / "transform_graph").iterdir())
    assert len(graph_dirs) == 1
    vocab = _vocab(str(graph_dirs[0]))
    assert set(vocab) == {"developer", "knows", "c#", "and", ".net", "python"}

    (examples_dir,) = (tmp_path / "root" / "Transform" / "transformed_examples").iterdir()
    assert sorted(p.name for p in examples_dir.iterdir()) == ["Split-train"]
    example_files = list((examples_dir / "Split-train").iterdir())
    ids = {t: i for i, t in enumerate(vocab)}
    rows = []
    for record in tf.data.TFRecordDataset([str(p) for p in example_files], compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        assert set(example.features.feature) == {"token_ids", "term_ids"}
        rows.append(list(example.features.feature["token_ids"].int64_list.value))
    common = [ids["developer"], -1, ids["knows"], ids["c#"], ids["and"], ids[".net"]]
    assert sorted(rows) == sorted([common] * 27 + [common + [ids["python"]]] * 2
                                  + [common + [ids["python"], -1]])
