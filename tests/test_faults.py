"""Faults injected for real into `cvrank run` on the tiny dataset: a full disk during the push, a deleted
saved_model.pb, a rollback and back, two runs at once on one workspace, `kill -9` during GloveTrainer.

One workspace goes through them in order, as a user's would; its model base path is a small tmpfs so the
disk can really fill up. Each run is a separate `python -m cvrank.cli run` process.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from config import PROJECT_ROOT, PipelineConfig
from metadata import mlmd
from serving import base_path as bp
from serving import pushes

pytestmark = pytest.mark.slow

TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")
# Small and fast; map_tolerance 1 blesses every model above the floor, so each new seed pushes.
SETTINGS = {"vocab_min_count": "2", "embedding_dim": "16", "epochs": "5", "batch_size": "2048",
            "map_tolerance": "1"}
UPSTREAM = ["FileCheck", "texts_example_gen", "jobs_example_gen", "judgments_example_gen", "DataCheck",
            "Transform", "CooccurrenceGen"]


def command(workspace, *extra, **settings):
    args = [sys.executable, "-m", "cvrank.cli", "run", "--data", TINY, "--workspace", workspace]
    for key, value in {**SETTINGS, **settings}.items():
        args += ["--set", f"{key}={value}"]
    return args + list(extra)


def cvrank_run(workspace, *extra, **settings) -> subprocess.CompletedProcess:
    result = subprocess.run(command(workspace, *extra, **settings), cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=900)
    result.output = result.stdout + result.stderr
    return result


def cvrank_cli(workspace, *args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cvrank.cli", *args, "--workspace", workspace],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    result.output = result.stdout + result.stderr
    return result


def run_id_of(output: str) -> str:
    return next(line.split()[2] for line in output.splitlines() if line.startswith("cvrank: run "))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace whose first run pushed version 1, with a 16 MB tmpfs as its serving directory."""
    ws = str(tmp_path_factory.mktemp("faults") / "ws")
    serving = os.path.join(ws, "serving")
    os.makedirs(serving)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", serving]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the runtime's mount namespace allows it)")
    try:
        first = cvrank_run(ws)
        assert first.returncode == 0, first.output
        assert "push: version 1" in first.output, first.output
        yield ws
    finally:
        subprocess.run(["umount", "-l", serving])


def config(ws) -> PipelineConfig:
    return PipelineConfig.create({"workspace": ws, "data_dir": TINY})


def present(ws):
    return sorted(bp.versions_on_disk(config(ws).serving_dir))


def store(ws):
    return mlmd.sqlite_store(config(ws).metadata_path)


def test_full_disk_during_push_publishes_nothing_and_the_next_run_pushes_once(workspace):
    serving = config(workspace).serving_dir
    before = present(workspace)
    stat = os.statvfs(serving)
    filler = os.path.join(os.path.dirname(serving), "filler")
    model_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(serving, "1"))
                      for f in fs)
    with open(filler, "wb") as f:  # leaves half a model's worth of space
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - model_bytes // 2))
    try:
        failed = cvrank_run(workspace, seed=1)
    finally:
        os.remove(filler)
    assert failed.returncode == 1, failed.output
    assert "No space left on device" in failed.output and "nothing was published" in failed.output
    assert "push: FAILED" in failed.output
    assert f"served: version {before[-1]}" in failed.output and "match the push record" in failed.output
    assert present(workspace) == before and bp.staged_versions(serving) == {}
    states = mlmd.run_node_states(store(workspace), "cvrank", run_id_of(failed.output))
    assert states["Pusher"] == "FAILED" and states["GloveTrainer"] == "COMPLETE"

    again = cvrank_run(workspace, seed=1)
    assert again.returncode == 0, again.output
    [new] = [v for v in present(workspace) if v not in before]
    assert present(workspace) == before + [new] and new > before[-1]
    assert f"push: version {new}" in again.output and f"served: version {new}" in again.output
    states = mlmd.run_node_states(store(workspace), "cvrank", run_id_of(again.output))
    assert states["GloveTrainer"] == "CACHED" and states["Pusher"] == "COMPLETE"


def test_deleted_saved_model_is_reported_by_the_next_run_and_verify(workspace):
    versions = present(workspace)
    newest, previous = versions[-1], versions[-2]
    os.remove(os.path.join(config(workspace).serving_dir, str(newest), "saved_model.pb"))
    rerun = cvrank_run(workspace, seed=1)  # unchanged: every node cached
    assert rerun.returncode == 0, rerun.output
    assert f"served: version {newest}" in rerun.output and "is BROKEN: saved_model.pb is missing" in rerun.output
    assert f"`bin/cvrank serving rollback {previous}`" in rerun.output
    verify = cvrank_cli(workspace, "serving", "verify")
    assert verify.returncode == 1, verify.output
    assert f"version {newest} (served): BROKEN: saved_model.pb is missing" in verify.output
    assert f"version {previous}: OK" in verify.output
    fixed = cvrank_cli(workspace, "serving", "rollback", str(previous))
    assert fixed.returncode == 0, fixed.output
    assert present(workspace)[-1] == previous
    assert cvrank_cli(workspace, "serving", "verify", "--no-load").returncode == 0


