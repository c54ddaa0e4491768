"""cvrank smoke DAG: CsvExampleGen -> StatisticsGen -> SchemaGen, one Airflow task per TFX node.

Tasks run in the TFX env (`@task.external_python`); trigger with a conf of cvrank settings, e.g.
`airflow dags trigger cvrank_smoke -c '{"data_dir": "/path/to/data"}'`.
"""

import os

from airflow.sdk import dag, task

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFX_PYTHON = os.environ.get("CVRANK_TFX_PYTHON", "/opt/cvrank/tfx/bin/python")
NODES = ["CsvExampleGen", "StatisticsGen", "SchemaGen"]


@task.external_python(python=TFX_PYTHON, expect_airflow=False)
def prepare(project_root: str, conf: str, airflow_run_id: str) -> str:
    import sys

    sys.path.insert(0, project_root)
    from pipeline import airflow_tasks

    return airflow_tasks.prepare("smoke", conf, airflow_run_id)


@task.external_python(python=TFX_PYTHON, expect_airflow=False)
def run_node(project_root: str, ir_path: str, node_id: str) -> None:
    import sys

    sys.path.insert(0, project_root)
    from pipeline import airflow_tasks

    airflow_tasks.run_node(ir_path, node_id)


@dag(dag_id="cvrank_smoke", schedule=None, catchup=False, tags=["cvrank"])
def cvrank_smoke():
    ir_path = prepare(PROJECT_ROOT, "{{ dag_run.conf | tojson }}", "{{ run_id }}")
    previous = ir_path
    for node_id in NODES:
        current = run_node.override(task_id=node_id)(PROJECT_ROOT, ir_path, node_id)
        previous >> current
        previous = current


cvrank_smoke()
