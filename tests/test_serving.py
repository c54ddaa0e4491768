"""The model server against TF Serving's REST and gRPC APIs: a real `cvrank serve` process on 127.0.0.1,
real HTTP (urllib) and the official `tensorflow_serving.apis` gRPC stubs, over real serving SavedModels.

The serving models are built over a transform graph that tf.Transform analyses on Beam
(`serving_support.build_transform`, in the module-scoped `models` fixture), so every test that uses
`models` or `server` is slow."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from config import PROJECT_ROOT
from evaluation import outputs
from serving import rest_json
from serving.base_path import versions_on_disk
from tests.serving_support import (ServerProcess, assert_standard_ops, build_transform, copy_version,
                                   save_version, tiny_cvs, wait_for)

V1, V2 = 100, 200
NEW_CV = ("cv-new-001", "Underwater basket weaving instructor; scuba certified; taught marine biology fieldwork")
QUERY = "Registered nurse: care for patients, administer medication."


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A Transform graph and two versions (V2 has one more CV) saved outside the base path."""
    root = tmp_path_factory.mktemp("models")
    transform = build_transform(str(root / "transform"))
    v1 = save_version(transform, str(root / "built"), V1)
    v2 = save_version(transform, str(root / "built"), V2, extra_cvs=[NEW_CV])
    return {"transform": transform, V1: v1, V2: v2, "root": root}


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("base")
    shutil.copytree(models[V1], base / str(V1))
    proc = ServerProcess(str(base), str(base.parent / "server.log"), "--max-body-bytes", "200000")
    proc.base = base
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def predict(server, body, path="/v1/models/cvrank:predict"):
    status, text = server.post(path, body)
    return status, json.loads(text)


