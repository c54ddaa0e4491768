"""`cvrank lineage`: the lineage of pushed models of real tiny pipeline runs, checked against ML Metadata
read independently (producers and inputs event by event, the runs' executions and states), and drawn
with the real Graphviz."""

import argparse
import hashlib
import os
import re
import shutil
import struct
import xml.etree.ElementTree as ElementTree

import pytest

from analysis import lineage as lin
from config import PipelineConfig
from metadata import mlmd
from orchestration import provenance

# The nodes of a pipeline run that are not in a pushed model's lineage: FileCheck is a task dependency of
# the ExampleGens (no artifact links them) and the resolver only looks artifacts up.
NOT_IN_LINEAGE = {"FileCheck", "previous_blessed_model_resolver"}


def _args(workspace, version="latest", fmt="text", output=None):
    return argparse.Namespace(workspace=str(workspace), version=version, format=fmt, output=output)


def _cli_lineage(workspace, **options):
    """`cvrank lineage` with `options` on the workspace's default settings."""
    return lin.cli_lineage(_args(workspace, **options), PipelineConfig(workspace=str(workspace)))


def _store(config):
    return mlmd.open_store(config.metadata_connection(), read_only=True)


def _producers_and_inputs(store, artifact_id):
    """(execution ids, artifact ids) of the lineage of `artifact_id`, walked with mlmd.producer alone."""
    executions, artifacts, todo = set(), {artifact_id}, [artifact_id]
    while todo:
        found = mlmd.producer(store, todo.pop())
        if found is None or found[0].id in executions:
            continue
        execution, _, inputs = found
        executions.add(execution.id)
        for consumed in inputs.values():
            for artifact in consumed:
                artifacts.add(artifact.id)
                todo.append(artifact.id)
    return executions, artifacts


def _run_executions(store, pipeline_name, run_id):
    """{node id: execution} of run `run_id` (the newest execution of each node)."""
    found = {}
    for context, executions in mlmd.pipeline_runs(store, pipeline_name):
        if context.name == run_id:
            for execution in executions:
                node, _ = mlmd.execution_node_and_run(store, pipeline_name, execution.id)
                found[node] = execution
    return found


def _pushed_version(store, pipeline_name, run_id):
    pushed = mlmd.run_node_outputs(store, pipeline_name, run_id, "Pusher")["pushed_model"][0]
    assert pushed.custom_properties["pushed"].int_value == 1
    return pushed.custom_properties["pushed_version"].string_value, pushed.id


# -- without a pipeline run -------------------------------------------------------------------------


