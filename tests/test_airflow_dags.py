"""The Airflow env parses cvrank's dags/ folder, and the smoke DAG's tasks match the pipeline's nodes."""

import ast
import json
import os
import subprocess

import pytest

from orchestration.airflow_env import airflow_environ
from config import PROJECT_ROOT, PipelineConfig
from orchestration import runner
from pipeline.pipeline import create_pipeline
from pipeline.smoke import create_smoke_pipeline


def _airflow(args, env, timeout=300):
    return subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    env = airflow_environ(str(tmp_path_factory.mktemp("ws")))
    migrated = _airflow(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return env


def test_dags_folder_has_no_import_errors(airflow_env):
    result = _airflow(["dags", "list-import-errors", "--local", "-o", "json"], airflow_env)
    assert result.returncode == 0, result.stderr[-3000:]
    # Airflow prints warnings on stdout before the JSON document, which is the last line.
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], result.stdout
    listed = _airflow(["dags", "list", "--local", "-o", "json"], airflow_env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    dags = json.loads(listed.stdout.strip().splitlines()[-1])
    assert sorted(d["dag_id"] for d in dags) == ["cvrank", "cvrank_smoke"]


def test_dags_run_one_dag_run_at_a_time(airflow_env):
    """Runs of one pipeline share its ML Metadata and artifacts: Airflow starts a DAG run only when the
    previous one has ended."""
    listed = _airflow(["dags", "list", "--local", "-o", "json", "--columns", "dag_id,max_active_runs"], airflow_env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    dags = json.loads(listed.stdout.strip().splitlines()[-1])
    assert {d["dag_id"]: str(d["max_active_runs"]) for d in dags} == {"cvrank": "1", "cvrank_smoke": "1"}


@pytest.mark.parametrize("conf, message", [
    ({"embedding_dim": 0}, "setting 'embedding_dim' = 0 is not allowed: must be >= 1"),
    ({"doc_weighting": "bogus"}, "setting 'doc_weighting' = 'bogus' is not allowed: must be one of 'mean', 'idf' or 'sif'"),
    ({"epochz": 3}, "unknown setting 'epochz' (did you mean 'epochs'?)"),
])
def test_prepare_rejects_a_bad_conf_before_compiling(conf, message, tmp_path):
    """What the DAG's first task does with the run's conf: a bad setting fails with the key, the value and
    what is allowed, and nothing is written to the workspace."""
    from config import ConfigError
    from orchestration import airflow_tasks

    with pytest.raises(ConfigError) as raised:
        airflow_tasks.prepare("cvrank", json.dumps({**conf, "workspace": str(tmp_path / "ws")}), "manual__1")
    assert message in str(raised.value)
    assert not (tmp_path / "ws").exists()


def _dag_upstreams(dag_file):
    tree = ast.parse(open(os.path.join(PROJECT_ROOT, "dags", dag_file)).read())
    return next(ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODE_UPSTREAMS")


def _ir_upstreams(pipeline):
    ir = runner.compile_pipeline(pipeline)
    return {n.pipeline_node.node_info.id: sorted(n.pipeline_node.upstream_nodes) for n in ir.nodes}


def test_dag_tasks_match_compiled_pipelines(tmp_path):
    config = PipelineConfig(workspace=str(tmp_path))
    smoke = _dag_upstreams("cvrank_smoke.py")
    assert {k: sorted(v) for k, v in smoke.items()} == _ir_upstreams(create_smoke_pipeline(str(tmp_path), config))
    full = _dag_upstreams("cvrank_pipeline.py")
    assert {k: sorted(v) for k, v in full.items()} == _ir_upstreams(create_pipeline(config))


@pytest.mark.slow
def test_smoke_dag_run_executes_every_node(airflow_env, tmp_path):
    """A real `airflow dags test` run with a conf: each task launches its TFX node in the TFX env."""
    from tests.test_smoke_pipeline import _write_rows
    from metadata import mlmd
    from pipeline.smoke import smoke_metadata_path

    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    conf = {"data_dir": str(tmp_path / "data"), "workspace": str(tmp_path / "ws"),
            "beam_pipeline_args": ["--direct_num_workers=1"]}
    result = _airflow(["dags", "test", "cvrank_smoke", "-c", json.dumps(conf)], airflow_env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]

    config = PipelineConfig.create(conf)
    store = mlmd.sqlite_store(smoke_metadata_path(config))
    [run_ctx] = store.get_contexts_by_type("pipeline_run")
    assert run_ctx.name.startswith("airflow-")
    states = mlmd.run_node_states(store, "cvrank-smoke", run_ctx.name)
    assert states == {"CsvExampleGen": "COMPLETE", "StatisticsGen": "COMPLETE", "SchemaGen": "COMPLETE"}
