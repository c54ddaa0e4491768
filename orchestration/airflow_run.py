"""`cvrank run --runner airflow`: a DAG run triggered through Airflow's REST API with the run's settings as
its conf, followed task by task, then the same summary as the local runner (from ML Metadata, where the
TFX run id is the Airflow run id)."""

from __future__ import annotations

import datetime
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO

from config import PipelineConfig
from orchestration.airflow_client import AirflowClient, TaskState

DAG_ID = "cvrank"


def _task_order(client: AirflowClient, dag_id: str) -> List[str]:
    """The DAG's task ids in a topological order (Airflow's own listing is alphabetical)."""
    tasks = client.dag_tasks(dag_id)
    downstream = {t["task_id"]: list(t.get("downstream_task_ids") or []) for t in tasks}
    indegree = {t: 0 for t in downstream}
    for targets in downstream.values():
        for target in targets:
            indegree[target] += 1
    ready = sorted(t for t, n in indegree.items() if n == 0)
    order = []
    while ready:
        task = ready.pop(0)
        order.append(task)
        for target in sorted(downstream[task]):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return order


def _seconds(task: TaskState) -> Optional[float]:
    if task.duration is not None:
        return float(task.duration)
    if task.start_date and task.end_date:
        start, end = (datetime.datetime.fromisoformat(d) for d in (task.start_date, task.end_date))
        return (end - start).total_seconds()
    return None


def run_on_airflow(config: PipelineConfig, conf: Mapping[str, Any], client: AirflowClient, ui_url: str,
                   out: TextIO = sys.stdout, poll_seconds: float = 1.0,
                   on_trigger: Optional[Callable[[str], None]] = None) -> int:
    """Triggers DAG `cvrank` with `conf` (the settings the user gave; the DAG's params supply the rest),
    prints one line per task as it changes state, then the run summary read from ML Metadata through
    `config` (its workspace, metadata store and pipeline name must be the deployment's). Returns 0 when
    the DAG run succeeded, 1 when it failed (after printing the failed task's error). `on_trigger` is
    given the DAG run's id (the TFX run id) once it is triggered."""
    from metadata import mlmd
    from orchestration.summary import summarize

    order = _task_order(client, DAG_ID)
    nodes = [t for t in order if t != "prepare"]
    started = time.monotonic()
    run_id = client.trigger(DAG_ID, dict(conf))
    if on_trigger is not None:
        on_trigger(run_id)
    print(f"cvrank: DAG run {run_id} of {DAG_ID} on Airflow ({ui_url}/dags/{DAG_ID}/runs/{run_id})", file=out,
          flush=True)
    store = None
    connection = config.metadata_connection()
    failed: List[TaskState] = []

    def on_change(task: TaskState) -> None:
        nonlocal store
        if task.state in (None, "scheduled", "queued"):
            return
        name = f"{task.task_id:<28}"
        if task.state in ("running", "up_for_retry", "restarting", "deferred"):
            print(f"        {name} {task.state}", file=out, flush=True)
            return
        seconds = _seconds(task)
        took = f"{seconds:6.1f} s" if seconds is not None else " " * 8
        state = task.state.upper()
        if task.state == "success" and task.task_id in nodes:
            # COMPLETE (executed) or CACHED (reused), as ML Metadata recorded it.
            if store is None and mlmd.has_store(connection):
                store = mlmd.open_store(connection, read_only=True)
            states = mlmd.run_node_states(store, config.pipeline_name, run_id) if store is not None else {}
            state = states.get(task.task_id, "NOT RECORDED")
        if task.state == "failed":
            failed.append(task)
        position = f"[{nodes.index(task.task_id) + 1:2d}/{len(nodes)}]" if task.task_id in nodes else "       "
        print(f"{position} {name} {took} {state}", file=out, flush=True)

    final = client.follow(DAG_ID, run_id, on_change, poll_seconds=poll_seconds)
    wall = time.monotonic() - started
    print(f"cvrank: DAG run {run_id} {final} in {wall:.1f} s", file=out, flush=True)
    if mlmd.has_store(connection):
        store = mlmd.open_store(connection, read_only=True)
        print(summarize(store, config.pipeline_name, run_id, nodes, config.serving_dir).format(), file=out)
    for task in failed:
        log = client.task_log(DAG_ID, run_id, task.task_id, max(task.try_number, 1))
        tail = "\n".join(line for line in log.splitlines() if line.strip())[-3000:]
        print(f"\ncvrank: task {task.task_id} FAILED; the end of its log:\n{tail}", file=sys.stderr)
    if final != "success":
        print(f"cvrank: DAG run {run_id} FAILED; earlier runs, their artifacts and the pushed model are unchanged.",
              file=sys.stderr)
        return 1
    return 0


def conf_of(overrides: Dict[str, Any]) -> Dict[str, Any]:
    """The DAG run conf of the settings a user gave: exactly those keys, with their typed values (the DAG's
    params check types). Raises ConfigError with the CLI's message on a bad value, before any DAG run."""
    values = PipelineConfig.create(overrides).to_dict()
    return {key: values[key] for key in overrides}
