"""The cvrank DAG under Airflow's real scheduler (not `airflow dags test`), on 127.0.0.1: runs triggered
through the REST API (authenticated as Airflow 3 requires) and through `cvrank run --runner airflow`; cache
reuse from ML Metadata across DAG runs; bad conf and bad data; and the scale-out cluster (PostgreSQL,
Redis, two Celery workers) with ML Metadata in PostgreSQL and independent nodes running at once."""

from __future__ import annotations

import csv
import datetime
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from config import PROJECT_ROOT
from orchestration import provenance
from metadata import mlmd
from orchestration import airflow_services as services
from orchestration.airflow_client import AirflowApiError, AirflowClient
from tests.airflow_support import start, stop
from tests.test_pipeline_e2e import TINY, tiny_settings

pytestmark = pytest.mark.slow  # real Airflow services and full pipeline runs

DAG = "cvrank"
RESOLVER = "previous_blessed_model_resolver"
RUN_TIMEOUT = 1800


def _client(workspace) -> AirflowClient:
    return AirflowClient(services.api_url(str(workspace)), lambda: services.access_token(str(workspace)))


def _run(client, conf, timeout=RUN_TIMEOUT):
    """Triggers a DAG run with `conf` through the REST API and waits for it: (run id, final state, tasks)."""
    run_id = client.trigger(DAG, conf)
    final = client.follow(DAG, run_id, lambda task: None, poll_seconds=2, timeout=timeout)
    return run_id, final, {t.task_id: t for t in client.task_states(DAG, run_id)}


def _failures(client, run_id, tasks):
    """The states of the tasks and the end of each failed task's log: what a failed assertion shows."""
    report = [str({t: s.state for t, s in tasks.items()})]
    for task in tasks.values():
        if task.state == "failed":
            report.append(f"--- {task.task_id}:\n" + client.task_log(DAG, run_id, task.task_id, task.try_number)[-4000:])
    return "\n".join(report)


def _store(workspace):
    return mlmd.open_store(services.deployment_config(str(workspace)).metadata_connection(), read_only=True)


def _node_states(workspace, run_id):
    return mlmd.run_node_states(_store(workspace), DAG, run_id)


def _pipeline_runs(workspace):
    return sorted(c.name for c in _store(workspace).get_contexts_by_type("pipeline_run"))


def _pushed_dim(workspace, run_id):
    """The embedding dimension of the model the run's GloveTrainer wrote."""
    [model] = mlmd.run_node_outputs(_store(workspace), DAG, run_id, "GloveTrainer")["model"]
    reader = tf.train.load_checkpoint(os.path.join(model.uri, "Format-Serving", "variables", "variables"))
    return reader.get_tensor("cv_matrix/.ATTRIBUTES/VARIABLE_VALUE").shape[1]


