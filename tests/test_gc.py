"""Garbage collection on a real ML Metadata store and real directories: what the last runs and protected
models use stays, everything else under the pipeline root goes and is marked DELETED; a dry run changes
nothing; a second collection removes nothing."""

from __future__ import annotations

import os
import time

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from metadata import mlmd
from serving.base_path import versions_on_disk
from orchestration.gc import DEFAULT_KEEP_RUNS, collect_garbage
from tests.pipeline_store_support import CACHED, FAILED, RUNNING, PipelineStore, tree

LIVE, DELETED = pb.Artifact.LIVE, pb.Artifact.DELETED


@pytest.fixture
def ps(tmp_path):
    store = mlmd.sqlite_store(str(tmp_path / "cvrank.sqlite"))
    return PipelineStore(store, str(tmp_path / "ws" / "pipelines" / "cvrank"))


@pytest.fixture
def history(ps, tmp_path):
    """Five runs. run-1 trains m1 on examples-1 and pushes it (serving/1); run-2 trains m2 from cache, its
    push fails; run-3 trains m3; run-4 has new examples-4, trains m4 and pushes it (serving/4); run-5 is
    cached and its resolver resolves m3 as the baseline. Plus leftovers under the root."""
    serving = tmp_path / "ws" / "serving" / "cvrank"
    e = {}
    e["gen-1"] = ps.execute("run-1", "ExampleGen", outputs={"examples": "examples-1"})
    e["train-1"] = ps.execute("run-1", "Trainer", inputs={"examples": "examples-1"}, outputs={"model": "m1"})
    e["push-1"] = ps.execute("run-1", "Pusher", inputs={"model": "m1"}, outputs={"pushed_model": "pushed-1"},
                             pushed_destination=str(serving / "1"))
    e["gen-2"] = ps.execute("run-2", "ExampleGen", CACHED, outputs={"examples": "examples-1"})
    e["train-2"] = ps.execute("run-2", "Trainer", inputs={"examples": "examples-1"}, outputs={"model": "m2"})
    e["push-2"] = ps.execute("run-2", "Pusher", FAILED, inputs={"model": "m2"}, outputs={"pushed_model": "x"})
    e["gen-3"] = ps.execute("run-3", "ExampleGen", CACHED, outputs={"examples": "examples-1"})
    e["train-3"] = ps.execute("run-3", "Trainer", inputs={"examples": "examples-1"}, outputs={"model": "m3"})
    e["gen-4"] = ps.execute("run-4", "ExampleGen", outputs={"examples": "examples-4"})
    e["train-4"] = ps.execute("run-4", "Trainer", inputs={"examples": "examples-4"}, outputs={"model": "m4"})
    e["push-4"] = ps.execute("run-4", "Pusher", inputs={"model": "m4"}, outputs={"pushed_model": "pushed-4"},
                             pushed_destination=str(serving / "4"))
    e["gen-5"] = ps.execute("run-5", "ExampleGen", CACHED, outputs={"examples": "examples-4"})
    e["train-5"] = ps.execute("run-5", "Trainer", CACHED, inputs={"examples": "examples-4"}, outputs={"model": "m4"})
    e["resolve-5"] = ps.execute("run-5", "resolver", internal_outputs={"model": "m3"})
    for version in ("1", "4"):
        os.makedirs(serving / version)
        (serving / version / "saved_model.pb").write_bytes(b"s" * 50)
    system = os.path.join(ps.root, "ExampleGen", ".system")
    leftovers = {
        # A killed attempt's output, recorded nowhere.
        "orphan": os.path.join(ps.root, "Trainer", "model", "999"),
        "stateful": os.path.join(ps.root, "Trainer", ".system", "stateful_working_dir", "0d5e-uuid"),
        "old_driver": os.path.join(system, "driver_execution", "1000"),
        "new_driver": os.path.join(system, "driver_execution", str(int(time.time() * 1e6) + 10_000_000)),
    }
    for path in leftovers.values():
        os.makedirs(path)
        with open(os.path.join(path, "f"), "wb") as f:
            f.write(b"l" * 7)
    return e, leftovers, serving


def _record(ps, node, execution_id):
    return os.path.join(ps.root, node, ".system", "executor_execution", str(execution_id))


