"""`cvrank sweep` and `cvrank runs`: combinations run as ordinary pipeline runs, upstream steps reused from
cache, the runs table read back from ML Metadata."""

import contextlib
import csv
import io
import json
import os
import shutil

import pytest

from analysis import history
from config import ConfigError
from cvrank import cli
from metadata import mlmd
from orchestration import provenance
from orchestration.sweep import combinations, parse_grid, sweep_configs
from tests.conftest import run_sweep

UPSTREAM = ("FileCheck", "jobs_example_gen", "texts_example_gen", "judgments_example_gen", "DataCheck", "Transform",
            "CooccurrenceGen")


def _cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def _states(store, pipeline_name, run_id):
    return mlmd.run_node_states(store, pipeline_name, run_id)


def _executions_of(store, pipeline_name, node):
    """Each execution of an ExampleGen `node`, one line each: id, state, the properties of its cache key that
    come from the input files, its cache key and whether its outputs exist (what explains a cache miss)."""
    lines = []
    for e in mlmd.node_executions(store, pipeline_name, node):
        props = {k: v.string_value or v.int_value for k, v in e.custom_properties.items()
                 if k in ("input_fingerprint", "span", "version", "input_base")}
        outputs = {uri: os.path.exists(uri) for arts in mlmd.execution_outputs(store, e.id).values()
                   for uri in (a.uri for a in arts)}
        cache_keys = [c.name[:12] for c in store.get_contexts_by_execution(e.id) if c.type == "execution_cache"]
        lines.append(f"{e.id} {mlmd.state_name(e.last_known_state)} cache key {cache_keys} {props} outputs {outputs}")
    return "\n".join(lines)


def _complete_executions(store, pipeline_name, node):
    return [e for e in mlmd.node_executions(store, pipeline_name, node) if e.last_known_state == mlmd.Execution.COMPLETE]


# -- the grid ---------------------------------------------------------------------------------------


def test_grid_is_parsed_and_every_combination_checked_before_running():
    grid = parse_grid(["epochs=5,6", "window_size=3, 5"])
    assert grid == {"epochs": ["5", "6"], "window_size": ["3", "5"]}
    assert combinations(grid) == [{"epochs": "5", "window_size": "3"}, {"epochs": "5", "window_size": "5"},
                                  {"epochs": "6", "window_size": "3"}, {"epochs": "6", "window_size": "5"}]
    [(combination, config)] = sweep_configs({"epochs": "3"}, {"embedding_dim": ["8"]})
    assert combination == {"embedding_dim": "8"} and (config.epochs, config.embedding_dim) == (3, 8)
    with pytest.raises(ConfigError, match=r"combination epochs=0: .*epochs"):
        sweep_configs({}, {"epochs": ["5", "0"]})