# -- status and metadata ---------------------------------------------------------------------------
@pytest.mark.slow
def test_model_status_is_tf_serving_json(server):
    status, text = server.get("/v1/models/cvrank")
    assert status == 200
    assert json.loads(text) == {"model_version_status": [
        {"version": str(V1), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    status, text = server.get(f"/v1/models/cvrank/versions/{V1}")
    assert status == 200 and json.loads(text)["model_version_status"][0]["version"] == str(V1)


@pytest.mark.slow
def test_model_metadata_lists_every_signature(server):
    status, text = server.get("/v1/models/cvrank/metadata")
    assert status == 200
    doc = json.loads(text)
    assert doc["model_spec"] == {"name": "cvrank", "signature_name": "", "version": str(V1)}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    # As TF Serving lists them: the SavedModel's signatures and its init op.
    assert set(sigs) == {"serving_default", "embed", "evaluate", "relevance_labels", "__saved_model_init_op"}
    text_input = sigs["serving_default"]["inputs"]["text"]
    assert text_input["dtype"] == "DT_STRING"
    assert text_input["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(sigs["serving_default"]["outputs"]) == {"cv_ids", "scores", "snippets"}
    status, _ = server.get(f"/v1/models/cvrank/versions/{V1}/metadata")
    assert status == 200


# -- predict ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_predict_row_format_every_input_form(server):
    status, plain = predict(server, {"instances": [QUERY]})
    assert status == 200
    [row] = plain["predictions"]
    assert set(row) == {"cv_ids", "scores", "snippets"}
    assert len(row["cv_ids"]) == len(row["scores"]) == len(row["snippets"]) == 10
    assert row["scores"] == sorted(row["scores"], reverse=True)
    ids = set(i.decode() for i in tiny_cvs()[0])
    assert set(row["cv_ids"]) <= ids
    # The same request as a named object, as base64, and with the signature named: the same answer.
    for body in ({"instances": [{"text": QUERY}]},
                 {"instances": [{"b64": base64.b64encode(QUERY.encode()).decode()}]},
                 {"signature_name": "serving_default", "instances": [QUERY]}):
        assert predict(server, body) == (200, plain), body


@pytest.mark.slow
def test_predict_columnar_format(server):
    status, doc = predict(server, {"inputs": [QUERY, "software engineer"]})
    assert status == 200 and set(doc) == {"outputs"}
    assert set(doc["outputs"]) == {"cv_ids", "scores", "snippets"}
    assert len(doc["outputs"]["cv_ids"]) == 2 and len(doc["outputs"]["cv_ids"][0]) == 10
    row = predict(server, {"instances": [QUERY]})[1]["predictions"][0]
    assert doc["outputs"]["cv_ids"][0] == row["cv_ids"]
    # A single-output signature: columnar `outputs` is the value itself, row `predictions` a list of values.
    status, embed = predict(server, {"signature_name": "embed", "inputs": {"text": [QUERY]}})
    assert status == 200 and isinstance(embed["outputs"], list) and len(embed["outputs"][0]) == 16
    status, embed_rows = predict(server, {"signature_name": "embed", "instances": [QUERY]})
    assert status == 200 and embed_rows["predictions"] == embed["outputs"]
    assert abs(np.linalg.norm(embed_rows["predictions"][0]) - 1.0) < 1e-5


@pytest.mark.slow
def test_every_signature_is_callable(server):
    example = tf.train.Example()
    example.features.feature["text"].bytes_list.value.append(QUERY.encode())
    example.features.feature["judged_cv_ids"].bytes_list.value.append(b"cv-000004")
    example.features.feature["judged_relevance"].int64_list.value.append(2)
    b64 = {"b64": base64.b64encode(example.SerializeToString()).decode()}
    n_cvs = len(tiny_cvs()[0])
    status, doc = predict(server, {"signature_name": "evaluate", "instances": [b64]})
    assert status == 200 and set(doc["predictions"][0]) == set(outputs.VARIANTS)
    assert all(len(scores) == n_cvs for scores in doc["predictions"][0].values())
    status, doc = predict(server, {"signature_name": "relevance_labels", "instances": [b64]})
    assert status == 200 and sorted(doc["predictions"][0])[-1] == 2.0 and sum(doc["predictions"][0]) == 2.0


@pytest.mark.slow
def test_specific_version(server):
    status, doc = predict(server, {"instances": [QUERY]}, f"/v1/models/cvrank/versions/{V1}:predict")
    assert status == 200 and len(doc["predictions"]) == 1
    status, doc = predict(server, {"instances": [QUERY]}, "/v1/models/cvrank/versions/7:predict")
    assert status == 404 and doc == {"error": "Servable not found for request: Specific(cvrank, 7)"}


# -- bad requests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/models/cvrank:predict", b"{not json", 400, "JSON Parse error"),
    ("/v1/models/cvrank:predict", b"", 400, "JSON Parse error: The document is empty"),
    ("/v1/models/nope:predict", b'{"instances": ["x"]}', 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/cvrank/versions/99:predict", b'{"instances": ["x"]}', 404, "Specific(cvrank, 99)"),
    ("/v1/models/cvrank:predict", b'{"signature_name": "nope", "instances": ["x"]}', 400,
     'Serving signature name: "nope" not found in signature def'),
    ("/v1/models/cvrank:predict", b'{"instances": [5]}', 400, "is not of expected type: string"),
    ("/v1/models/cvrank:predict", b'{"instances": [{"query": "x"}]}', 400, "does not have named input: query"),
    ("/v1/models/cvrank:predict", b'{"inputs": {"query": ["x"]}}', 400, "Missing named input: text"),
    ("/v1/models/cvrank:predict", b'{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances' key"),
    ("/v1/models/cvrank:predict", b'{"instances": []}', 400, "No values in 'instances' array"),
    ("/v1/models/cvrank:predict", b'{"instances": ["a"], "inputs": ["b"]}', 400, "expecting only one of"),
    ("/v1/models/cvrank:predict", b'{"instances": [{"b64": "***"}]}', 400, "Unable to base64 decode"),
    ("/v1/models/cvrank:classify", b'{"examples": []}', 400, "Expected classify signature method_name"),
    ("/v1/models/cvrank:explode", b'{}', 400, "Malformed request: POST /v1/models/cvrank:explode"),
])
@pytest.mark.slow
def test_bad_requests_get_tf_serving_errors(server, path, body, status, message):
    got_status, text = server.post(path, raw=body)
    assert got_status == status, text
    assert message in json.loads(text)["error"]
    assert server.post("/v1/models/cvrank:predict", {"instances": ["nurse"]})[0] == 200


@pytest.mark.slow
def test_unknown_model_and_version_status(server):
    status, text = server.get("/v1/models/nope")
    assert status == 404 and json.loads(text) == {"error": "Could not find any versions of model nope"}
    status, text = server.get("/v1/models/cvrank/versions/3")
    assert status == 404 and json.loads(text) == {"error": "Could not find version 3 of model cvrank"}
    status, _ = server.get("/elsewhere")
    assert status == 404


@pytest.mark.slow
def test_empty_text_large_batch_and_body_limit(server):
    status, doc = predict(server, {"instances": [""]})
    assert status == 200 and max(doc["predictions"][0]["scores"]) == 0.0
    status, doc = predict(server, {"instances": [f"nurse number {i}" for i in range(1000)]})
    assert status == 200 and len(doc["predictions"]) == 1000
    status, text = server.post("/v1/models/cvrank:predict", {"instances": ["x" * 300_000]})
    assert status == 413 and "exceeds the limit of 200000 bytes" in json.loads(text)["error"]
    assert server.post("/v1/models/cvrank:predict", {"instances": ["nurse"]})[0] == 200


@pytest.mark.slow
def test_prometheus_metrics(server):
    predict(server, {"instances": [QUERY]})
    status, text = server.get("/monitoring/prometheus/metrics")
    assert status == 200
    assert 'cvrank_serving_requests_total{api="rest",code="OK",method="predict"}' in text
    assert "cvrank_serving_request_latency_seconds_bucket" in text
    assert "cvrank_serving_batch_size_bucket" in text
    assert f'cvrank_serving_model_version{{model="cvrank"}} {float(V1)}' in text
    assert 'cvrank_serving_request_errors_total{api="rest",method="predict"}' in text


@pytest.mark.slow
def test_access_log(server):
    predict(server, {"instances": [QUERY]})
    assert '"POST /v1/models/cvrank:predict HTTP/1.1" 200' in server.log()


# -- gRPC ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_grpc_official_stubs(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "cvrank"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto([QUERY, ""]))
        response = prediction.Predict(request, timeout=30)
        ids = tf.make_ndarray(response.outputs["cv_ids"])
        assert ids.shape == (2, 10) and response.model_spec.version.value == V1
        rest = predict(server, {"instances": [QUERY]})[1]["predictions"][0]
        assert [i.decode() for i in ids[0]] == rest["cv_ids"]

        meta = prediction.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "cvrank"}, metadata_field=["signature_def"]), timeout=30)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(sigs)
        assert set(sigs.signature_def) == {"serving_default", "embed", "evaluate", "relevance_labels",
                                           "__saved_model_init_op"}
        assert meta.model_spec.version.value == V1

        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "cvrank"}), timeout=30)
        [entry] = status.model_version_status
        assert entry.version == V1 and entry.state == 30  # AVAILABLE

        request.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError) as err:
            prediction.Predict(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "Servable not found for request: Latest(nope)"


# -- the served model ------------------------------------------------------------------------------
@pytest.mark.slow
def test_served_model_uses_standard_ops_only(models, tmp_path):
    assert_standard_ops(models[V1])
    # The check does catch a Python op.
    module = tf.Module()
    module.f = tf.function(lambda x: tf.py_function(lambda v: v * 2, [x], tf.float32),
                           input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "pyfunc"), signatures=module.f.get_concrete_function())
    with pytest.raises(AssertionError, match=re.escape("{'EagerPyFunc'}")):
        assert_standard_ops(str(tmp_path / "pyfunc"))


