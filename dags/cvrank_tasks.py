"""Task definitions shared by cvrank's DAGs: each TFX node is one Airflow task run in the TFX env.

`prepare` compiles the pipeline once per DAG run with the run's conf and binds the run id; each node
task launches its node from that IR, so ML Metadata resolves inputs and cache reuse as in a local run.
"""

import os
from typing import Dict, List

from airflow.sdk import task

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFX_PYTHON = os.environ.get("CVRANK_TFX_PYTHON", "/opt/cvrank/tfx/bin/python")


@task.external_python(python=TFX_PYTHON, expect_airflow=False)
def prepare(project_root: str, kind: str, conf: str, airflow_run_id: str) -> str:
    import sys

    sys.path.insert(0, project_root)
    from orchestration import airflow_tasks

    return airflow_tasks.prepare(kind, conf, airflow_run_id)


@task.external_python(python=TFX_PYTHON, expect_airflow=False)
def run_node(project_root: str, ir_path: str, node_id: str) -> None:
    import sys

    sys.path.insert(0, project_root)
    from orchestration import airflow_tasks

    airflow_tasks.run_node(ir_path, node_id)


def wire_pipeline(kind: str, node_upstreams: Dict[str, List[str]]) -> None:
    """Inside a @dag function: a `prepare` task, then one task per node with the pipeline's edges."""
    ir_path = prepare(PROJECT_ROOT, kind, "{{ dag_run.conf | tojson }}", "{{ run_id }}")
    tasks = {}
    for node_id in node_upstreams:
        tasks[node_id] = run_node.override(task_id=node_id)(PROJECT_ROOT, ir_path, node_id)
    for node_id, upstreams in node_upstreams.items():
        for upstream in upstreams:
            tasks[upstream] >> tasks[node_id]
