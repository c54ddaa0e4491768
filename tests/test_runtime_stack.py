"""The runtime's TFX stack imports and ML Metadata works on SQLite."""

import importlib

import pytest

from ml_metadata.proto import metadata_store_pb2

from orchestration import mlmd


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
