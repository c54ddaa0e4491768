"""Shared by cvrank's DAG files: the DAG spec, the params, and the tasks (each run in the TFX env).

A DAG is built from the spec that `orchestration/airflow_spec.py` writes in the TFX env (`bin/cvrank
airflow up` and `bin/cvrank airflow compile` write it) at the path in env CVRANK_AIRFLOW_SPEC: its tasks
and edges are the compiled pipeline's nodes and edges, its params mirror PipelineConfig. This file runs in
Airflow's env, which has neither TFX nor cvrank's packages: it reads the spec as plain JSON.

`prepare` validates the run's settings (the params, i.e. the deployment defaults with the run's conf
applied) exactly as the CLI does, checks the DAG still matches what the code compiles, compiles the
pipeline once and binds the Airflow run id as the TFX run id; each node task then launches its node from
that IR, so ML Metadata resolves inputs and cache reuse as in a local run.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Dict

from airflow.sdk import Param, task

SPEC_ENV = "CVRANK_AIRFLOW_SPEC"
SPEC_FORMAT = 1
TFX_PYTHON = os.environ.get("CVRANK_TFX_PYTHON", "/opt/cvrank/tfx/bin/python")
NODE_SERVER_ENV = "CVRANK_NODE_SERVER"  # the node server's socket (orchestration/node_server.py), if one runs
# A node task that fails is tried once more after a short pause, for transient failures (a worker lost,
# a database connection dropped). Retrying is safe: under the workspace lock the task first recovers an
# execution its killed attempt left RUNNING (marked CANCELED, its directories removed), and an attempt
# that failed cleanly was recorded FAILED by TFX with its output directories removed; either way TFX's
# launcher reuses that execution of this run and node and runs it again from clean directories. A node
# that fails for good (bad data) fails its task on the second attempt too; nothing downstream runs (the
# default trigger rule, all_success).
NODE_RETRIES = 1
NODE_RETRY_DELAY = datetime.timedelta(seconds=10)

_HOW_TO_WRITE = ("write it with `bin/cvrank airflow up` (which writes it before starting Airflow) or `bin/cvrank "
                 "airflow compile`; or, in the TFX env, `python -m orchestration.airflow_spec --output PATH`")


class DagSpecError(ImportError):
    """The DAG spec is missing or unreadable: the DAG file cannot be built (Airflow shows an import error)."""


def load_spec(path: str | None = None) -> Dict[str, Any]:
    """The DAG spec at `path` (default: env CVRANK_AIRFLOW_SPEC). Raises DagSpecError saying how to write it
    when it is missing, unreadable or not a spec of this format."""
    path = path or os.environ.get(SPEC_ENV)
    if not path:
        raise DagSpecError(f"cvrank: env {SPEC_ENV} is not set, so cvrank's DAGs have no spec to be built from; "
                           f"set it to the spec's path and {_HOW_TO_WRITE}")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise DagSpecError(f"cvrank: no DAG spec at {path} ({SPEC_ENV}); {_HOW_TO_WRITE.replace('PATH', path)}") from None
    except (OSError, ValueError) as err:
        raise DagSpecError(f"cvrank: the DAG spec {path} ({SPEC_ENV}) cannot be read ({err}); rewrite it: "
                           f"{_HOW_TO_WRITE.replace('PATH', path)}") from None
    problem = _format_problem(spec)
    if problem:
        raise DagSpecError(f"cvrank: the DAG spec {path} ({SPEC_ENV}) {problem}; rewrite it: "
                           f"{_HOW_TO_WRITE.replace('PATH', path)}")
    spec["spec_path"] = os.path.abspath(path)
    return spec


def _format_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return "is not a JSON object"
    if spec.get("format") != SPEC_FORMAT:
        return f"has format {spec.get('format')!r}; this DAG file reads format {SPEC_FORMAT}"
    for key in ("project_root", "pool", "params", "dags"):
        if key not in spec:
            return f"has no {key!r}"
    for dag_id, dag in spec["dags"].items():
        if not isinstance(dag, dict) or "kind" not in dag or not isinstance(dag.get("nodes"), list):
            return f"has no kind or nodes for DAG {dag_id!r}"
    return None


def dag_params(spec: Dict[str, Any]) -> Dict[str, Param]:
    """One Param per pipeline setting, with its JSON-schema type, default (the deployment's), description
    and constraints (enum, minimum, maximum, pattern, ...), so the trigger form shows and checks them."""
    params = {}
    for name, prop in spec["params"].items():
        schema = {k: v for k, v in prop.items() if k not in ("default", "description")}
        params[name] = Param(prop.get("default"), description=prop.get("description"), **schema)
    return params


def dag_doc(spec: Dict[str, Any], dag_id: str) -> str:
    dag = spec["dags"][dag_id]
    version = spec.get("code_version") or {}
    commit = (version.get("git_commit") or "unknown")[:12]
    return (f"cvrank pipeline `{dag.get('pipeline_name', dag['kind'])}`: one task per TFX node "
            f"({len(dag['nodes'])} nodes), each run in the TFX env. Params are the pipeline settings "
            f"(`bin/cvrank config` describes them). Built from the DAG spec `{spec['spec_path']}`, compiled "
            f"{spec.get('compiled_at', '?')} from commit {commit}.")


def _dag_spec_for_prepare(spec: Dict[str, Any], dag_id: str) -> str:
    # What prepare checks the compiled pipeline against. JSON text: op_kwargs strings are Jinja-rendered, and
    # compact JSON never holds '{{', '{%' or '{#'.
    return json.dumps({"dag_id": dag_id, "spec_path": spec["spec_path"], "compiled_at": spec.get("compiled_at"),
                       "param_names": list(spec["params"]), "nodes": spec["dags"][dag_id]["nodes"]},
                      separators=(",", ":"))


# The task callables run in the TFX env as scripts of their own: only their bodies are used there.
@task.external_python(python=TFX_PYTHON, expect_airflow=False, retries=0)
def prepare(project_root: str, kind: str, conf: str, airflow_run_id: str, dag_spec: str) -> str:
    import sys

    sys.path.insert(0, project_root)
    from orchestration import airflow_tasks

    path = airflow_tasks.prepare(kind, conf, airflow_run_id, dag_spec)
    airflow_tasks.skip_interpreter_teardown()
    return path


@task
def run_node(project_root: str, ir_path: str, node_id: str) -> None:
    """Launches one TFX node of the run's IR; its error fails the task."""
    import sys

    sys.path.insert(0, project_root)
    from orchestration import node_client  # standard library only

    node_client.launch(os.environ.get(NODE_SERVER_ENV), TFX_PYTHON, project_root, ir_path, node_id)


def dag_kwargs(spec: Dict[str, Any], dag_id: str) -> Dict[str, Any]:
    """The @dag arguments of DAG `dag_id`: triggered only (no schedule), one active run at a time (runs of one
    pipeline share its ML Metadata and artifacts), params from the spec."""
    return dict(dag_id=dag_id, schedule=None, catchup=False, max_active_runs=1, tags=["cvrank"],
                params=dag_params(spec), doc_md=dag_doc(spec, dag_id))


def wire_pipeline(spec: Dict[str, Any], dag_id: str) -> None:
    """Inside a @dag function: a `prepare` task, then one task per node of the spec with the spec's edges,
    every node task in the spec's pool."""
    dag = spec["dags"][dag_id]
    root = spec["project_root"]
    # All params (the deployment defaults with the run's conf applied, and any extra key of the conf, which
    # prepare then refuses as an unknown setting).
    ir_path = prepare(root, dag["kind"], "{{ params | tojson }}", "{{ run_id }}", _dag_spec_for_prepare(spec, dag_id))
    tasks = {}
    for node in dag["nodes"]:
        tasks[node["id"]] = run_node.override(
            task_id=node["id"], pool=spec["pool"], retries=NODE_RETRIES, retry_delay=NODE_RETRY_DELAY,
        )(root, ir_path, node["id"])
    for node in dag["nodes"]:
        for upstream in node["upstream"]:
            tasks[upstream] >> tasks[node["id"]]
