"""What cvrank's Airflow tasks do, in the TFX env. The DAG files only wire these together.

A DAG run compiles the pipeline once (`prepare`), binding the Airflow run id as the TFX pipeline run id,
then launches each node in its own task (`run_node`). ML Metadata resolves each node's inputs and decides
cache reuse, exactly as in a local run.

The workspace lock (orchestration/workspace_lock.py) and recovery, in a node task:
- ML Metadata on SQLite (one writer at a time): the task takes the pipeline's lock exclusively, as a CLI
  run does, so node tasks run one at a time whatever Airflow starts together, and apart from CLI runs,
  `cvrank gc` and rollbacks. Holding
  it exclusively, every execution still RUNNING (or NEW) is an orphan: `recover_workspace` cancels them
  all and reconciles staged pushes, as a CLI run does.
- ML Metadata on a server database (PostgreSQL): the task takes the lock shared, so independent nodes run
  at once on different workers, while CLI runs, gc and rollbacks (exclusive) wait for them or are refused.
  Each shared holder records its run id and node id. An execution still RUNNING may then belong to a live
  task, so the rule is: an active execution is an orphan only when no other live holder of the lock
  claims its (run id, node id) (this task's own earlier, killed attempt is one). The executions are
  listed before the live holders and re-read after: a holder records itself before its launcher
  registers an execution and records the result before it releases, so an execution seen active whose
  holder is not found live afterwards is orphaned, and one that ended meanwhile is seen ended. Staged
  pushes are reconciled only by the Pusher's own task (no other live holder writes there: one DAG run at
  a time, and rollbacks take the lock exclusively).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any, Mapping

from config import PipelineConfig

AIRFLOW_RUNS_DIR = "airflow-runs"  # <workspace>/airflow-runs/<pipeline>/<run>/pipeline.pb: each DAG run's IR


class StaleDagSpec(RuntimeError):
    """The DAG was built from a spec that no longer matches what this code compiles."""


def _config_from_conf(conf: Any) -> PipelineConfig:
    if isinstance(conf, str):
        conf = json.loads(conf) if conf.strip() else {}
    if not isinstance(conf, Mapping):
        raise ValueError(f"DAG run conf must be a JSON object of settings, got {conf!r}")
    return PipelineConfig.create(conf)


def _rewrite_hint(spec: Mapping[str, Any]) -> str:
    path = spec.get("spec_path") or "$CVRANK_AIRFLOW_SPEC"
    return (f"rewrite it with `bin/cvrank airflow compile` (or `python -m orchestration.airflow_spec --output {path}` "
            "in the TFX env), let Airflow parse the DAG files again, then trigger a new run")


def _stale(spec: Mapping[str, Any], what: str) -> StaleDagSpec:
    origin = f" (compiled at {spec['compiled_at']})" if spec.get("compiled_at") else ""
    return StaleDagSpec(f"the DAG spec is stale: DAG {spec.get('dag_id', '?')!r} was built from a spec{origin} {what}; "
                        f"{_rewrite_hint(spec)}")


def check_spec_settings(spec: Mapping[str, Any]) -> None:
    """Raises StaleDagSpec when the DAG's params (`param_names`) are not PipelineConfig's fields. Imports no
    TFX. (Param defaults are not compared: a run takes what the DAG's trigger form showed.)"""
    names = spec.get("param_names")
    if names is None:
        return
    missing = [f for f in PipelineConfig.model_fields if f not in names]
    unknown = [k for k in names if k not in PipelineConfig.model_fields]
    problems = []
    if missing:
        problems.append(f"settings the DAG has no param for: {', '.join(missing)}")
    if unknown:
        problems.append(f"params that are no longer settings: {', '.join(unknown)}")
    if problems:
        raise _stale(spec, "whose params differ from the pipeline settings: " + "; ".join(problems))


def prepare(kind: str, conf: Any, airflow_run_id: str, dag_spec: Any = None) -> str:
    """Compiles the `kind` pipeline ('smoke' or 'cvrank') with the DAG run's conf (a JSON object or a
    mapping of settings: the DAG passes all its params, i.e. the deployment defaults with the run's conf
    applied), binds the Airflow run id as the TFX pipeline run id, writes the IR under the workspace and
    returns its path.

    Bad settings raise ConfigError (the CLI's message) before TFX is imported. With `dag_spec` (JSON or a
    mapping: `dag_id`, `spec_path`, `compiled_at`, `param_names`, `nodes` as the spec gives them) it raises StaleDagSpec when the DAG's params or its nodes and edges are not what this code
    compiles, before anything is written."""
    spec = json.loads(dag_spec) if isinstance(dag_spec, str) else dag_spec
    if spec is not None:
        check_spec_settings(spec)  # a stale spec explains an unknown or missing setting better
    config = _config_from_conf(conf)  # bad settings fail here, before TFX is even imported
    from orchestration import runner
    from orchestration import provenance
    from orchestration.airflow_spec import create_kind_pipeline, graph_differences, node_graph
    from orchestration.pipeline_dirs import write_atomically

    pipeline = create_kind_pipeline(kind, config)
    compiled = runner.compile_pipeline(pipeline)
    if spec is not None and spec.get("nodes") is not None:
        differences = graph_differences(spec["nodes"], node_graph(compiled))
        if differences:
            raise _stale(spec, "whose nodes and edges differ from the pipeline this code compiles: "
                               + "; ".join(differences))
    run_id = tfx_run_id(airflow_run_id)
    bound = runner.bind_run_id(compiled, run_id)
    path = ir_path(config.workspace, pipeline.pipeline_info.pipeline_name, run_id)
    properties = {**provenance.code_properties(), **provenance.settings_properties(config)}
    write_atomically(run_properties_path(path), json.dumps(properties).encode("utf-8"), mode=0o600)
    write_atomically(path, bound.SerializeToString(), mode=0o600)  # it holds the run's settings
    logging.info("cvrank: pipeline %s, run %s: %d nodes; IR %s", pipeline.pipeline_info.pipeline_name, run_id,
                 len(bound.nodes), path)
    return path


def tfx_run_id(airflow_run_id: str) -> str:
    """The TFX pipeline run id of an Airflow DAG run: the Airflow run id itself. TFX uses it only as the
    name of ML Metadata's "pipeline_run" context (any text up to 255 characters; Airflow's run ids are at
    most 250 and match `[A-Za-z0-9_.~:+-]+` by default) and in the executors' ExecutionInvocation;
    artifact directories are named by execution id, not by run id."""
    if not airflow_run_id or len(airflow_run_id) > 250:
        raise ValueError(f"Airflow run id {airflow_run_id!r} cannot name a TFX pipeline run (1 to 250 characters)")
    return airflow_run_id


def ir_path(workspace: str, pipeline_name: str, run_id: str) -> str:
    """Where `prepare` writes the bound IR of run `run_id`: `<workspace>/airflow-runs/<pipeline>/<run id>/
    pipeline.pb`; a run id that is not a plain file name ('.', or holding '/') gets a readable name with
    a digest instead."""
    name = run_id
    if name in (".", "..") or "/" in name or "\0" in name:
        name = re.sub(r"[^A-Za-z0-9_.~:+-]", "_", run_id).strip(".") + "-" + hashlib.sha256(run_id.encode()).hexdigest()[:12]
    return os.path.join(os.path.abspath(workspace), AIRFLOW_RUNS_DIR, pipeline_name, name, "pipeline.pb")


def run_properties_path(ir_path: str) -> str:
    """Where `prepare` writes the run's properties (orchestration.provenance) for its nodes to record:
    `run.json` beside the IR."""
    return os.path.join(os.path.dirname(ir_path), "run.json")


def run_node(ir_path: str, node_id: str) -> None:
    """Launches one node of the IR written by `prepare`, holding the pipeline's workspace lock for as long
    as it runs: exclusively with SQLite ML Metadata, shared with a server database (module docstring),
    waiting for any writer in the way. Under the lock it first recovers executions that killed writers
    left RUNNING (their directories removed, marked CANCELED), so a retried task starts clean. Raises
    whatever the node's executor raised (its execution is recorded FAILED)."""
    from tfx.orchestration.local import runner_utils
    from tfx.proto.orchestration import pipeline_pb2

    from metadata import mlmd
    from orchestration import runner
    from orchestration.recovery import recover_workspace
    from orchestration.workspace_lock import WorkspaceLock

    bound = pipeline_pb2.Pipeline()
    with open(ir_path, "rb") as f:
        bound.ParseFromString(f.read())
    pipeline_name = bound.pipeline_info.id
    pipeline_root = runner.pipeline_root(bound)
    run_id = bound.runtime_spec.pipeline_run_id.field_value.string_value
    node = _pipeline_node(bound, node_id)
    wrapper = runner_utils.extract_local_deployment_config(bound).metadata_connection_config
    connection = getattr(wrapper, wrapper.WhichOneof("connection_config"))
    sqlite = connection.WhichOneof("config") == "sqlite"
    if sqlite:
        os.makedirs(os.path.dirname(os.path.abspath(connection.sqlite.filename_uri)), exist_ok=True)
    me = f"run {run_id}, task {node_id}"
    lock = WorkspaceLock(_workspace_of(pipeline_root), pipeline_name, me, wait=True, shared=not sqlite,
                         run_id=run_id, node_id=node_id,
                         on_wait=lambda busy: logging.info("cvrank: waiting: %s", busy.description))
    with lock:
        if sqlite:
            if mlmd.has_store(connection):  # else nothing ever ran
                notes = recover_workspace(mlmd.open_store(connection), pipeline_name, pipeline_root,
                                          runner.push_base_paths(bound), me)
                for note in notes:
                    logging.warning("cvrank: recovered: %s", note)
        else:
            _recover_shared(lock, mlmd.open_store(connection), pipeline_name, pipeline_root, node, run_id, me)
        properties = None
        if os.path.exists(run_properties_path(ir_path)):
            with open(run_properties_path(ir_path), encoding="utf-8") as f:
                properties = json.load(f)
        runner.launch_node(bound, node_id, properties)


def _pipeline_node(bound, node_id: str):
    for node in bound.nodes:
        if node.pipeline_node.node_info.id == node_id:
            return node.pipeline_node
    raise KeyError(f"pipeline {bound.pipeline_info.id} has no node {node_id!r}")


def _recover_shared(lock, store, pipeline_name: str, pipeline_root: str, node, run_id: str, me: str) -> None:
    """Recovery under the shared lock (module docstring): orphans of dead holders only, and the staged pushes
    of this node's model base path when it is a Pusher."""
    from orchestration import runner
    from serving import pushes

    for holder in lock.other_holders():
        if (holder.run_id, holder.node_id) == (run_id, node.node_info.id):
            raise RuntimeError(f"another attempt of this task is still running: {holder.describe()}; it must end "
                               "before this one can run the node")
    for recovered in recover_orphans_of_dead_holders(store, lock, pipeline_name, pipeline_root, me):
        logging.warning("cvrank: recovered: %s", recovered.describe())
    base = runner.push_base_path(node)
    if base is not None:
        for note in pushes.reconcile(store, base):
            logging.warning("cvrank: recovered: %s", note)


def recover_orphans_of_dead_holders(store, lock, pipeline_name: str, pipeline_root: str, note_context: str):
    """Call holding `lock` (a WorkspaceLock of `pipeline_name`) shared. Recovers, as
    `recovery.recover_orphaned_executions` does (marked CANCELED with a `cvrank_note`, directories removed
    unless a LIVE artifact uses them), every execution of `pipeline_name` still NEW or RUNNING whose (run
    id, node id) no other live holder of the lock claims; nothing at all when another live holder does not
    say which node it runs. Returns the RecoveredExecutions, oldest first."""
    from metadata import mlmd
    from orchestration.recovery import cancel_orphans

    # 1. The active executions, listed before the live holders (see the module docstring for why).
    active = [e for e in mlmd.pipeline_executions(store, pipeline_name) if e.last_known_state in mlmd.ACTIVE_STATES]
    if not active:
        return []
    # 2. The live holders other than this task.
    others = lock.other_holders()
    if any(h.node_id is None for h in others):
        logging.info("cvrank: not recovering: a holder of the lock does not say which node it runs")
        return []
    claimed = {(h.run_id, h.node_id) for h in others}
    candidates = []
    for execution in active:
        node_id, run_id = mlmd.execution_node_and_run(store, pipeline_name, execution.id)
        if node_id is not None and (run_id, node_id) not in claimed:
            candidates.append((execution, node_id, run_id))
    if not candidates:
        return []
    # 3. Re-read: an execution that ended since step 1 is not an orphan.
    now = {e.id: e for e in store.get_executions_by_id([e.id for e, _, _ in candidates])}
    orphans = [(e, n, r) for e, n, r in candidates if now[e.id].last_known_state in mlmd.ACTIVE_STATES]
    return cancel_orphans(store, pipeline_root, orphans, note_context)


def _workspace_of(pipeline_root: str) -> str:
    # PipelineConfig puts a pipeline's root at <workspace>/pipelines/<pipeline name>.
    pipelines_dir = os.path.dirname(os.path.normpath(pipeline_root))
    if os.path.basename(pipelines_dir) != "pipelines":
        raise ValueError(f"pipeline root {pipeline_root} is not <workspace>/pipelines/<name>")
    return os.path.dirname(pipelines_dir)


def skip_interpreter_teardown() -> None:
    """For the process of an Airflow task only (never a test or CLI process): once the task's callable has
    returned and Airflow's script has written its result, ends the process at once with exit code 0,
    skipping the interpreter's teardown of TensorFlow, Beam and TFX (about 1.4 s per task, measured). An
    uncaught exception (the task failed) ends the process the normal way, with its exit code."""
    import atexit
    import sys

    def end_now() -> None:
        if getattr(sys, "last_exc", None) is not None or getattr(sys, "last_value", None) is not None:
            return  # a failure: let Python report it and exit non-zero
        # Airflow's script (python_virtualenv_script.jinja2) writes its result to argv[2] after the callable
        # returns; without that file the script did not finish normally.
        if len(sys.argv) < 3 or not os.path.exists(sys.argv[2]):
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(0)

    atexit.register(end_now)  # registered last, so it runs first

