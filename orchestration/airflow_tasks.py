"""What cvrank's Airflow tasks do, in the TFX env. The DAG files only wire these together.

A DAG run compiles the pipeline once (`prepare`), binding the run id, then launches each node in its own
task (`run_node`). ML Metadata resolves each node's inputs and decides cache reuse, exactly as in a
local run.
"""

from __future__ import annotations

import json
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
    """Launches one node of the IR written by `prepare`."""
    from tfx.proto.orchestration import pipeline_pb2

    from orchestration import runner

    bound = pipeline_pb2.Pipeline()
    with open(ir_path, "rb") as f:
        bound.ParseFromString(f.read())
    runner.launch_node(bound, node_id)