def test_rollback_and_back_changes_what_a_server_loads_and_is_recorded(workspace):
    pushed = cvrank_run(workspace, seed=2)
    assert pushed.returncode == 0, pushed.output
    newest = present(workspace)[-1]
    older = present(workspace)[-2]
    from serving.versions import Servable

    assert Servable("cvrank", newest, os.path.join(config(workspace).serving_dir, str(newest))).signatures
    down = cvrank_cli(workspace, "serving", "rollback", str(older))
    assert down.returncode == 0 and f"version {older} is served (was {newest})" in down.output, down.output
    assert bp.served_version(config(workspace).serving_dir) == older
    listing = cvrank_cli(workspace, "serving", "versions").output
    assert any(line.split()[:2] == [str(newest), "retired"] for line in listing.splitlines()), listing
    up = cvrank_cli(workspace, "serving", "rollback", str(newest))
    assert up.returncode == 0 and f"version {newest} is served (was {older})" in up.output, up.output
    assert bp.served_version(config(workspace).serving_dir) == newest
    history = pushes.rollback_history(store(workspace), "cvrank")[-2:]
    assert [(h["served_before"], h["served_after"]) for h in history] == [
        (str(newest), str(older)), (str(older), str(newest))]


def test_two_runs_on_one_workspace_push_exactly_one_model(workspace):
    before = present(workspace)
    first = subprocess.Popen(command(workspace, seed=3), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    first_line = first.stdout.readline()  # printed once the lock is held
    assert first_line.startswith("cvrank: run "), first_line
    refused = cvrank_run(workspace, seed=3)
    waiting = subprocess.Popen(command(workspace, "--wait", seed=3), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    first_output = first_line + first.communicate(timeout=900)[0]
    waited_output = waiting.communicate(timeout=900)[0]
    assert refused.returncode == 3, refused.output
    assert f"is in use by run {run_id_of(first_line)}" in refused.output and "nothing was run" in refused.output
    assert first.returncode == 0 and waiting.returncode == 0, first_output + waited_output
    assert "cvrank: waiting: workspace" in waited_output
    assert "push: unchanged" in waited_output
    assert len(present(workspace)) == len(before) + 1


def test_kill_during_glove_trainer_is_recovered_by_the_next_run(workspace):
    killed = subprocess.Popen(command(workspace, seed=4, epochs=1000), cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    metadata_path = config(workspace).metadata_path
    orphan = None
    deadline = time.monotonic() + 600
    while orphan is None and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.5)
        running = [e for e in mlmd.node_executions(mlmd.sqlite_store(metadata_path, read_only=True), "cvrank",
                                                   "GloveTrainer")
                   if e.last_known_state == mlmd.Execution.RUNNING]
        orphan = running[0] if running else None
    assert orphan is not None, killed.communicate()[0]
    model_dir = os.path.join(config(workspace).pipeline_root, "GloveTrainer", "model", str(orphan.id))
    while not os.path.isdir(model_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # well inside training
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    [left] = store(workspace).get_executions_by_id([orphan.id])
    assert left.last_known_state == mlmd.Execution.RUNNING and os.path.isdir(model_dir)

    after = cvrank_run(workspace, seed=4, epochs=1000)
    assert after.returncode == 0, after.output
    assert f"recovered: GloveTrainer execution {orphan.id} of run" in after.output
    assert "was left RUNNING" in after.output and "marked CANCELED" in after.output
    [marked] = store(workspace).get_executions_by_id([orphan.id])
    assert marked.last_known_state == mlmd.Execution.CANCELED
    assert "orphaned" in marked.custom_properties["cvrank_note"].string_value
    assert not os.path.exists(model_dir)
    states = mlmd.run_node_states(store(workspace), "cvrank", run_id_of(after.output))
    assert all(states[n] == "CACHED" for n in UPSTREAM), states
    assert states["GloveTrainer"] == "COMPLETE" and states["Pusher"] == "COMPLETE"


def test_gc_keeps_served_models_and_the_next_run_still_works(workspace):
    def tree():
        return sorted(os.path.join(d, f) for d, _, fs in os.walk(config(workspace).pipeline_root) for f in fs)

    before = tree()
    dry = cvrank_cli(workspace, "gc", "--keep-runs", "1", "--dry-run")
    assert dry.returncode == 0 and "dry run: nothing was changed" in dry.output, dry.output
    assert tree() == before
    collected = cvrank_cli(workspace, "gc", "--keep-runs", "1")
    assert collected.returncode == 0 and "removed " in collected.output, collected.output
    assert len(tree()) < len(before)
    records = pushes.push_records(store(workspace), config(workspace).serving_dir)
    for version in present(workspace) + sorted(bp.retired_versions(config(workspace).serving_dir)):
        assert os.path.isdir(records[version].model_uri), (version, collected.output)
    assert cvrank_cli(workspace, "serving", "verify", "--no-load").returncode == 0
    again = cvrank_run(workspace, seed=4, epochs=1000)
    assert again.returncode == 0, again.output
