"""Model base path layout and push records (serving/base_path.py, serving/pushes.py): real files, a real
ML Metadata store, a real full filesystem (a small tmpfs)."""

import errno
import os
import subprocess

import pytest

from metadata import mlmd
from serving import base_path as bp
from serving import pushes

PIPELINE = "cvrank"


def fake_model(directory, size=1000):
    """A SavedModel-shaped directory (the layout is what matters here, not the graph)."""
    os.makedirs(os.path.join(directory, "variables"), exist_ok=True)
    with open(os.path.join(directory, "saved_model.pb"), "wb") as f:
        f.write(b"m" * size)
    with open(os.path.join(directory, "variables", "variables.index"), "wb") as f:
        f.write(b"i" * 10)


def push(store, base, model_dir, state=mlmd.Execution.COMPLETE, publish=True):
    """Stages `model_dir`, records it as a Pusher would (an execution in `state`) and publishes it."""
    version, _, manifest = bp.stage_version(base, lambda d: bp.copy_saved_model(model_dir, d))
    destination = os.path.join(base, str(version))
    artifact = mlmd.new_artifact(store, mlmd.PUSHED_MODEL_TYPE, destination,
                                 pushes.push_properties(version, destination, manifest, 0.5))
    mlmd.put_execution_with_lineage(store, "Pusher", PIPELINE, [], [("pushed_model", artifact)], state=state)
    if publish:
        bp.publish_version(base, version)
    return version


@pytest.fixture
def setup(tmp_path):
    model = str(tmp_path / "model")
    fake_model(model)
    base = str(tmp_path / "serving" / "cvrank")
    return mlmd.sqlite_store(str(tmp_path / "m.sqlite")), base, model


def test_staged_version_is_invisible_until_published_and_numbers_never_repeat(setup):
    store, base, model = setup
    version, staged, manifest = bp.stage_version(base, lambda d: bp.copy_saved_model(model, d))
    assert version == 1 and bp.versions_on_disk(base) == {} and bp.staged_versions(base) == {1: staged}
    assert manifest["saved_model.pb"]["bytes"] == 1000 and set(manifest) == {
        "saved_model.pb", os.path.join("variables", "variables.index")}
    bp.publish_version(base, 1)
    assert sorted(bp.versions_on_disk(base)) == [1] and bp.staged_versions(base) == {}
    assert push(store, base, model) == 2
    # A deleted version's number is not given out again; neither is a retired one's.
    subprocess.run(["rm", "-r", os.path.join(base, "2")], check=True)
    bp.retire_version(base, 1)
    assert push(store, base, model) == 3
    assert sorted(bp.versions_on_disk(base)) == [3] and sorted(bp.retired_versions(base)) == [1]


def test_failed_write_leaves_no_staged_or_published_version(setup):
    _, base, model = setup

    def fill(directory):
        bp.copy_saved_model(model, directory)
        raise OSError(errno.EIO, "write failed")

    with pytest.raises(OSError, match="write failed"):
        bp.stage_version(base, fill)
    assert bp.versions_on_disk(base) == {} and bp.staged_versions(base) == {}
    with pytest.raises(bp.BasePathError, match="has no saved_model.pb"):
        bp.stage_version(base, lambda d: None)
    assert bp.staged_versions(base) == {}


