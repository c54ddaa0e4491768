"""Airflow node tasks (`airflow_tasks.run_node`): with SQLite ML Metadata a task waits for the exclusive
workspace lock and a retry after a killed attempt starts clean; with a server database tasks share the
lock, and recovery cancels only executions that no live task claims."""

from __future__ import annotations

import glob
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from config import PROJECT_ROOT, PipelineConfig
from metadata import mlmd
from orchestration import airflow_tasks
from orchestration.recovery import NOTE_PROPERTY
from orchestration.workspace_lock import WorkspaceLock, read_holder, read_holders
from tests.lock_support import lock_holders
from tests.pipeline_store_support import COMPLETE, RUNNING, PipelineStore
from tests.test_smoke_pipeline import _write_rows

TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")

@pytest.fixture
def shared_holders():
    with lock_holders() as start:
        yield lambda workspace, pipeline, run_id, node_id: start(
            workspace, pipeline, f"run {run_id}, task {node_id}", shared=True, run_id=run_id, node_id=node_id)


def test_shared_recovery_cancels_only_executions_no_live_task_claims(tmp_path, shared_holders):
    """Under the shared lock: an execution left RUNNING by a task that is still alive is left alone; those
    of dead tasks (including this task's own killed attempt) are marked CANCELED and their directories
    removed; a live holder that does not say which node it runs protects everything."""
    workspace, name, run = str(tmp_path / "ws"), "cvrank", "manual__2026-12-07T10:00:00+00:00"
    root = os.path.join(workspace, "pipelines", name)
    store = mlmd.sqlite_store(str(tmp_path / "mlmd.sqlite"))
    pipeline = PipelineStore(store, root, name)
    done = pipeline.execute(run, "FileCheck", COMPLETE, outputs={"result": "checked"})
    live = pipeline.execute(run, "texts_statistics_gen", RUNNING, outputs={"statistics": "texts-stats"})
    dead = pipeline.execute(run, "jobs_statistics_gen", RUNNING, outputs={"statistics": "jobs-stats"})
    mine = pipeline.execute(run, "judgments_statistics_gen", RUNNING, outputs={"statistics": "judgments-stats"})
    older_run = pipeline.execute("manual__older", "texts_statistics_gen", RUNNING, outputs={"statistics": "old"})
    holder = shared_holders(workspace, name, run, "texts_statistics_gen")

    with WorkspaceLock(workspace, name, f"run {run}, task judgments_statistics_gen", shared=True, run_id=run,
                       node_id="judgments_statistics_gen") as lock:
        # Someone sharing the lock without saying which node it runs: nothing can be told orphaned.
        with WorkspaceLock(workspace, name, "something else", shared=True):
            assert airflow_tasks.recover_orphans_of_dead_holders(store, lock, name, root, "test") == []
        recovered = airflow_tasks.recover_orphans_of_dead_holders(store, lock, name, root, "run X, task Y")
        assert sorted(r.execution_id for r in recovered) == sorted([dead, mine, older_run])
        states = {e.id: e.last_known_state for e in store.get_executions()}
        assert states[live] == RUNNING and states[done] == COMPLETE
        assert {states[i] for i in (dead, mine, older_run)} == {mlmd.Execution.CANCELED}
        [note] = {e.custom_properties[NOTE_PROPERTY].string_value for e in store.get_executions_by_id([dead])}
        assert note.startswith("orphaned: its process ended without recording a result; found by run X, task Y at ")
        assert os.path.isdir(os.path.join(root, "texts_statistics_gen", "statistics", str(live)))
        assert not os.path.exists(os.path.join(root, "jobs_statistics_gen", "statistics", str(dead)))

        # Once the live task has died, its execution is an orphan too.
        holder.kill()
        holder.wait(timeout=30)
        [again] = airflow_tasks.recover_orphans_of_dead_holders(store, lock, name, root, "run X, task Y")
        assert again.execution_id == live and again.node_id == "texts_statistics_gen" and again.run_id == run
    assert read_holders(workspace, name) == []


