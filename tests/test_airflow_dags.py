"""cvrank's DAG files in the Airflow env, built from the DAG spec that orchestration/airflow_spec.py writes:
no import errors, tasks and edges equal to the compiled pipelines' nodes and edges, params mirroring
PipelineConfig, a clear import error without a spec; `prepare` refuses a bad conf and a stale spec."""

import json
import os
import shutil
import subprocess

import pytest

from config import ConfigError, PipelineConfig
from orchestration import airflow_spec, airflow_tasks, runner
from orchestration.airflow_env import TFX_POOL, airflow_environ
from pipeline.pipeline import create_pipeline
from pipeline.smoke import create_smoke_pipeline, default_smoke_csv_dir

# Reads the DAG folder with Airflow's own DagBag, in the Airflow env, and prints what each DAG holds.
DAGBAG = r"""
import json
from airflow.dag_processing.dagbag import DagBag

bag = DagBag()
dags = {}
for dag_id, dag in bag.dags.items():
    tasks = {t.task_id: {"upstream": sorted(t.upstream_task_ids), "pool": t.pool, "retries": t.retries,
                         "retry_delay": t.retry_delay.total_seconds(), "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule)}
             for t in dag.tasks}
    params = {}
    for name in dag.params:
        param = dag.params.get_param(name)
        params[name] = {"default": param.value, "description": param.description, "schema": param.schema}
    dags[dag_id] = {"tasks": tasks, "params": params, "max_active_runs": dag.max_active_runs}
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""


def _airflow(args, env, timeout=300):
    return subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _last_json(text):
    # Airflow prints warnings on stdout before the JSON document, which is the last line.
    return json.loads(text.strip().splitlines()[-1])


def _dagbag(env):
    python = os.path.join(os.path.dirname(shutil.which("airflow", path=env["PATH"])), "python")
    result = subprocess.run([python, "-c", DAGBAG], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return _last_json(result.stdout)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """An Airflow home with cvrank's DAG spec written for a deployment whose workspace is not the default."""
    workspace = str(tmp_path_factory.mktemp("ws"))
    env = airflow_environ(workspace)
    airflow_spec.write_spec(env["CVRANK_AIRFLOW_SPEC"], {"workspace": workspace})
    migrated = _airflow(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with open(env["CVRANK_AIRFLOW_SPEC"]) as f:
        spec = json.load(f)
    return env, workspace, spec


@pytest.fixture(scope="module")
def dagbag(deployment):
    return _dagbag(deployment[0])


def test_dags_folder_has_no_import_errors(deployment, dagbag):
    env = deployment[0]
    result = _airflow(["dags", "list-import-errors", "--local", "-o", "json"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _last_json(result.stdout) == [], result.stdout
    listed = _airflow(["dags", "list", "--local", "-o", "json"], env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert sorted(d["dag_id"] for d in _last_json(listed.stdout)) == ["cvrank", "cvrank_smoke"]
    assert dagbag["errors"] == {} and sorted(dagbag["dags"]) == ["cvrank", "cvrank_smoke"]


def test_dags_run_one_dag_run_at_a_time(deployment):
    """Runs of one pipeline share its ML Metadata and artifacts: Airflow starts a DAG run only when the
    previous one has ended."""
    listed = _airflow(["dags", "list", "--local", "-o", "json", "--columns", "dag_id,max_active_runs"], deployment[0])
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert {d["dag_id"]: str(d["max_active_runs"]) for d in _last_json(listed.stdout)} == {"cvrank": "1",
                                                                                          "cvrank_smoke": "1"}


def _ir_upstreams(pipeline):
    ir = runner.compile_pipeline(pipeline)
    return {n.pipeline_node.node_info.id: sorted(n.pipeline_node.upstream_nodes) for n in ir.nodes}


def test_dag_tasks_and_edges_equal_the_compiled_pipelines(deployment, dagbag):
    """Read through Airflow (its DagBag): one task per node of the compiled IR, with the IR's edges, plus
    `prepare` upstream of every node task; node tasks in the TFX pool with a retry, prepare without."""
    _, workspace, _ = deployment
    config = PipelineConfig(workspace=workspace)
    compiled = {"cvrank": _ir_upstreams(create_pipeline(config)),
                "cvrank_smoke": _ir_upstreams(create_smoke_pipeline(default_smoke_csv_dir(config), config))}
    for dag_id, ir in compiled.items():
        tasks = dagbag["dags"][dag_id]["tasks"]
        assert set(tasks) == set(ir) | {"prepare"}, dag_id
        assert tasks["prepare"]["upstream"] == [] and tasks["prepare"]["retries"] == 0
        assert tasks["prepare"]["pool"] != TFX_POOL
        for node_id, upstream in ir.items():
            task = tasks[node_id]
            assert task["upstream"] == sorted(upstream + ["prepare"]), (dag_id, node_id)
            assert (task["pool"], task["retries"], task["trigger_rule"]) == (TFX_POOL, 1, "all_success")
            assert 0 < task["retry_delay"] <= 60
    assert len(compiled["cvrank"]) == 20 and sum(map(len, compiled["cvrank"].values())) > 20


def test_params_mirror_pipeline_config(deployment, dagbag):
    """Every PipelineConfig field is a param of both DAGs with its JSON-schema type, description and
    constraints; the default is the deployment's (the spec was written with another workspace)."""
    _, workspace, _ = deployment
    deployed = PipelineConfig(workspace=workspace).to_dict()
    for dag_id in ("cvrank", "cvrank_smoke"):
        params = dagbag["dags"][dag_id]["params"]
        assert list(params) == list(PipelineConfig.model_fields), dag_id
        for name, field in PipelineConfig.model_fields.items():
            assert params[name]["default"] == deployed[name], name
            assert params[name]["description"] == field.description, name
        schemas = {name: p["schema"] for name, p in params.items()}
    assert params["workspace"]["default"] == workspace != PipelineConfig().workspace
    assert schemas["embedding_dim"] == {"type": "integer", "minimum": 1, "maximum": 4096}
    assert schemas["x_max"] == {"type": "number", "exclusiveMinimum": 0}
    assert schemas["alpha"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
    assert schemas["doc_weighting"] == {"type": "string", "enum": ["mean", "idf", "sif"]}
    assert schemas["pipeline_name"] == {"type": "string", "pattern": PipelineConfig.model_fields["pipeline_name"]
                                        .metadata[0].pattern}
    assert schemas["beam_pipeline_args"] == {"type": "array", "items": {"type": "string"}}
    assert schemas["hybrid_ranking"] == {"type": "boolean"}
    assert schemas["data_dir"] == {"type": "string"}


def test_nullable_settings_become_nullable_params():
    """An Optional setting (none today) becomes a param whose type admits null, constraints kept."""
    prop = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "default": None, "description": "d"}
    assert airflow_spec._nullable(prop) == {"type": ["integer", "null"], "minimum": 1, "default": None,
                                            "description": "d"}


@pytest.mark.parametrize("content, message", [
    (None, "no DAG spec at {path} (CVRANK_AIRFLOW_SPEC); write it with `bin/cvrank airflow up`"),
    ("{not json", "the DAG spec {path} (CVRANK_AIRFLOW_SPEC) cannot be read"),
    ('{"format": 0}', "the DAG spec {path} (CVRANK_AIRFLOW_SPEC) has format 0; this DAG file reads format 1"),
])
def test_a_missing_or_unreadable_spec_is_an_import_error_saying_how_to_write_it(content, message, deployment, tmp_path):
    path = str(tmp_path / "spec.json")
    if content is not None:
        with open(path, "w") as f:
            f.write(content)
    env = {**deployment[0], "CVRANK_AIRFLOW_SPEC": path}
    result = _airflow(["dags", "list-import-errors", "--local", "-o", "json"], env)
    errors = _last_json(result.stdout)
    assert {os.path.basename(e["filepath"]) for e in errors} == {"cvrank_pipeline.py", "cvrank_smoke.py"}, errors
    for error in errors:
        assert message.format(path=path) in error["error"], error["error"]
        assert "`bin/cvrank airflow compile`" in error["error"], error["error"]


def test_the_spec_holds_the_compiled_graph_and_the_code_version(deployment):
    _, workspace, spec = deployment
    assert spec["format"] == 1 and spec["pool"] == TFX_POOL and spec["settings"] == {"workspace": workspace}
    assert spec["project_root"] == os.path.dirname(os.path.dirname(os.path.abspath(airflow_spec.__file__)))
    assert len(spec["code_version"]["sources_sha256"]) == 64
    commit = spec["code_version"]["git_commit"]
    assert commit is None or len(commit) == 40
    config = PipelineConfig(workspace=workspace)
    ir = runner.compile_pipeline(create_pipeline(config))
    assert spec["dags"]["cvrank"]["nodes"] == airflow_spec.node_graph(ir)
    assert [n["id"] for n in spec["dags"]["cvrank"]["nodes"]] == runner.node_ids(ir)  # topological order
    assert spec["dags"]["cvrank_smoke"]["pipeline_name"] == "cvrank-smoke"


@pytest.mark.parametrize("conf, message", [
    ({"embedding_dim": 0}, "setting 'embedding_dim' = 0 is not allowed: must be >= 1"),
    ({"doc_weighting": "bogus"}, "setting 'doc_weighting' = 'bogus' is not allowed: must be one of 'mean', 'idf' or 'sif'"),
    ({"epochz": 3}, "unknown setting 'epochz' (did you mean 'epochs'?)"),
])
def test_prepare_rejects_a_bad_conf_before_compiling(conf, message, tmp_path):
    """What the DAG's first task does with the run's conf: a bad setting fails with the key, the value and
    what is allowed, and nothing is written to the workspace."""
    with pytest.raises(ConfigError) as raised:
        airflow_tasks.prepare("cvrank", json.dumps({**conf, "workspace": str(tmp_path / "ws")}), "manual__1")
    assert message in str(raised.value)
    assert not (tmp_path / "ws").exists()


def _dag_spec(spec, dag_id, nodes=None, param_names=None):
    return json.dumps({"dag_id": dag_id, "spec_path": "/s/cvrank_dags.json", "compiled_at": spec["compiled_at"],
                       "param_names": param_names if param_names is not None else list(spec["params"]),
                       "nodes": nodes if nodes is not None else spec["dags"][dag_id]["nodes"]})


def test_prepare_binds_the_airflow_run_id_unchanged(deployment, tmp_path):
    """The TFX pipeline run id is the Airflow run id, characters and all; the IR goes under the workspace."""
    _, _, spec = deployment
    run_id = "manual__2026-12-07T10:00:00.123456+00:00"
    conf = {**{k: p["default"] for k, p in spec["params"].items()}, "workspace": str(tmp_path / "ws")}
    path = airflow_tasks.prepare("cvrank", json.dumps(conf), run_id, _dag_spec(spec, "cvrank"))
    assert path == os.path.join(str(tmp_path / "ws"), "airflow-runs", "cvrank", run_id, "pipeline.pb")
    from tfx.proto.orchestration import pipeline_pb2

    bound = pipeline_pb2.Pipeline()
    with open(path, "rb") as f:
        bound.ParseFromString(f.read())
    assert bound.runtime_spec.pipeline_run_id.field_value.string_value == run_id
    assert runner.node_ids(bound) == [n["id"] for n in spec["dags"]["cvrank"]["nodes"]]


def test_a_stale_spec_makes_prepare_fail_clearly(deployment, tmp_path):
    """A DAG built from a spec whose nodes, edges or params are not what the code compiles now: prepare
    fails saying so and how to rewrite the spec, before anything is written."""
    _, _, spec = deployment
    nodes = [dict(n) for n in spec["dags"]["cvrank"]["nodes"]]
    evaluator = next(n for n in nodes if n["id"] == "Evaluator")
    evaluator["upstream"] = [u for u in evaluator["upstream"] if u != "previous_blessed_model_resolver"]
    nodes = [n for n in nodes if n["id"] != "Pusher"] + [{"id": "OldPusher", "upstream": ["Evaluator"]}]
    conf = json.dumps({"workspace": str(tmp_path / "ws")})
    with pytest.raises(airflow_tasks.StaleDagSpec) as raised:
        airflow_tasks.prepare("cvrank", conf, "manual__1", _dag_spec(spec, "cvrank", nodes=nodes))
    message = str(raised.value)
    assert message.startswith(f"the DAG spec is stale: DAG 'cvrank' was built from a spec (compiled at "
                              f"{spec['compiled_at']}) whose nodes and edges differ from the pipeline this code "
                              "compiles: nodes the DAG lacks: Pusher; DAG tasks for nodes the pipeline no longer "
                              "has: OldPusher; edges the DAG lacks: "), message
    assert "previous_blessed_model_resolver -> Evaluator" in message
    assert "DAG edges the pipeline no longer has: Evaluator -> OldPusher" in message
    assert message.endswith("; rewrite it with `bin/cvrank airflow compile` (or `python -m orchestration.airflow_spec "
                            "--output /s/cvrank_dags.json` in the TFX env), let Airflow parse the DAG files again, "
                            "then trigger a new run"), message
    assert not (tmp_path / "ws").exists()

    # Params that are not the settings: found before the conf is even validated.
    names = [n for n in spec["params"] if n != "epochs"] + ["old_setting"]
    with pytest.raises(airflow_tasks.StaleDagSpec, match="whose params differ from the pipeline settings: settings "
                       "the DAG has no param for: epochs; params that are no longer settings: old_setting; rewrite"):
        airflow_tasks.prepare("cvrank", json.dumps({"old_setting": 1}), "manual__1",
                              _dag_spec(spec, "cvrank", param_names=names))


@pytest.mark.slow
def test_a_bad_conf_fails_prepare_and_nothing_else_runs(deployment):
    """Through Airflow: a conf key that is no setting passes Airflow's param checks and fails `prepare` with
    the CLI's message; no node task runs. (A value outside a param's schema is refused by Airflow when the
    run is triggered.)"""
    env, workspace, _ = deployment
    result = _airflow(["dags", "test", "cvrank_smoke", "-c", json.dumps({"epochz": 3})], env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown setting 'epochz' (did you mean 'epochs'?)" in output, output[-5000:]
    assert not os.path.exists(os.path.join(workspace, "pipelines", "cvrank-smoke"))
    refused = _airflow(["dags", "test", "cvrank_smoke", "-c", json.dumps({"embedding_dim": 0})], env, timeout=600)
    assert refused.returncode != 0
    assert "Invalid input for param embedding_dim" in refused.stdout + refused.stderr


@pytest.mark.slow
def test_smoke_dag_run_executes_every_node(deployment, tmp_path):
    """A real `airflow dags test` run with a conf that leaves the workspace out: the deployment's workspace
    holds, each task launches its TFX node in the TFX env, and ML Metadata names the run by its Airflow
    run id."""
    from tests.test_smoke_pipeline import _write_rows
    from metadata import mlmd
    from pipeline.smoke import smoke_metadata_path

    env, workspace, _ = deployment
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    conf = {"data_dir": str(tmp_path / "data")}
    result = _airflow(["dags", "test", "cvrank_smoke", "-c", json.dumps(conf)], env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]

    store = mlmd.sqlite_store(smoke_metadata_path(PipelineConfig(workspace=workspace)), read_only=True)
    [run_ctx] = store.get_contexts_by_type("pipeline_run")
    assert run_ctx.name.startswith("manual__") and f"run_id={run_ctx.name}" in result.stdout + result.stderr
    states = mlmd.run_node_states(store, "cvrank-smoke", run_ctx.name)
    assert states == {"CsvExampleGen": "COMPLETE", "StatisticsGen": "COMPLETE", "SchemaGen": "COMPLETE"}