def _snapshot(ps, tmp_path):
    return tree(str(tmp_path)), ps.states(), {e.id: e.last_known_state for e in ps.store.get_executions()}


def test_gc_removes_what_neither_the_last_runs_nor_protected_models_use(ps, history, tmp_path):
    e, leftovers, serving = history
    outside_before = tree(str(serving))
    report = collect_garbage(ps.store, "cvrank", ps.root, keep_runs=2, protected_uris=[str(serving / "1")])

    # m2 alone is unused: m1 and examples-1 are upstream of the protected push to serving/1, m3 is run-5's
    # resolved baseline, examples-4, m4 and pushed-4 belong to runs 4 and 5.
    a = ps.artifacts
    assert report.artifact_ids == [a["m2"]]
    states = ps.states()
    assert states[a["m2"]][0] == DELETED and not os.path.exists(states[a["m2"]][1])
    for name in ("examples-1", "m1", "pushed-1", "m3", "examples-4", "m4", "pushed-4"):
        assert states[a[name]][0] == LIVE and os.path.isdir(states[a[name]][1]), name
    # Run records go with the executions of runs 1-3 that made nothing kept.
    expected = {ps.artifact("m2").uri, leftovers["orphan"], leftovers["stateful"], leftovers["old_driver"],
                _record(ps, "Trainer", e["train-2"]), _record(ps, "Pusher", e["push-2"])}
    assert set(report.paths) == expected
    assert not any(os.path.lexists(p) for p in expected)
    # Kept: the run records of runs 4 and 5 and of the executions that made kept artifacts, the recent
    # driver output; nothing outside the root changed.
    for node, key in (("ExampleGen", "gen-1"), ("Trainer", "train-1"), ("Pusher", "push-1"), ("Trainer", "train-3"),
                      ("ExampleGen", "gen-4"), ("Trainer", "train-4"), ("Pusher", "push-4"), ("resolver", "resolve-5")):
        assert os.path.isdir(_record(ps, node, e[key])), key
    assert os.path.isdir(leftovers["new_driver"])
    assert tree(str(serving)) == outside_before
    assert report.protected_artifacts == 3  # pushed-1, m1, examples-1
    assert report.kept_run_ids == ("run-4", "run-5")
    assert report.total_bytes == 1000 + 3 * 7 + 2 * 10
    text = report.format()
    assert text.splitlines()[0] == (f"garbage collection of {ps.root}: keeping the last 2 runs (run-4 to run-5) "
                                    "and 3 artifacts of protected models and their lineage")
    assert f"  1000 B  Trainer/model/{e['train-2']}  (artifact {a['m2']}: not used by the last 2 runs or a protected model)" in text
    assert text.splitlines()[-1] == "removed 6 paths (1.0 KiB); marked 1 artifact DELETED in ML Metadata"

    # A second collection has nothing to do.
    before = _snapshot(ps, tmp_path)
    again = collect_garbage(ps.store, "cvrank", ps.root, keep_runs=2, protected_uris=[str(serving / "1")])
    assert again.entries == [] and again.format().endswith("\nnothing to remove")
    assert _snapshot(ps, tmp_path) == before


def test_gc_without_protection_removes_the_older_pushed_lineage_too(ps, history):
    e, _, serving = history
    report = collect_garbage(ps.store, "cvrank", ps.root, keep_runs=2)
    a = ps.artifacts
    assert report.artifact_ids == sorted(a[n] for n in ("examples-1", "m1", "pushed-1", "m2"))
    assert report.protected_artifacts == 0
    assert os.path.isfile(serving / "1" / "saved_model.pb")  # the pushed version itself is outside the root
    assert ps.states()[a["m3"]][0] == LIVE  # run-5's resolver still names it


def test_gc_dry_run_lists_the_same_and_changes_nothing(ps, history, tmp_path):
    _, _, serving = history
    before = _snapshot(ps, tmp_path)
    dry = collect_garbage(ps.store, "cvrank", ps.root, keep_runs=2, protected_uris=[str(serving / "1")], dry_run=True)
    assert _snapshot(ps, tmp_path) == before
    assert dry.format().splitlines()[-1] == ("would remove 6 paths (1.0 KiB) and mark 1 artifact DELETED in ML "
                                             "Metadata (dry run: nothing was changed)")
    real = collect_garbage(ps.store, "cvrank", ps.root, keep_runs=2, protected_uris=[str(serving / "1")])
    assert [(x.path, x.artifact_id, x.bytes) for x in dry.entries] == [(x.path, x.artifact_id, x.bytes) for x in real.entries]


