"""Helpers of the serving tests: real serving models built from the tiny dataset (a real tf.Transform
graph, seeded word vectors), and a real `cvrank serve` process on free local ports."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from config import PROJECT_ROOT
from serving.model import build_model, save_model
from transform import preprocessing

TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")
DIM = 16


def tiny_cvs(extra=()):
    """(cv_ids, texts) of the tiny dataset's CVs plus `extra` (cv_id, text) pairs, as bytes."""
    with open(os.path.join(TINY, "cvs", "cvs.csv"), encoding="utf-8") as f:
        rows = [(r["cv_id"], r["text"]) for r in csv.DictReader(f)]
    rows += list(extra)
    return (np.array([r[0].encode() for r in rows], dtype=object), [r[1].encode() for r in rows])


def build_transform(out_dir: str) -> str:
    """Analyses the tiny CVs and corpus with the pipeline's preprocessing_fn (tf.Transform on Beam, a few
    seconds); returns the Transform output dir."""
    texts = tiny_cvs()[1]
    with open(os.path.join(TINY, "corpus", "corpus.csv"), encoding="utf-8") as f:
        texts += [r["text"].encode() for r in csv.DictReader(f)]
    spec = {preprocessing.TEXT_KEY: tf.io.VarLenFeature(tf.string)}  # what the pipeline's schema gives
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))

    def fn(inputs):
        return preprocessing.preprocessing_fn(inputs, custom_config={"vocab_min_count": 2})

    with beam.Pipeline(runner=FnApiRunner()) as p, tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        raw = p | beam.Create([{preprocessing.TEXT_KEY: [t]} for t in texts], reshuffle=False)
        _, transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    # The raw schema, as TFX's Transform writes it beside the graph.
    metadata_io.write_metadata(metadata, os.path.join(out_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return out_dir


def save_version(transform_dir: str, base_path: str, version: int, extra_cvs=(), seed: int = 0,
                 top_k: int = 10) -> str:
    """Builds and saves a serving model (tiny CVs plus `extra_cvs`) as `<base_path>/<version>`."""
    tft_output = tft.TFTransformOutput(transform_dir)
    vocab = tft_output.vocabulary_size_by_name(preprocessing.VOCAB_NAME)
    vectors = np.random.default_rng(seed).normal(size=(vocab, DIM)).astype(np.float32)
    cv_ids, texts = tiny_cvs(extra_cvs)
    model = build_model(tft_output, vectors, cv_ids, texts, "sif", top_k)
    path = os.path.join(base_path, str(version))
    save_model(model, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`cvrank serve` in a child process on free ports of 127.0.0.1."""

    def __init__(self, base_path: str, log_path: str, *extra_args: str, poll_seconds: float = 0.2):
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        env = dict(os.environ, PYTHONPATH=PROJECT_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cvrank.cli", "serve", "--model-base-path", base_path, "--port", str(self.port),
             "--grpc-port", str(self.grpc_port), "--poll-seconds", str(poll_seconds), *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {self.log()}")
            try:
                status, _ = self.get("/v1/models/cvrank")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the server did not come up: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request(self, method: str, path: str, body=None, raw: bytes = None, timeout: float = 60.0):
        """(HTTP status, body text) of one request."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, response.read().decode("utf-8")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8")

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, body=None, raw: bytes = None):
        return self.request("POST", path, body, raw)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    """Polls `predicate()` until it returns a true value (returned) or `timeout` passes (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def copy_version(source: str, base_path: str, version: int) -> str:
    """Copies a version directory file by file (not atomically, as TFX's Pusher does)."""
    target = os.path.join(base_path, str(version))
    shutil.copytree(source, target)
    return target


_NON_STANDARD_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def saved_model_ops(export_dir):
    """Every op type in the SavedModel's graph and function library."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    ops = set()
    for graph in saved.meta_graphs:
        ops |= {n.op for n in graph.graph_def.node}
        for fn in graph.graph_def.library.function:
            ops |= {n.op for n in fn.node_def}
    return ops


def assert_standard_ops(export_dir):
    from tensorflow.python.framework import op_def_registry

    ops = saved_model_ops(export_dir)
    assert ops and not ops & _NON_STANDARD_OPS, ops & _NON_STANDARD_OPS
    unregistered = {op for op in ops if op_def_registry.get(op) is None}
    assert not unregistered, f"ops that are not TensorFlow's own: {unregistered}"