def test_format_float_matches_tf_serving():
    cases = {0.1: "0.1", 1.0: "1.0", 3.5: "3.5", 1 / 3: "0.333333343", 9e6: "9e+06", 3e-5: "3e-05",
             999999.0: "999999.0", 555557.5: "555557.5", float("nan"): "NaN", float("inf"): "Infinity",
             float("-inf"): "-Infinity"}
    for value, text in cases.items():
        assert rest_json.format_float(float(np.float32(value))) == text, value


# -- versions: hot reload, broken versions, index refresh (these change what the server serves) ----------
@pytest.mark.slow
def test_hot_reload_under_load_then_broken_versions_are_ignored(server, models):
    failures, successes, stop = [], [0], threading.Event()

    def client():
        while not stop.is_set():
            status, text = server.post("/v1/models/cvrank:predict", {"instances": [NEW_CV[1]]})
            if status != 200:
                failures.append((status, text))
            else:
                successes[0] += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: successes[0] > 20)
        copy_version(models[V2], str(server.base), V2)   # copied file by file, like TFX's Pusher

        def serving_v2():
            newest = json.loads(server.get("/v1/models/cvrank")[1])["model_version_status"][0]
            return newest["version"] == str(V2) and newest["state"] == "AVAILABLE"

        wait_for(serving_v2, timeout=60)
        before = successes[0]
        wait_for(lambda: successes[0] > before + 20)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    statuses = {e["version"]: e["state"] for e in json.loads(server.get("/v1/models/cvrank")[1])["model_version_status"]}
    assert statuses == {str(V2): "AVAILABLE", str(V1): "END"}
    # The new version's index holds the new CV: a query with its text finds it first.
    top = predict(server, {"instances": [NEW_CV[1]]})[1]["predictions"][0]["cv_ids"][0]
    assert top == NEW_CV[0]

    # Broken versions: no saved_model.pb; truncated variables. Both stay out, V2 keeps serving.
    missing = copy_version(models[V2], str(server.base), V2 + 1)
    os.remove(os.path.join(missing, "saved_model.pb"))
    truncated = copy_version(models[V2], str(server.base), V2 + 2)
    data = [f for f in os.listdir(os.path.join(truncated, "variables")) if f.startswith("variables.data")][0]
    with open(os.path.join(truncated, "variables", data), "r+b") as f:
        f.truncate(100)

    def both_failed():
        entries = json.loads(server.get("/v1/models/cvrank")[1])["model_version_status"]
        states = {e["version"]: e for e in entries}
        return all(states.get(str(v), {}).get("state") == "END" for v in (V2 + 1, V2 + 2)) and states
    states = wait_for(both_failed, timeout=60)
    assert states[str(V2)]["state"] == "AVAILABLE"
    assert states[str(V2 + 1)]["status"] == {
        "error_code": "UNKNOWN",
        "error_message": f"FileNotFoundError: [Errno 2] No such file or directory: '{missing}/saved_model.pb'"}
    assert states[str(V2 + 2)]["status"] == {
        "error_code": "UNKNOWN", "error_message": "IndexError: Read less bytes than requested"}
    assert predict(server, {"instances": [QUERY]})[0] == 200
    assert f"version {V2 + 2} at" in server.log() and "failed to load" in server.log()
    shutil.rmtree(missing)
    shutil.rmtree(truncated)