@pytest.mark.parametrize("items, message", [
    (["epochs"], "is not KEY=V1,V2"),
    (["epochs=5,", ], "empty value"),
    (["epochs=5", "epochs=6"], "given twice"),
    (["no_such_setting=1,2"], "unknown setting 'no_such_setting'"),
    (["workspace=a,b"], "cannot be swept"),
    ([], "at least one"),
])
def test_bad_grid_is_refused_with_its_reason(items, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(items)


def test_bad_sweep_runs_nothing(tmp_path):
    code, out, err = _cli("sweep", "epochs=5,0", "--workspace", str(tmp_path / "ws"))
    assert code == 2 and "combination epochs=0" in err, err
    assert not os.path.exists(tmp_path / "ws" / "metadata"), "nothing ran"


def test_run_rows_count_executed_cached_and_failed_nodes_and_what_the_cache_saved(tmp_path):
    from tests.pipeline_store_support import CACHED, COMPLETE, FAILED, PipelineStore

    ps = PipelineStore(mlmd.sqlite_store(str(tmp_path / "m.sqlite")), str(tmp_path / "root"))
    ps.execute("run-1", "Transform", COMPLETE, outputs={"transform_graph": "graph"})
    ps.execute("run-1", "Trainer", COMPLETE, inputs={"transform_graph": "graph"}, outputs={"model": "model"})
    ps.execute("run-2", "Transform", CACHED, outputs={"transform_graph": "graph"})
    ps.execute("run-2", "Trainer", FAILED, inputs={"transform_graph": "graph"}, outputs={"model": "model-2"})
    mlmd.record_run(ps.store, "run-2", {**provenance.code_properties(), provenance.SETTINGS: '{"epochs": 3}'})
    first, second = history.run_rows(ps.store, "cvrank")
    assert (first.run_id, first.executed, first.cached, first.failed) == ("run-1", ["Transform", "Trainer"], [], [])
    assert (second.executed, second.cached, second.failed) == ([], ["Transform"], ["Trainer"])
    assert first.settings is None and second.settings == {"epochs": 3} and second.git_commit
    assert first.map is None and second.pushed_version is None
    [original] = [e for e in mlmd.node_executions(ps.store, "cvrank", "Transform") if e.last_known_state == COMPLETE]
    saved = history.cache_savings(ps.store, "cvrank", ["run-2"])
    assert saved.cached_executions == 1
    assert saved.by_node == {"Transform": (original.last_update_time_since_epoch - original.create_time_since_epoch) / 1000}
    table = history.format_table([first, second]).splitlines()
    assert "(not recorded)" in table[1] and "epochs=3" in table[2] and " Trainer " in table[2]


def test_a_sweep_on_a_busy_workspace_stops_before_its_first_run(tmp_path):
    from tests.lock_support import lock_holders

    with lock_holders() as start:
        start(tmp_path, "cvrank", "another run")
        code, out, err = _cli("sweep", "epochs=5,6", "--workspace", str(tmp_path))
    assert code == 3, out + err
    assert "another run" in err and "stopped after 0 of 2 runs" in err
    assert "best MAP first" not in out and not os.path.exists(tmp_path / "metadata" / "cvrank.sqlite")


def test_runs_of_an_empty_workspace(tmp_path):
    code, out, _ = _cli("runs", "--workspace", str(tmp_path))
    assert code == 0 and out.startswith("no runs of cvrank")


# -- sweeps over real pipeline runs ------------------------------------------------------------------


@pytest.mark.slow
def test_trainer_sweep_runs_upstream_once_and_the_trainer_twice(tiny_history):
    assert tiny_history.exit_code == 0, tiny_history.output
    config, (first, second) = tiny_history.config, tiny_history.run_ids
    store = mlmd.open_store(config.metadata_connection())
    for node in UPSTREAM:
        assert len(_complete_executions(store, config.pipeline_name, node)) == 1, node
        assert _states(store, config.pipeline_name, first)[node] == "COMPLETE"
        assert _states(store, config.pipeline_name, second)[node] == "CACHED"
    assert len(_complete_executions(store, config.pipeline_name, "GloveTrainer")) == 2
    # Each run is traceable: its settings and the code it ran are on its run context.
    for run_id, epochs in ((first, 5), (second, 6)):
        properties = mlmd.run_properties(store, run_id)
        assert provenance.settings_of(properties)["epochs"] == epochs
        assert properties[provenance.GIT_COMMIT] == provenance.code_properties()[provenance.GIT_COMMIT]
        assert properties[provenance.GIT_DIRTY] in ("yes", "no")


@pytest.mark.slow
def test_sweep_ends_with_its_runs_best_map_first_and_the_time_the_cache_saved(tiny_history):
    config, run_ids = tiny_history.config, tiny_history.run_ids
    store = mlmd.open_store(config.metadata_connection())
    rows = {r.run_id: r for r in history.run_rows(store, config.pipeline_name, run_ids)}
    table = tiny_history.output.split("best MAP first\n", 1)[1]
    order = [line.split()[0] for line in table.splitlines() if line.split() and line.split()[0] in rows]
    assert order == [r.run_id for r in sorted(rows.values(), key=lambda r: -r.map)]
    # The saving is the recorded duration of the first run's executions that the second run reused.
    first, second = run_ids
    reused = [n for n, s in _states(store, config.pipeline_name, second).items() if s == "CACHED"]
    expected = 0.0
    for node in reused:
        [original] = [e for e in mlmd.node_executions(store, config.pipeline_name, node)
                      if mlmd.execution_run_id(store, e.id) == first]
        expected += (original.last_update_time_since_epoch - original.create_time_since_epoch) / 1000
    saved = history.cache_savings(store, config.pipeline_name, run_ids)
    assert saved.cached_executions == len(reused) and saved.seconds == pytest.approx(expected)
    assert expected > 1.0
    assert f"executor time saved {expected:.1f} s" in tiny_history.output


@pytest.mark.slow
def test_runs_lists_the_sweep_runs_with_their_settings_and_metrics(tiny_history):
    config, run_ids = tiny_history.config, tiny_history.run_ids
    store = mlmd.open_store(config.metadata_connection())
    code, out, _ = _cli("runs", "--workspace", config.workspace, "--csv")
    assert code == 0
    rows = {r["run_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert set(run_ids) <= set(rows)
    for run_id, epochs in zip(run_ids, (5, 6)):
        row = rows[run_id]
        assert json.loads(row["settings"])["epochs"] == epochs
        evaluation = mlmd.run_node_outputs(store, config.pipeline_name, run_id, "Evaluator")["evaluation"][0]
        assert float(row["map"]) == evaluation.custom_properties["map"].double_value
        assert float(row["ndcg10"]) == evaluation.custom_properties["ndcg@10"].double_value
        assert row["blessed"] in ("true", "false") and row["git_commit"]
    assert "GloveTrainer" in rows[run_ids[1]]["executed"].split()
    assert "Transform" in rows[run_ids[1]]["cached"].split()

    code, out, _ = _cli("runs", "--workspace", config.workspace)
    lines = out.splitlines()
    assert lines[0].startswith("settings shared by the runs below") and "epochs" not in lines[0]
    for run_id, epochs in zip(run_ids, (5, 6)):
        [line] = [line for line in lines if line.startswith(run_id)]
        assert f"epochs={epochs}" in line


@pytest.mark.slow
def test_window_sweep_reruns_cooccurrence_not_transform(tiny_history, tmp_path):
    # On a copy of the history's records, which the other tests read unchanged (the copy's ML Metadata
    # still points at the history's artifacts, which the sweep only reads).
    for part in ("metadata", "serving"):
        shutil.copytree(os.path.join(tiny_history.config.workspace, part), tmp_path / part)
    sweep = run_sweep(tmp_path, "window_size=3,5")
    assert sweep.exit_code == 0, sweep.output
    store = mlmd.open_store(sweep.config.metadata_connection())
    for run_id in sweep.run_ids:
        states = _states(store, sweep.config.pipeline_name, run_id)
        if not (states["Transform"] == "CACHED" and states["CooccurrenceGen"] == "COMPLETE"):
            pytest.fail(f"{states}\njobs_example_gen executions:\n"
                        f"{_executions_of(store, sweep.config.pipeline_name, 'jobs_example_gen')}")
    assert len(_complete_executions(store, sweep.config.pipeline_name, "Transform")) == 1
    assert len(_complete_executions(store, sweep.config.pipeline_name, "CooccurrenceGen")) == 3
