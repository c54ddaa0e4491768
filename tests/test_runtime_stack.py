"""The runtime's TFX stack imports and ML Metadata works on SQLite."""

import importlib
import os

import pytest

from ml_metadata.proto import metadata_store_pb2

from metadata import mlmd


@pytest.mark.parametrize(
    "module, version_prefix",
    [
        ("tfx", "1.21."),
        ("tensorflow", "2.21."),
        ("tensorflow_transform", "1.21."),
        ("tensorflow_data_validation", "1.21."),
        ("tensorflow_model_analysis", "0.52."),
        ("ml_metadata", "1.21."),
        ("apache_beam", "2."),
    ],
)
def test_stack_imports(module, version_prefix):
    mod = importlib.import_module(module)
    assert mod.__version__.startswith(version_prefix), (module, mod.__version__)


def test_mlmd_sqlite_store_roundtrip(tmp_path):
    store = mlmd.sqlite_store(str(tmp_path / "m.sqlite"))
    artifact_type = metadata_store_pb2.ArtifactType(name="Probe")
    artifact_type.properties["size"] = metadata_store_pb2.INT
    type_id = store.put_artifact_type(artifact_type)
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri="/tmp/x")
    artifact.properties["size"].int_value = 7
    [artifact_id] = store.put_artifacts([artifact])

    reopened = mlmd.sqlite_store(str(tmp_path / "m.sqlite"))
    [got] = reopened.get_artifacts_by_id([artifact_id])
    assert got.uri == "/tmp/x"
    assert got.properties["size"].int_value == 7
    assert [a.id for a in reopened.get_artifacts_by_type("Probe")] == [artifact_id]


def test_tensorflow_is_the_cpu_build_and_imports_silently():
    """The runtime installs tensorflow-cpu: importing TensorFlow and running an op probes no GPU driver (the
    CUDA build logs `Could not find cuda drivers` and `failed call to cuInit` here)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.constant(1) + 1; print(tf.test.is_built_with_cuda())"],
        capture_output=True, text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                          if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"
    assert "cuda" not in result.stderr.lower(), result.stderr