def test_gc_keeps_everything_the_last_runs_use_by_default(ps, history, tmp_path):
    assert DEFAULT_KEEP_RUNS >= 5
    report = collect_garbage(ps.store, "cvrank", ps.root)
    assert report.artifact_ids == []
    # Leftovers only: the driver output from before the first run goes, the recent one stays.
    assert set(report.paths) == {history[1][k] for k in ("orphan", "stateful", "old_driver")}


def test_gc_treats_running_executions_as_in_use_and_finishes_an_earlier_deletion(ps, history):
    e, leftovers, _ = history
    running = ps.execute("run-6", "Trainer", RUNNING, inputs={"examples": "examples-4"}, outputs={"model": "m6"})
    # An artifact marked DELETED whose files are still there (a collection that could not remove them).
    mlmd.set_artifacts_state(ps.store, [ps.artifacts["m3"]], DELETED)
    report = collect_garbage(ps.store, "cvrank", ps.root, keep_runs=1)
    assert os.path.isdir(os.path.join(ps.root, "Trainer", "model", str(running)))
    assert os.path.isdir(_record(ps, "Trainer", running))
    assert os.path.isdir(leftovers["stateful"])  # the running Trainer may be using it
    m3 = ps.artifact("m3").uri
    assert m3 in report.paths and not os.path.exists(m3)
    assert [x for x in report.entries if x.path == m3][0].artifact_id is None  # already DELETED


def test_gc_refuses_bad_arguments_and_a_store_that_never_saw_the_pipeline(ps, history, tmp_path):
    with pytest.raises(ValueError, match="keep_runs must be at least 1, not 0"):
        collect_garbage(ps.store, "cvrank", ps.root, keep_runs=0)
    empty = mlmd.sqlite_store(str(tmp_path / "empty.sqlite"))
    with pytest.raises(ValueError, match="ML Metadata has no pipeline 'cvrank'"):
        collect_garbage(empty, "cvrank", ps.root)
    assert collect_garbage(empty, "cvrank", str(tmp_path / "nowhere")).entries == []


@pytest.mark.slow
def test_a_run_after_gc_of_a_real_pipeline_succeeds_and_re_executes_what_went(tmp_path):
    """The tiny pipeline twice (the second with another epoch count), gc keeping the last run and the
    served versions, then the first settings again: the trainer, whose earlier outputs went, executes
    again and the run completes."""
    from orchestration import runner
    from pipeline.pipeline import create_pipeline
    from tests.test_pipeline_e2e import tiny_config

    def run(config):
        run_id = runner.run_pipeline(create_pipeline(config))
        return mlmd.run_node_states(mlmd.sqlite_store(config.metadata_path), config.pipeline_name, run_id)

    first = tiny_config(tmp_path / "ws")
    run(first)
    second = run(tiny_config(tmp_path / "ws", epochs=3))
    assert second["GloveTrainer"] == "COMPLETE" and second["CooccurrenceGen"] == "CACHED", second

    served = sorted(versions_on_disk(first.serving_dir).values())
    assert served
    served_before = tree(first.serving_dir)
    store = mlmd.sqlite_store(first.metadata_path)
    report = collect_garbage(store, first.pipeline_name, first.pipeline_root, keep_runs=1, protected_uris=served)
    assert report.artifact_ids and not report.not_removed, report.format()
    for artifact in store.get_artifacts_by_id(report.artifact_ids):
        assert artifact.state == DELETED and not os.path.exists(artifact.uri)
    assert tree(first.serving_dir) == served_before
    assert collect_garbage(store, first.pipeline_name, first.pipeline_root, keep_runs=1,
                           protected_uris=served).entries == []

    third = run(first)
    assert set(third.values()) <= {"COMPLETE", "CACHED"}, third
    assert third["GloveTrainer"] == "COMPLETE", third  # its first-run outputs are partly DELETED: no cache hit
    assert third["Transform"] == third["CooccurrenceGen"] == "CACHED", third
