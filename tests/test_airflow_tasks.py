"""An Airflow node task (`airflow_tasks.run_node`) on the smoke pipeline: it waits for the workspace lock,
and a retry after a killed attempt starts clean."""

from __future__ import annotations

import json
import os
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
from orchestration.workspace_lock import read_holder
from tests.pipeline_store_support import RUNNING, PipelineStore
from tests.test_smoke_pipeline import _write_rows

pytestmark = pytest.mark.slow  # launches a real TFX node (CsvExampleGen, Beam)


def test_run_node_waits_for_the_lock_then_retries_a_killed_attempt_cleanly(tmp_path):
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    conf = {"data_dir": str(tmp_path / "data"), "workspace": str(tmp_path / "ws"),
            "beam_pipeline_args": ["--direct_num_workers=1"]}
    ir_path = airflow_tasks.prepare("smoke", json.dumps(conf), "manual__1")
    config = PipelineConfig.create(conf)
    name, run_id = "cvrank-smoke", "airflow-manual__1"
    root = os.path.join(config.workspace, "pipelines", name)

    # The task's first attempt was killed in its executor: RUNNING in ML Metadata, a partial output left.
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
