"""What cvrank's Airflow tasks do, in the TFX env. The DAG files only wire these together.

A DAG run compiles the pipeline once (`prepare`), binding the run id, then launches each node in its own
task (`run_node`). ML Metadata resolves each node's inputs and decides cache reuse, exactly as in a
local run.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Mapping

from config import PipelineConfig


def _config_from_conf(conf: Any) -> PipelineConfig:
    if isinstance(conf, str):
        conf = json.loads(conf) if conf.strip() else {}
    if not isinstance(conf, Mapping):
        raise ValueError(f"DAG run conf must be a JSON object of settings, got {conf!r}")
    return PipelineConfig.create(conf)


def prepare(kind: str, conf: Any, airflow_run_id: str) -> str:
    """Compiles the `kind` pipeline ('smoke' or 'cvrank') with the DAG run's conf applied, binds a run
    id derived from the Airflow run id, writes the IR under the workspace and returns its path."""
    config = _config_from_conf(conf)  # bad settings fail here, before TFX is even imported
    from orchestration import runner

    if kind == "smoke":
        from pipeline.smoke import create_smoke_pipeline, default_smoke_csv_dir

        pipeline = create_smoke_pipeline(default_smoke_csv_dir(config), config)
    elif kind == "cvrank":
        from pipeline.pipeline import create_pipeline

        pipeline = create_pipeline(config)
    else:
        raise ValueError(f"unknown pipeline kind {kind!r}")
    run_id = "airflow-" + re.sub(r"[^A-Za-z0-9_.-]", "_", airflow_run_id)
    bound = runner.bind_run_id(runner.compile_pipeline(pipeline), run_id)
    path = os.path.join(config.workspace, "airflow-runs", pipeline.pipeline_info.pipeline_name, run_id, "pipeline.pb")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bound.SerializeToString())
    return path


def run_node(ir_path: str, node_id: str) -> None:
    """Launches one node of the IR written by `prepare`, holding the pipeline's workspace lock for as long
    as it runs (waiting for any other writer of the pipeline: tasks of a DAG run that Airflow starts side by
    side take turns). Under the lock it first recovers executions a killed writer left RUNNING (their
    directories removed, marked CANCELED), so a retried task starts clean."""
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
    connection = runner_utils.extract_local_deployment_config(bound).metadata_connection_config
    metadata_path = getattr(connection, connection.WhichOneof("connection_config")).sqlite.filename_uri
    with WorkspaceLock(_workspace_of(pipeline_root), pipeline_name, f"run {run_id}, task {node_id}", wait=True,
                       on_wait=lambda busy: logging.info("cvrank: waiting: %s", busy.description)):
        if os.path.exists(metadata_path):  # else nothing ever ran
            for note in recover_workspace(mlmd.sqlite_store(metadata_path), pipeline_name, pipeline_root,
                                          runner.push_base_paths(bound), f"run {run_id}, task {node_id}"):
                logging.warning("cvrank: recovered: %s", note)
        runner.launch_node(bound, node_id)


def _workspace_of(pipeline_root: str) -> str:
    # PipelineConfig puts a pipeline's root at <workspace>/pipelines/<pipeline name>.
    pipelines_dir = os.path.dirname(os.path.normpath(pipeline_root))
    if os.path.basename(pipelines_dir) != "pipelines":
        raise ValueError(f"pipeline root {pipeline_root} is not <workspace>/pipelines/<name>")
    return os.path.dirname(pipelines_dir)