@pytest.mark.slow  # launches a real TFX node (CsvExampleGen, Beam)
def test_run_node_waits_for_the_lock_then_retries_a_killed_attempt_cleanly(tmp_path):
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    conf = {"data_dir": str(tmp_path / "data"), "workspace": str(tmp_path / "ws")}
    run_id = "manual__2026-12-07T10:00:00.123456+00:00"
    ir_path = airflow_tasks.prepare("smoke", json.dumps(conf), run_id)
    config = PipelineConfig.create(conf)
    name = "cvrank-smoke"
    root = os.path.join(config.workspace, "pipelines", name)

    # The task's first attempt was killed in its executor: RUNNING in ML Metadata, a partial output left.
    os.makedirs(os.path.join(config.workspace, "metadata"))
    store = mlmd.sqlite_store(os.path.join(config.workspace, "metadata", f"{name}.sqlite"))
    killed = PipelineStore(store, root, name).execute(run_id, "CsvExampleGen", RUNNING, outputs={"examples": "partial"})
    partial = os.path.join(root, "CsvExampleGen", "examples", str(killed), "data")
    assert os.path.isfile(partial)

    # Another writer holds the lock for two seconds.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from orchestration.workspace_lock import WorkspaceLock
        with WorkspaceLock(sys.argv[1], sys.argv[2], "other"):
            print("locked", flush=True)
            time.sleep(2)
    """), config.workspace, name], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": PROJECT_ROOT})
    try:
        assert holder.stdout.readline() == "locked\n"
        released = []
        threading.Thread(target=lambda: released.append((holder.wait(), time.time())), daemon=True).start()
        airflow_tasks.run_node(ir_path, "CsvExampleGen")
    finally:
        holder.kill()
        holder.wait()
    [(_, released_at)] = released

    # The retry reused the execution TFX registered for this run and node, now with clean outputs.
    assert mlmd.run_node_states(store, name, run_id) == {"CsvExampleGen": "COMPLETE"}
    [execution] = store.get_executions_by_id([killed])
    assert execution.last_known_state == mlmd.Execution.COMPLETE
    assert execution.create_time_since_epoch < released_at * 1000 <= execution.last_update_time_since_epoch
    assert execution.custom_properties[NOTE_PROPERTY].string_value.startswith(
        f"orphaned: its process ended without recording a result; found by run {run_id}, task CsvExampleGen at ")
    [examples] = mlmd.run_node_outputs(store, name, run_id, "CsvExampleGen")["examples"]
    assert examples.uri == os.path.dirname(partial) and not os.path.exists(partial)
    assert os.listdir(examples.uri)  # the retry's own output
    assert read_holder(config.workspace, name) is None  # the task released the lock


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1 (trust authentication); yields a function that creates a
    database and returns its `metadata_uri`."""
    servers = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not servers:
        pytest.skip("PostgreSQL is not in the runtime")
    pg_bin = os.path.dirname(servers[-1])
    data = tmp_path_factory.mktemp("postgres") / "data"
    data.mkdir(mode=0o700)
    prefix = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as `postgres`, able to reach pytest's 0700 dirs
        pg = pwd.getpwnam("postgres")
        os.chown(data, pg.pw_uid, pg.pw_gid)
        prefix = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--clear-groups",
                  "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
    subprocess.run([*prefix, f"{pg_bin}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C.UTF-8", "--no-instructions"], check=True, capture_output=True, timeout=120)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(data.parent / "postgres.log", "w")
    server = subprocess.Popen([*prefix, f"{pg_bin}/postgres", "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                               "-c", "unix_socket_directories="], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([f"{pg_bin}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, open(data.parent / "postgres.log").read()
            time.sleep(0.2)
        count = iter(range(1000))

        def create_database():
            name = f"mlmd{next(count)}"
            subprocess.run([f"{pg_bin}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-c",
                            f"CREATE DATABASE {name}"], check=True, capture_output=True, timeout=60)
            return f"postgresql://postgres@127.0.0.1:{port}/{name}"

        yield create_database
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        server.wait(timeout=60)
        log.close()


@pytest.mark.slow  # launches real TFX nodes (ImportSchemaGen) against a PostgreSQL server
def test_with_postgres_node_tasks_share_the_lock_and_leave_live_tasks_alone(tmp_path, postgres, shared_holders):
    """ML Metadata on PostgreSQL: a node task runs while another task holds the lock (shared), leaves that
    task's RUNNING execution alone and recovers the one a dead task left; once the other task has died, its
    node's own task recovers that execution and runs it again."""
    conf = {"data_dir": TINY, "workspace": str(tmp_path / "ws"), "metadata_uri": postgres()}
    config = PipelineConfig.create(conf)
    run_id = "manual__2026-12-07T10:00:00.123456+00:00"
    ir_path = airflow_tasks.prepare("cvrank", json.dumps(conf), run_id)
    store = mlmd.open_store(config.metadata_connection())
    pipeline = PipelineStore(store, config.pipeline_root, "cvrank")
    running = pipeline.execute(run_id, "jobs_schema_gen", RUNNING)  # its task is alive (below)
    orphan = pipeline.execute(run_id, "judgments_schema_gen", RUNNING)  # its task died
    other = shared_holders(config.workspace, "cvrank", run_id, "jobs_schema_gen")

    finished = []
    task = threading.Thread(target=lambda: finished.append(airflow_tasks.run_node(ir_path, "texts_schema_gen")),
                            daemon=True)
    task.start()
    task.join(timeout=300)
    assert finished, "run_node waited for a lock it should share"
    assert other.poll() is None  # the other task held the lock all along
    states = {e.id: e.last_known_state for e in store.get_executions_by_id([running, orphan])}
    assert states == {running: RUNNING, orphan: mlmd.Execution.CANCELED}
    assert mlmd.run_node_states(store, "cvrank", run_id)["texts_schema_gen"] == "COMPLETE"

    other.kill()
    other.wait(timeout=30)
    airflow_tasks.run_node(ir_path, "jobs_schema_gen")  # a retry of the dead task: recovers, then runs
    [execution] = store.get_executions_by_id([running])
    assert execution.last_known_state == mlmd.Execution.COMPLETE
    assert execution.custom_properties[NOTE_PROPERTY].string_value.startswith(
        f"orphaned: its process ended without recording a result; found by run {run_id}, task jobs_schema_gen at ")
    assert read_holders(config.workspace, "cvrank") == []