def test_a_workspace_without_a_store_has_no_pushed_model(tmp_path, capsys):
    assert _cli_lineage(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("cvrank lineage: no pushed model: workspace ") and str(tmp_path) in err
    assert not os.path.exists(os.path.join(tmp_path, "metadata"))  # read only: nothing created


def test_a_store_without_pushes_has_no_pushed_model():
    with pytest.raises(lin.LineageError, match="no pushed model: nothing was pushed to "):
        lin.model_lineage(mlmd.empty_store(), PipelineConfig())


def test_render_without_graphviz_names_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which there is no `dot`
    with pytest.raises(lin.LineageError, match=r"Graphviz's `dot` is not installed.*--format dot"):
        lin.render("digraph g { a -> b }", "svg", str(tmp_path / "g.svg"))
    assert not (tmp_path / "g.svg").exists()


def test_render_reports_a_dot_syntax_error(tmp_path):
    with pytest.raises(lin.LineageError, match="Graphviz's dot failed"):
        lin.render("digraph g { a -> }", "svg", str(tmp_path / "g.svg"))


# -- on the tiny history: two runs, the second reusing everything upstream of GloveTrainer ------------


@pytest.fixture(scope="module")
def history(tiny_history):
    """(config, [first run id, second run id], store) of the shared tiny history. Other tests may add runs
    to it, so the tests name the versions these two runs pushed rather than "latest"."""
    assert tiny_history.exit_code == 0, tiny_history.output
    return tiny_history.config, tiny_history.run_ids, _store(tiny_history.config)


@pytest.mark.slow
def test_lineage_names_exactly_the_executions_and_artifacts_that_produced_the_model(history):
    config, run_ids, store = history
    for run_id in run_ids:
        version, pushed_id = _pushed_version(store, config.pipeline_name, run_id)
        lineage = lin.model_lineage(store, config, version)
        assert lineage.version == version and lineage.pushed_model.id == pushed_id
        assert lineage.pushing_run == run_id
        executions, artifacts = _producers_and_inputs(store, pushed_id)
        assert set(lineage.execution_ids) == executions
        assert set(lineage.artifact_ids) == artifacts
        assert {n.node_id for n in lineage.nodes.values()} == set(
            mlmd.upstream_nodes(store, pushed_id, config.pipeline_name))
        assert lineage.root.node_id == "Pusher" and lineage.root.state == lin.EXECUTED
        for node in lineage.nodes.values():
            for key, artifact in node.inputs:
                assert artifact.id in {a.id for a in mlmd.execution_inputs(store, node.execution_id)[key]}
            assert {n.execution_id for n in node.upstream} == {a.producer for _, a in node.inputs} - {None}

    # The first run executed everything its model came from.
    first = _run_executions(store, config.pipeline_name, run_ids[0])
    lineage = lin.model_lineage(store, config, _pushed_version(store, config.pipeline_name, run_ids[0])[0])
    assert set(lineage.execution_ids) == {e.id for n, e in first.items() if n not in NOT_IN_LINEAGE}
    assert {n.state for n in lineage.nodes.values()} == {lin.EXECUTED}


@pytest.mark.slow
def test_nodes_the_pushing_run_reused_are_cached_from_the_run_that_executed_them(history):
    config, (first_run, second_run), store = history
    first = _run_executions(store, config.pipeline_name, first_run)
    second = _run_executions(store, config.pipeline_name, second_run)
    states = mlmd.run_node_states(store, config.pipeline_name, second_run)
    lineage = lin.model_lineage(store, config, _pushed_version(store, config.pipeline_name, second_run)[0])
    assert lineage.pushing_run == second_run
    assert {n.state for n in lineage.nodes.values()} == {lin.EXECUTED, lin.CACHED, lin.OTHER_RUN}

    for node in lineage.nodes.values():
        if states[node.node_id] == "CACHED":
            assert (node.state, node.run_id) == (lin.CACHED, first_run), node
            assert node.execution_id == first[node.node_id].id
            assert node.cached_by == second[node.node_id].id
            assert node.state_text == f"cached: reused from run {first_run}"
        elif node.execution_id == second[node.node_id].id:
            assert states[node.node_id] == "COMPLETE"
            assert (node.state, node.run_id, node.cached_by) == (lin.EXECUTED, second_run, None), node
        else:  # the Evaluator's baseline: the first run's model, not reused by the second run
            baseline = mlmd.execution_inputs(store, second["Evaluator"].id)["baseline_model"][0]
            assert node.execution_id == mlmd.producer(store, baseline.id)[0].id == first["GloveTrainer"].id
            assert (node.state, node.run_id) == (lin.OTHER_RUN, first_run)
    assert {n.node_id for n in lineage.nodes.values() if n.state == lin.EXECUTED} == {
        n for n, s in states.items() if s == "COMPLETE" and n not in NOT_IN_LINEAGE}


@pytest.mark.slow
def test_each_node_carries_its_runs_commit_and_its_parameters(history):
    config, run_ids, store = history
    lineage = lin.model_lineage(store, config, _pushed_version(store, config.pipeline_name, run_ids[1])[0])
    checkout = provenance.code_properties()[provenance.GIT_COMMIT]
    for node in lineage.nodes.values():
        recorded = mlmd.run_properties(store, node.run_id)
        assert node.git_commit == recorded[provenance.GIT_COMMIT] == checkout
        dirty = "+dirty" if recorded[provenance.GIT_DIRTY] == "yes" else ""
        assert node.commit == checkout[:12] + dirty

    [trainer] = [n for n in lineage.by_node_id("GloveTrainer") if n.state == lin.EXECUTED]
    settings = provenance.settings_of(mlmd.run_properties(store, trainer.run_id))
    params = dict(trainer.parameters)
    for name in ("embedding_dim", "epochs", "batch_size"):
        assert params[name] == str(settings[name]), (name, params)
    for name in ("learning_rate", "x_max", "alpha", "seed"):
        assert float(params[name]) == float(getattr(config, name)), (name, params)

    [cooccurrence] = lineage.by_node_id("CooccurrenceGen")
    assert {k: dict(cooccurrence.parameters)[k] for k in ("window_size", "symmetric", "distance_weighting")} == {
        "window_size": str(config.window_size), "symmetric": str(int(config.symmetric)),
        "distance_weighting": str(int(config.distance_weighting))}
    # The vocabulary size counted from the transform graph is the one the co-occurrence matrix recorded.
    [transform] = lineage.by_node_id("Transform")
    [(_, matrix)] = cooccurrence.outputs
    recorded_size = store.get_artifacts_by_id([matrix.id])[0].properties["vocab_size"].int_value
    assert dict(transform.parameters)["vocabulary_size"].startswith(f"vocab {recorded_size:,}, terms ")

    for gen in (n for n in lineage.nodes.values() if n.node_id.endswith("_example_gen")):
        params = dict(gen.parameters)
        [execution] = store.get_executions_by_id([gen.execution_id])
        assert params["input_base"] == config.data_dir
        assert params["input_fingerprint"] == execution.custom_properties["input_fingerprint"].string_value
        assert gen.data_files, gen.node_id
        for entry in gen.data_files:  # FileCheck's fingerprints are those of the files read
            with open(entry["path"], "rb") as f:
                assert entry["sha256"] == hashlib.sha256(f.read()).hexdigest()
            assert os.path.relpath(entry["path"], config.data_dir).split(os.sep)[0] in params["input_config"]

    [evaluator] = lineage.by_node_id("Evaluator")
    outputs = dict(evaluator.outputs)
    evaluation = store.get_artifacts_by_id([outputs["evaluation"].id])[0]
    assert dict(outputs["evaluation"].properties)["map"] == f"{evaluation.custom_properties['map'].double_value:.6g}"
    assert dict(outputs["blessing"].properties)["blessed"] == "1"
    assert dict(lineage.pushed_model.properties)["pushed_version"] == lineage.version


@pytest.mark.slow
def test_text_names_every_node_and_dot_draws_every_node_through_graphviz(history, tmp_path):
    config, run_ids, store = history
    lineage = lin.model_lineage(store, config, _pushed_version(store, config.pipeline_name, run_ids[1])[0])
    text = lin.format_text(lineage)
    assert text.startswith(f"model version {lineage.version} of {config.pipeline_name}: "
                           f"PushedModel {lineage.pushed_model.id} at ")
    assert f"pushed by run {run_ids[1]}" in text
    for node in lineage.nodes.values():
        assert f"{node.node_id} (execution {node.execution_id})" in text
        assert node.commit in text
    assert text.count(" shown above") >= 1  # shared producers appear once, then by name

    dot_text = lin.to_dot(lineage)
    svg = lin.render(dot_text, "svg", str(tmp_path / "l.svg"))
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert {f"e{i}" for i in lineage.execution_ids} | {f"a{i}" for i in lineage.artifact_ids} <= titles
    edges = sum(len(n.inputs) + len(n.outputs) for n in lineage.nodes.values())
    assert sum(1 for t in titles if "->" in t) == edges
    png = lin.render(dot_text, "png", str(tmp_path / "sub" / "l.png"))
    with open(png, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 100 and height > 100


@pytest.mark.slow
def test_unknown_version_is_an_error_naming_it_and_the_pushed_ones(history, capsys):
    config, run_ids, store = history
    ours = [_pushed_version(store, config.pipeline_name, r)[0] for r in run_ids]
    with pytest.raises(lin.LineageError, match=rf"no pushed model version 9999 in {re.escape(config.serving_dir)} "
                                               r"\(pushed versions: [0-9, ]+\)") as raised:
        lin.model_lineage(store, config, "9999")
    listed = str(raised.value).rsplit("pushed versions: ", 1)[1].rstrip(")").split(", ")
    assert set(ours) <= set(listed) and listed == sorted(listed, key=int)
    with pytest.raises(lin.LineageError, match="'beta' is not a version number"):
        lin.model_lineage(store, config, "beta")
    assert _cli_lineage(config.workspace, version="9999") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cvrank lineage: workspace {config.workspace}: no pushed model version 9999 ")

    assert _cli_lineage(config.workspace, version=f"v{ours[0]}", fmt="dot") == 0
    out = capsys.readouterr().out
    assert out == lin.to_dot(lin.model_lineage(store, config, ours[0]))


@pytest.mark.slow
def test_cli_without_graphviz_exits_2_and_writes_nothing(history, tmp_path, monkeypatch, capsys):
    config, _, _ = history
    monkeypatch.setenv("PATH", str(tmp_path))
    assert _cli_lineage(config.workspace, fmt="png", output=str(tmp_path / "l.png")) == 2
    assert "`dot` is not installed" in capsys.readouterr().err
    assert not (tmp_path / "l.png").exists()


# -- an index update on top of a further run --------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(history, tmp_path_factory):
    """A copy of the tiny history's ML Metadata and served models with a third run (epochs=7: GloveTrainer
    on, everything upstream reused) and then `cvrank index` of the tiny CVs on its push. Returns (config,
    third run id, IndexResult)."""
    from orchestration import runner
    from pipeline.pipeline import create_pipeline
    from serving.index import update_index
    from tests.test_pipeline_e2e import TINY, tiny_config

    source, _, _ = history
    workspace = tmp_path_factory.mktemp("indexed")
    for part in ("metadata", "serving"):  # artifacts stay where the history's runs wrote them
        shutil.copytree(os.path.join(source.workspace, part), os.path.join(workspace, part))
    config = tiny_config(workspace, epochs=7)
    assert config.metadata_path != source.metadata_path
    run_id = runner.run_pipeline(create_pipeline(config), config=config)
    result = update_index([os.path.join(TINY, "cvs")], config.serving_dir, config.metadata_connection(),
                          config.pipeline_name)
    return config, run_id, result


@pytest.mark.slow
def test_an_index_update_is_the_top_and_its_source_push_continues_the_lineage(indexed):
    from serving.index import CV_FILE_TYPE, EXECUTION_TYPE

    config, run_id, result = indexed
    store = _store(config)
    lineage = lin.model_lineage(store, config, "latest")
    assert lineage.version == str(result.version)
    root = lineage.root
    assert (root.execution_id, root.node_id, root.state, root.run_id) == (
        result.execution_id, EXECUTION_TYPE, lin.OUTSIDE, None)
    assert lineage.pushing_run == run_id  # the run that pushed the version the update started from

    source_version, source_id = _pushed_version(store, config.pipeline_name, run_id)
    assert str(result.source_version) == source_version
    source = lin.model_lineage(store, config, source_version)
    cv_files = [a for key, a in root.inputs if key == "cvs"]
    assert [a.type for a in cv_files] == [CV_FILE_TYPE] and cv_files[0].producer is None
    with open(cv_files[0].uri, "rb") as f:
        assert dict(cv_files[0].properties)["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert set(lineage.execution_ids) == {result.execution_id} | set(source.execution_ids)
    assert set(lineage.artifact_ids) == {lineage.pushed_model.id, cv_files[0].id} | set(source.artifact_ids)
    assert [n.node_id for n in root.upstream] == ["Pusher"] and root.upstream[0].run_id == run_id
    assert (set(lineage.execution_ids), set(lineage.artifact_ids)) == _producers_and_inputs(
        store, lineage.pushed_model.id)

    # Below the Pusher, the states are relative to the third run: it reused everything up to the trainer.
    states = mlmd.run_node_states(store, config.pipeline_name, run_id)
    for node in lineage.nodes.values():
        if node is not root and node.run_id == run_id:
            assert node.state == lin.EXECUTED and states[node.node_id] == "COMPLETE"
        elif node is not root and node.state == lin.CACHED:
            assert states[node.node_id] == "CACHED"
    text = lin.format_text(lineage)
    assert f"pushed by {EXECUTION_TYPE} (execution {result.execution_id}) outside a pipeline run" in text
    assert f"\"this run\" below: run {run_id}" in text


@pytest.mark.slow
def test_a_picture_goes_to_the_workspace_reports_by_default(indexed, capsys):
    config, _, result = indexed
    assert _cli_lineage(config.workspace, fmt="svg") == 0
    path = capsys.readouterr().out.strip()
    assert path == os.path.join(config.workspace, "reports", f"lineage-v{result.version}.svg")
    assert ElementTree.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"

    assert _cli_lineage(config.workspace, version=str(result.version)) == 0
    text = capsys.readouterr().out
    assert text == lin.format_text(lin.model_lineage(_store(config), config, str(result.version)))