def test_full_disk_during_staging_leaves_nothing(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the runtime's mount namespace allows it)")
    try:
        model = str(tmp_path / "model")
        fake_model(model, size=200_000)  # larger than the filesystem
        base = str(mount / "cvrank")
        with pytest.raises(OSError) as raised:
            bp.stage_version(base, lambda d: bp.copy_saved_model(model, d))
        assert raised.value.errno == errno.ENOSPC
        assert bp.versions_on_disk(base) == {} and bp.staged_versions(base) == {}
        assert os.listdir(base) == [bp.CONTROL_DIR]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_check_files_names_each_difference(setup):
    store, base, model = setup
    version = push(store, base, model)
    directory = os.path.join(base, str(version))
    manifest = pushes.push_records(store, base)[version].manifest
    assert bp.check_files(directory, manifest) == []
    with open(os.path.join(directory, "variables", "variables.index"), "r+b") as f:
        f.write(b"X")  # same size, other content
    with open(os.path.join(directory, "extra.txt"), "w") as f:
        f.write("x")
    os.truncate(os.path.join(directory, "saved_model.pb"), 400)
    assert bp.check_files(directory, manifest) == [
        "saved_model.pb has 400 bytes, 1,000 at push time",
        f"{os.path.join('variables', 'variables.index')} differs from the pushed file (SHA-256 mismatch)",
        "extra.txt was not part of the push"]
    os.remove(os.path.join(directory, "saved_model.pb"))
    assert bp.check_files(directory, manifest)[0] == "saved_model.pb is missing (1,000 bytes at push time)"


def test_reconcile_publishes_recorded_pushes_and_removes_the_rest(setup):
    store, base, model = setup
    recorded = push(store, base, model, publish=False)
    failed = push(store, base, model, state=mlmd.Execution.FAILED, publish=False)
    unrecorded, _, _ = bp.stage_version(base, lambda d: bp.copy_saved_model(model, d))
    notes = pushes.reconcile(store, base)
    assert sorted(bp.versions_on_disk(base)) == [recorded] and bp.staged_versions(base) == {}
    assert len(notes) == 3 and notes[0] == f"version {recorded}: its push was recorded, so it is now published"
    assert all("partial copy was removed" in n for n in notes[1:])
    assert (failed, unrecorded) == (2, 3)
    assert pushes.reconcile(store, base) == []


def test_verify_and_served_line_report_a_broken_served_version_with_the_fix(setup):
    store, base, model = setup
    push(store, base, model)
    push(store, base, model)
    checks = pushes.verify(store, base)
    assert [(c.version, c.ok) for c in checks] == [(2, True), (1, True)]
    assert pushes.served_line(checks[:1]).startswith("served: version 2")
    os.remove(os.path.join(base, "2", "saved_model.pb"))
    checks = pushes.verify(store, base, until_intact=True)
    assert [(c.version, c.ok) for c in checks] == [(2, False), (1, True)]
    line = pushes.served_line(checks)
    assert "version 2" in line and "BROKEN: saved_model.pb is missing (1,000 bytes at push time)" in line
    assert "`bin/cvrank serving rollback 1` serves version 1" in line


def test_unrecorded_version_is_checked_by_parsing_its_saved_model(setup):
    store, base, _ = setup
    os.makedirs(os.path.join(base, "5"))
    with open(os.path.join(base, "5", "saved_model.pb"), "wb") as f:
        f.write(b"\xff\xff not a protobuf")
    [check] = pushes.verify(store, base)
    assert check.record is None and not check.ok and "saved_model.pb does not parse" in check.problems[0]


def test_rollback_and_back_moves_versions_and_records_both(setup):
    store, base, model = setup
    for _ in range(3):
        push(store, base, model)
    result = pushes.rollback(store, base, PIPELINE, 1)
    assert (result.served_before, result.served_after, result.retired, result.restored) == (3, 1, [2, 3], [])
    assert bp.served_version(base) == 1 and sorted(bp.retired_versions(base)) == [2, 3]
    rows = pushes.list_versions(store, base)
    assert [(r.version, r.state) for r in rows] == [(3, "retired"), (2, "retired"), (1, "served")]
    back = pushes.rollback(store, base, PIPELINE, 3)
    assert (back.served_before, back.served_after, back.retired, back.restored) == (1, 3, [], [3])
    assert bp.served_version(base) == 3 and sorted(bp.retired_versions(base)) == [2]
    history = pushes.rollback_history(store, PIPELINE)
    assert [(h["served_before"], h["served_after"], h["retired"], h["restored"]) for h in history] == [
        ("3", "1", "2,3", ""), ("1", "3", "", "3")]
    # The rollback's lineage: the PushedModel records it served and set aside.
    records = pushes.push_records(store, base)
    inputs = mlmd.execution_inputs(store, result.execution_id)
    assert [a.id for a in inputs["served"]] == [records[1].artifact.id]
    assert sorted(a.id for a in inputs["retired"]) == sorted([records[2].artifact.id, records[3].artifact.id])
    # A new push after a rollback is served again (the newest) and takes a fresh number.
    assert push(store, base, model) == 4 and bp.served_version(base) == 4


def test_rollback_refuses_missing_or_broken_versions_and_changes_nothing(setup):
    store, base, model = setup
    push(store, base, model)
    push(store, base, model)
    with pytest.raises(pushes.RollbackError, match=r"version 9 is not under .* \(versions: 1, 2\)"):
        pushes.rollback(store, base, PIPELINE, 9)
    os.remove(os.path.join(base, "1", "saved_model.pb"))
    with pytest.raises(pushes.RollbackError, match="version 1 is broken .*saved_model.pb is missing"):
        pushes.rollback(store, base, PIPELINE, 1)
    assert sorted(bp.versions_on_disk(base)) == [1, 2] and pushes.rollback_history(store, PIPELINE) == []


def test_push_records_take_the_newest_record_of_a_number_and_skip_unpushed_ones(setup):
    store, base, model = setup
    push(store, base, model)
    destination = os.path.join(base, "1")
    not_pushed = mlmd.new_artifact(store, mlmd.PUSHED_MODEL_TYPE, destination,
                                   {"pushed": 0, "pushed_destination": destination})
    again = mlmd.new_artifact(store, mlmd.PUSHED_MODEL_TYPE, destination,
                              pushes.push_properties(1, destination, {}))
    elsewhere = mlmd.new_artifact(store, mlmd.PUSHED_MODEL_TYPE, "/elsewhere/1",
                                  pushes.push_properties(1, "/elsewhere/1", {}))
    mlmd.put_execution_with_lineage(store, "Pusher", PIPELINE, [], [("a", again), ("b", elsewhere), ("c", not_pushed)])
    [newest] = [a for a in store.get_artifacts_by_type(mlmd.PUSHED_MODEL_TYPE)
                if a.uri == destination and a.custom_properties["pushed"].int_value == 1 and
                a.custom_properties[pushes.MANIFEST_PROPERTY].string_value == "{}"]
    assert list(pushes.push_records(store, base)) == [1]
    assert pushes.push_records(store, base)[1].artifact.id == newest.id


def test_reconcile_removes_a_staged_copy_that_differs_from_its_record(setup):
    store, base, model = setup
    version = push(store, base, model, publish=False)
    os.remove(os.path.join(bp.staged_versions(base)[version], "variables", "variables.index"))
    assert "partial copy was removed" in pushes.reconcile(store, base)[0]
    assert bp.versions_on_disk(base) == {} and bp.staged_versions(base) == {}


def test_list_versions_joins_records_with_the_directory(setup):
    store, base, model = setup
    push(store, base, model)
    push(store, base, model)
    subprocess.run(["rm", "-r", os.path.join(base, "1")], check=True)
    os.makedirs(os.path.join(base, "7"))
    rows = pushes.list_versions(store, base)
    assert [(r.version, r.state, r.record is not None) for r in rows] == [
        (7, "served", False), (2, "present", True), (1, "deleted", True)]
    text = pushes.format_versions(rows)
    assert "not recorded" in text.splitlines()[1] and "0.5000" in text.splitlines()[2]


def test_the_pipelines_pusher_is_found_with_its_model_base_path(tmp_path):
    from config import PROJECT_ROOT, PipelineConfig
    from orchestration import runner
    from pipeline.pipeline import create_pipeline

    config = PipelineConfig.create({"workspace": str(tmp_path), "data_dir": os.path.join(PROJECT_ROOT, "tests", "data", "tiny")})
    pipeline_ir = runner.compile_pipeline(create_pipeline(config))
    assert runner.push_base_paths(pipeline_ir) == [config.serving_dir]
    assert runner.pipeline_root(pipeline_ir) == config.pipeline_root
    assert runner.pipeline_root(runner.bind_run_id(pipeline_ir, "r")) == config.pipeline_root