def _data_copy(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TINY, data)
    shutil.rmtree(data / "corpus")  # optional; without it the runs are shorter
    return data


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Airflow with the embedded defaults (LocalExecutor, SQLite for Airflow and ML Metadata)."""
    workspace = tmp_path_factory.mktemp("airflow-runs")
    proc, _ = start(workspace, "--port", "0")
    yield workspace
    stop(workspace, proc)


def test_rest_triggered_run_then_an_identical_one_is_all_cached(local, tmp_path):
    client = _client(local)
    conf = tiny_settings(str(_data_copy(tmp_path)), embedding_dim=8)
    run_id, final, tasks = _run(client, conf)
    assert final == "success", _failures(client, run_id, tasks)
    node_ids = [t for t in tasks if t != "prepare"]
    states = _node_states(local, run_id)
    assert set(states) == set(node_ids) and all(s in ("COMPLETE", "CACHED") for s in states.values()), states
    assert _pushed_dim(local, run_id) == 8
    assert _pipeline_runs(local) == [run_id]  # the TFX run is named by the Airflow run id
    # The run records the code it ran and its conf's settings (orchestration.provenance).
    recorded = mlmd.run_properties(_store(local), run_id)
    assert recorded[provenance.GIT_COMMIT] == provenance.code_properties()[provenance.GIT_COMMIT]
    assert provenance.settings_of(recorded)["embedding_dim"] == 8

    # The same conf through the CLI: every node reused from ML Metadata, and the local runner's summary.
    args = [arg for key, value in conf.items() if key != "data_dir"
            for arg in ("--set", f"{key}={value if not isinstance(value, list) else ' '.join(value)}")]
    result = subprocess.run([sys.executable, "-m", "cvrank.cli", "run", "--runner", "airflow", "--workspace",
                             str(local), "--data", conf["data_dir"], *args],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    second = _pipeline_runs(local)
    assert len(second) == 2
    [run_2] = set(second) - {run_id}
    # Every node reused; the resolver, which produces nothing, resolves the last blessed model anew.
    assert _node_states(local, run_2) == {node: "CACHED" if node != RESOLVER else "COMPLETE" for node in node_ids}
    for node in node_ids:  # one line per node, with the state ML Metadata recorded
        state = "COMPLETE" if node == RESOLVER else "CACHED"
        assert re.search(rf"\] {re.escape(node)} +[0-9.]+ s {state}$", result.stdout, re.M), (node, result.stdout)
    assert "evaluation (eval jobs" in result.stdout, result.stdout
    assert f"DAG run {run_2} success" in result.stdout


def test_a_bad_conf_fails_before_any_node(local):
    client = _client(local)
    # What the params' schema expresses, Airflow refuses when the run is created.
    with pytest.raises(AirflowApiError, match="embedding_dim"):
        client.trigger(DAG, {"embedding_dim": 0})
    # An unknown setting reaches the first task, which fails with the CLI's message; no node runs.
    run_id, final, tasks = _run(client, {"epochz": 3}, timeout=600)
    assert final == "failed"
    assert tasks["prepare"].state == "failed"
    assert {s.state for t, s in tasks.items() if t != "prepare"} == {"upstream_failed"}
    log = client.task_log(DAG, run_id, "prepare", tasks["prepare"].try_number)
    assert "unknown setting 'epochz' (did you mean 'epochs'?)" in log, log[-3000:]


def test_bad_data_fails_its_task_and_the_fixed_run_reuses_upstream_nodes(local, tmp_path):
    client = _client(local)
    data = _data_copy(tmp_path)
    judgments = data / "judgments" / "judgments.csv"
    good = judgments.read_text()
    with open(judgments, "a", newline="") as f:
        csv.writer(f).writerow(["13-1071.00", "cv-999999", "1"])  # a CV that does not exist
    conf = tiny_settings(str(data), embedding_dim=12)
    run_id, final, tasks = _run(client, conf)
    assert final == "failed"
    assert tasks["DataCheck"].state == "failed"
    for node in ("Transform", "CooccurrenceGen", "GloveTrainer", "Evaluator", "Pusher"):
        assert tasks[node].state == "upstream_failed", (node, tasks[node].state)
    log = client.task_log(DAG, run_id, "DataCheck", tasks["DataCheck"].try_number)
    assert "cv_id: not among the CVs (cvs/*.csv): 1 found: cv-999999" in log, log[-3000:]

    judgments.write_text(good)
    fixed_id, final, tasks = _run(client, conf)
    assert final == "success", _failures(client, fixed_id, tasks)
    states = _node_states(local, fixed_id)
    # The CVs and jobs did not change: their ExampleGens and statistics come from the failed run's cache.
    for node in ("texts_example_gen", "jobs_example_gen", "texts_statistics_gen", "jobs_statistics_gen"):
        assert states[node] == "CACHED", states
    assert states["judgments_example_gen"] == states["DataCheck"] == "COMPLETE", states


def _interval(task):
    return (datetime.datetime.fromisoformat(task.start_date), datetime.datetime.fromisoformat(task.end_date))


def test_cluster_runs_nodes_in_parallel_with_metadata_in_postgres(tmp_path):
    """PostgreSQL + Redis + two Celery workers: the run succeeds, its ML Metadata is in PostgreSQL, and two
    independent nodes overlap in time."""
    workspace = tmp_path / "cluster"
    workspace.mkdir()
    proc, doc = start(workspace, "--cluster", "--port", "0")
    try:
        assert doc["metadata_uri"].startswith("postgresql://")
        connection = services.deployment_config(str(workspace)).metadata_connection()
        assert connection.WhichOneof("config") == "postgresql"
        client = _client(workspace)
        run_id, final, tasks = _run(client, tiny_settings(str(_data_copy(tmp_path))))
        assert final == "success", _failures(client, run_id, tasks)
        assert _pipeline_runs(workspace) == [run_id]
        assert set(_node_states(workspace, run_id).values()) == {"COMPLETE"}
        assert not os.path.exists(os.path.join(workspace, "metadata", f"{DAG}.sqlite"))
        gens = ["texts_example_gen", "jobs_example_gen", "judgments_example_gen"]
        intervals = [_interval(tasks[g]) for g in gens]
        overlapping = [(a, b) for i, a in enumerate(gens) for b in gens[i + 1:]
                       if max(intervals[gens.index(a)][0], intervals[gens.index(b)][0])
                       < min(intervals[gens.index(a)][1], intervals[gens.index(b)][1])]
        assert overlapping, {g: (str(s), str(e)) for g, (s, e) in zip(gens, intervals)}
    finally:
        stop(workspace, proc)