def run_cli(*args, cwd=PROJECT_ROOT):
    env = dict(os.environ, PYTHONPATH=PROJECT_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "cvrank.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.mark.slow
def test_index_adds_cvs_and_the_server_picks_them_up(server, models, tmp_path):
    if V2 not in versions_on_disk(server.base):  # V2 (with NEW_CV) is what the update starts from
        copy_version(models[V2], str(server.base), V2)
    cvs = tmp_path / "new.csv"
    cvs.write_text("\ufeffcv_id,text\r\ncv-new-777,\"Lighthouse keeper, fog signal maintenance, Fresnel lens "
                   "polishing\"\r\n", encoding="utf-8")
    before = sorted(map(str, versions_on_disk(server.base)))
    result = run_cli("index", "--cvs", str(cvs), "--model-base-path", str(server.base),
                     "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 0, result.stderr
    after = sorted(map(str, versions_on_disk(server.base)))
    [new_version] = set(after) - set(before)
    assert "plus 1 new CVs" in result.stdout and new_version in result.stdout

    def serving_new():
        # By version: model status also lists versions that were tried and removed (END).
        entries = json.loads(server.get("/v1/models/cvrank")[1])["model_version_status"]
        return {"version": new_version, "state": "AVAILABLE"} in [
            {"version": e["version"], "state": e["state"]} for e in entries]
    wait_for(serving_new, timeout=60)
    query = "lighthouse keeper fresnel lens fog signal"
    top = predict(server, {"instances": [query]})[1]["predictions"][0]
    assert top["cv_ids"][0] == "cv-new-777"
    assert top["snippets"][0].startswith("Lighthouse keeper")
    # The CVs of the version it started from are still there.
    assert predict(server, {"instances": [NEW_CV[1]]})[1]["predictions"][0]["cv_ids"][0] == NEW_CV[0]


@pytest.mark.parametrize("content, message", [
    (b"cv_id,text\ncv-1,ok\ncv-2,\xff\xfe broken\n", "line 3: not UTF-8"),
    (b"id,body\ncv-1,text\n", "line 1: missing columns 'cv_id', 'text'; unexpected columns 'id', 'body' "
                               "(the header is 'id,body'; cvs files have cv_id,text)"),
    (b"cv_id,text\ncv-1,one,two\n", "line 2: 3 fields"),
    (b"cv_id,text\ncv-1,\n", "line 2: field 'text' is empty"),
    (b"cv_id,text\n", "bad.csv: header only, no rows"),
    (b"", "the file is empty"),
    (b"cv_id,text\ncv-1,a\ncv-1,b\n", "line 3: cv_id cv-1 is repeated (first at"),
])
@pytest.mark.slow
def test_index_rejects_bad_cv_files_and_pushes_nothing(models, tmp_path, content, message):
    base = tmp_path / "base"
    shutil.copytree(models[V1], base / str(V1))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    result = run_cli("index", "--cvs", str(bad), "--model-base-path", str(base), "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 2
    assert str(bad) in result.stderr and message in result.stderr, result.stderr
    assert "nothing was pushed" in result.stderr
    assert sorted(os.listdir(base)) == [str(V1)]
