"""Recovery of killed runs on a real ML Metadata store and real directories: executions left RUNNING are
marked CANCELED with a note and their directories removed; nothing else changes."""

from __future__ import annotations

import os

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from metadata import mlmd
from orchestration.recovery import NOTE_PROPERTY, recover_orphaned_executions
from tests.pipeline_store_support import CACHED, FAILED, RUNNING, PipelineStore, tree


@pytest.fixture
def ps(tmp_path):
    store = mlmd.sqlite_store(str(tmp_path / "cvrank.sqlite"))
    return PipelineStore(store, str(tmp_path / "pipelines" / "cvrank"))


@pytest.fixture
def killed(ps):
    """run-1 complete; run-2 cached then Transform FAILED; run-3 cached then Transform killed while running."""
    e = {}
    e["gen-1"] = ps.execute("run-1", "ExampleGen", outputs={"examples": "examples"})
    e["tf-1"] = ps.execute("run-1", "Transform", inputs={"examples": "examples"},
                           outputs={"transform_graph": "graph-1", "transformed_examples": "tx-1"})
    e["gen-2"] = ps.execute("run-2", "ExampleGen", CACHED, outputs={"examples": "examples"})
    e["tf-2"] = ps.execute("run-2", "Transform", FAILED, inputs={"examples": "examples"},
                           outputs={"transform_graph": "graph-2", "transformed_examples": "tx-2"})
    e["gen-3"] = ps.execute("run-3", "ExampleGen", CACHED, outputs={"examples": "examples"})
    e["tf-3"] = ps.execute("run-3", "Transform", RUNNING, inputs={"examples": "examples"},
                           outputs={"transform_graph": "graph-3", "transformed_examples": "tx-3"}, size=5000)
    # The killed executor was writing a temporary file too.
    temp = os.path.join(ps.root, "Transform", ".system", "executor_execution", str(e["tf-3"]), ".temp")
    os.makedirs(temp)
    with open(os.path.join(temp, "part"), "wb") as f:
        f.write(b"t" * 100)
    return e


def _states(store):
    return {e.id: e.last_known_state for e in store.get_executions()}


def test_recovery_cancels_the_orphan_and_removes_only_its_directories(ps, killed):
    before_states, before_files, before_artifacts = _states(ps.store), tree(ps.root), ps.states()
    [recovered] = recover_orphaned_executions(ps.store, "cvrank", ps.root, "run run-4")

    orphan = killed["tf-3"]
    assert (recovered.execution_id, recovered.node_id, recovered.run_id, recovered.previous_state) == (
        orphan, "Transform", "run-3", "RUNNING")
    expected = [os.path.join(ps.root, "Transform", key, str(orphan)) for key in ("transform_graph", "transformed_examples")]
    expected.append(os.path.join(ps.root, "Transform", ".system", "executor_execution", str(orphan)))
    assert sorted(recovered.removed) == sorted(expected)
    assert recovered.removed_bytes == 2 * 5000 + 10 + 100
    assert recovered.not_removed == ()
    assert recovered.describe() == (
        f"Transform execution {orphan} of run run-3 was left RUNNING by a process that ended without a result: "
        "marked CANCELED, removed 3 directories (9.9 KiB)")

    [execution] = ps.store.get_executions_by_id([orphan])
    assert execution.last_known_state == pb.Execution.CANCELED
    note = execution.custom_properties[NOTE_PROPERTY].string_value
    assert note.startswith("orphaned: its process ended without recording a result; found by run run-4 at 20"), note
    assert mlmd.run_node_states(ps.store, "cvrank", "run-3") == {"ExampleGen": "CACHED", "Transform": "CANCELED"}

    # Every other execution, every artifact and every other file are as they were.
    assert _states(ps.store) == {**before_states, orphan: pb.Execution.CANCELED}
    assert ps.states() == before_artifacts
    removed_prefixes = tuple(os.path.relpath(p, ps.root) + os.sep for p in expected)
    assert tree(ps.root) == {k: v for k, v in before_files.items() if not k.startswith(removed_prefixes)}
    for name in ("examples", "graph-1", "tx-1"):
        assert os.path.isdir(ps.artifact(name).uri)
    assert os.path.isdir(os.path.join(ps.root, "Transform", ".system", "executor_execution", str(killed["tf-2"])))

    # Nothing is left to recover.
    assert recover_orphaned_executions(ps.store, "cvrank", ps.root, "run run-5") == []


def test_recovery_of_a_store_without_orphans_changes_nothing(ps):
    ps.execute("run-1", "ExampleGen", outputs={"examples": "examples"})
    before = (_states(ps.store), tree(ps.root))
    assert recover_orphaned_executions(ps.store, "cvrank", ps.root, "run run-2") == []
    assert (_states(ps.store), tree(ps.root)) == before
    empty = mlmd.sqlite_store(os.path.join(os.path.dirname(ps.root), "empty.sqlite"))
    assert recover_orphaned_executions(empty, "cvrank", ps.root, "run run-2") == []


def test_recovery_keeps_what_a_live_artifact_points_into_and_what_lies_outside_the_root(ps, tmp_path):
    orphan = ps.execute("run-1", "Trainer", RUNNING, outputs={"model": "m", "model_run": "r"})
    # A LIVE artifact inside the orphan's model directory (never made by TFX, but never to be lost).
    model_dir = os.path.join(ps.root, "Trainer", "model", str(orphan))
    ps.store.put_artifacts([pb.Artifact(type_id=ps.artifact_type, uri=os.path.join(model_dir, "data"),
                                        state=pb.Artifact.LIVE)])
    # The run record is a link to a directory outside the pipeline root.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    record = os.path.join(ps.root, "Trainer", ".system", "executor_execution", str(orphan))
    os.rename(record, record + ".moved")
    os.symlink(str(outside), record)

    [recovered] = recover_orphaned_executions(ps.store, "cvrank", ps.root, "run run-2")
    assert recovered.removed == (os.path.join(ps.root, "Trainer", "model_run", str(orphan)),)
    assert os.path.isfile(os.path.join(model_dir, "data"))
    assert (outside / "keep").read_text() == "keep" and os.path.islink(record)


def test_recovery_leaves_other_pipelines_and_executions_outside_a_node(ps, tmp_path):
    other = PipelineStore(ps.store, str(tmp_path / "pipelines" / "other"), name="other")
    theirs = other.execute("run-x", "Trainer", RUNNING, outputs={"model": "m"})
    # A rollback interrupted by a kill stays RUNNING in the pipeline context only (no node context).
    index_update = mlmd.put_execution_with_lineage(ps.store, "cvrank.ServingRollback", "cvrank", [], [])
    ours = ps.execute("run-1", "Trainer", RUNNING, outputs={"model": "m2"})
    assert [r.execution_id for r in recover_orphaned_executions(ps.store, "cvrank", ps.root, "run run-2")] == [ours]
    states = _states(ps.store)
    assert states[theirs] == states[index_update] == pb.Execution.RUNNING
    assert os.path.isdir(os.path.join(other.root, "Trainer", "model", str(theirs)))
