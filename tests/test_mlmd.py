"""metadata.mlmd against a real SQLite ML Metadata store, on a small graph recorded the way TFX records
a pipeline: "pipeline", "pipeline_run" and "node" contexts, node contexts named "<pipeline>.<node id>",
INPUT/OUTPUT events with [key, index] paths.

Two runs of pipeline "p":
    run-1  ExampleGen -> examples; Transform(examples) -> transform_graph, transformed_examples;
           Trainer(transformed_examples, transform_graph) -> model; Evaluator(model, examples) -> blessing;
           Pusher(model, blessing) -> pushed_model (PushedModel, pushed to <serving>/1)
    run-2  ExampleGen and Transform CACHED (re-recording run-1's artifacts), Trainer -> model2,
           resolver recording run-1's model as resolved (INTERNAL_OUTPUT, as TFX's Resolver does),
           Pusher(model2) FAILED without outputs.
"""

from __future__ import annotations

import os

import pytest
from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2 as pb

from metadata import mlmd
from serving import pushes

PIPELINE = "p"


class Graph:
    """A store holding the two runs; artifact and execution ids by name."""

    def __init__(self, store, serving_dir: str):
        self.store = store
        self.serving_dir = serving_dir
        self.ctx_types = {name: store.put_context_type(pb.ContextType(name=name))
                          for name in ("pipeline", "pipeline_run", "node")}
        self.art_type = store.put_artifact_type(pb.ArtifactType(name="Blob"))
        self.a = {}  # artifact name -> id
        self.e = {}  # (run id, node id) -> execution id

    def context(self, kind: str, name: str) -> pb.Context:
        found = self.store.get_context_by_type_and_name(kind, name)
        return found if found is not None else pb.Context(type_id=self.ctx_types[kind], name=name)

    def artifact(self, name: str, type_id=None, **props) -> pb.Artifact:
        if name in self.a:
            [artifact] = self.store.get_artifacts_by_id([self.a[name]])
            return artifact
        artifact = pb.Artifact(type_id=type_id or self.art_type, uri=f"/art/{name}", state=pb.Artifact.LIVE)
        for key, value in props.items():
            if isinstance(value, int):
                artifact.custom_properties[key].int_value = value
            else:
                artifact.custom_properties[key].string_value = value
        return artifact

    def run(self, run_id: str, node: str, state, inputs=(), outputs=(), internal_outputs=(), **artifact_types):
        exec_type = self.store.put_execution_type(pb.ExecutionType(name=f"tfx.{node}"))
        pairs = []
        for event_type, names in ((pb.Event.INPUT, inputs), (pb.Event.OUTPUT, outputs),
                                  (pb.Event.INTERNAL_OUTPUT, internal_outputs)):
            for key, name in names:
                event = pb.Event(type=event_type)
                event.path.steps.add().key = key
                event.path.steps.add().index = 0
                pairs.append((self.artifact(name, artifact_types.get(name)), event, name))
        contexts = [self.context("pipeline", PIPELINE), self.context("pipeline_run", run_id),
                    self.context("node", f"{PIPELINE}.{node}")]
        execution_id, artifact_ids, _ = self.store.put_execution(
            pb.Execution(type_id=exec_type, last_known_state=state), [(a, ev) for a, ev, _ in pairs], contexts,
            reuse_context_if_already_exist=True)
        for (_, _, name), artifact_id in zip(pairs, artifact_ids):
            self.a[name] = artifact_id
        self.e[(run_id, node)] = execution_id
        return execution_id


@pytest.fixture
def store(tmp_path):
    return mlmd.sqlite_store(str(tmp_path / "metadata.sqlite"))


@pytest.fixture
def graph(store, tmp_path):
    g = Graph(store, str(tmp_path / "serving"))
    pushed_type = store.put_artifact_type(pb.ArtifactType(name="PushedModel"))
    c, f = pb.Execution.COMPLETE, pb.Execution.FAILED
    g.run("run-1", "ExampleGen", c, outputs=[("examples", "examples")])
    g.run("run-1", "Transform", c, inputs=[("examples", "examples")],
          outputs=[("transform_graph", "transform_graph"), ("transformed_examples", "transformed_examples")])
    g.run("run-1", "Trainer", c, inputs=[("transformed_examples", "transformed_examples"),
                                         ("transform_graph", "transform_graph")], outputs=[("model", "model")])
    g.run("run-1", "Evaluator", c, inputs=[("model", "model"), ("examples", "examples")],
          outputs=[("blessing", "blessing")])
    pushed = g.artifact("pushed_model", pushed_type, pushed=1, pushed_version="1",
                        pushed_destination=os.path.join(g.serving_dir, "1"))
    g.a["pushed_model"] = store.put_artifacts([pushed])[0]
    g.run("run-1", "Pusher", c, inputs=[("model", "model"), ("model_blessing", "blessing")],
          outputs=[("pushed_model", "pushed_model")])
    cached = pb.Execution.CACHED
    g.run("run-2", "ExampleGen", cached, outputs=[("examples", "examples")])
    g.run("run-2", "Transform", cached, inputs=[("examples", "examples")],
          outputs=[("transform_graph", "transform_graph"), ("transformed_examples", "transformed_examples")])
    g.run("run-2", "Trainer", c, inputs=[("transformed_examples", "transformed_examples"),
                                         ("transform_graph", "transform_graph")], outputs=[("model", "model2")])
    g.run("run-2", "resolver", c, internal_outputs=[("model", "model")])
    g.run("run-2", "Pusher", f, inputs=[("model", "model2")])
    return g


def ids(artifacts_by_key):
    return {key: [a.id for a in artifacts] for key, artifacts in artifacts_by_key.items()}


# -- the store --------------------------------------------------------------------------------------


def test_mlmd_read_only_store_reads_and_never_creates_or_writes(tmp_path):
    path = str(tmp_path / "m.sqlite")
    with pytest.raises(FileNotFoundError, match="no ML Metadata store at .*m.sqlite"):
        mlmd.sqlite_store(path, read_only=True)
    assert not os.path.exists(path)
    mlmd.sqlite_store(path).put_artifact_type(pb.ArtifactType(name="A"))
    reader = mlmd.sqlite_store(path, read_only=True)
    assert reader.get_artifact_type("A").name == "A"
    with pytest.raises(errors.InternalError, match="attempt to write a readonly database"):
        reader.put_artifact_type(pb.ArtifactType(name="B"))


# -- executions of a pipeline and a run -------------------------------------------------------------


def test_mlmd_run_node_states_by_run(graph):
    assert mlmd.run_node_states(graph.store, PIPELINE, "run-1") == {
        "ExampleGen": "COMPLETE", "Transform": "COMPLETE", "Trainer": "COMPLETE", "Evaluator": "COMPLETE",
        "Pusher": "COMPLETE"}
    assert mlmd.run_node_states(graph.store, PIPELINE, "run-2") == {
        "ExampleGen": "CACHED", "Transform": "CACHED", "Trainer": "COMPLETE", "resolver": "COMPLETE",
        "Pusher": "FAILED"}
    assert mlmd.run_node_states(graph.store, PIPELINE, "run-3") == {}
    assert mlmd.run_node_states(graph.store, "other", "run-1") == {}


def test_mlmd_run_node_states_of_an_empty_store(store):
    assert mlmd.run_node_states(store, PIPELINE, "run-1") == {}


def test_mlmd_node_executions_over_all_runs(graph):
    assert [e.id for e in mlmd.node_executions(graph.store, PIPELINE, "ExampleGen")] == [
        graph.e[("run-1", "ExampleGen")], graph.e[("run-2", "ExampleGen")]]
    assert mlmd.node_executions(graph.store, PIPELINE, "Nope") == []


def test_mlmd_run_node_outputs(graph):
    a = graph.a
    assert ids(mlmd.run_node_outputs(graph.store, PIPELINE, "run-1", "Transform")) == {
        "transform_graph": [a["transform_graph"]], "transformed_examples": [a["transformed_examples"]]}
    # CACHED: the artifacts of run-1.
    assert ids(mlmd.run_node_outputs(graph.store, PIPELINE, "run-2", "ExampleGen")) == {"examples": [a["examples"]]}
    assert ids(mlmd.run_node_outputs(graph.store, PIPELINE, "run-2", "Trainer")) == {"model": [a["model2"]]}
    assert mlmd.run_node_outputs(graph.store, PIPELINE, "run-2", "Pusher") == {}
    assert mlmd.run_node_outputs(graph.store, PIPELINE, "run-2", "Evaluator") == {}
    assert mlmd.run_node_outputs(graph.store, PIPELINE, "run-2", "resolver") == {}
    assert mlmd.run_node_outputs(graph.store, PIPELINE, "run-3", "Trainer") == {}


def test_mlmd_execution_inputs_and_outputs_by_key_in_path_index_order(graph):
    a = graph.a
    trainer = graph.e[("run-1", "Trainer")]
    assert ids(mlmd.execution_inputs(graph.store, trainer)) == {
        "transformed_examples": [a["transformed_examples"]], "transform_graph": [a["transform_graph"]]}
    assert ids(mlmd.execution_outputs(graph.store, trainer)) == {"model": [a["model"]]}

    # Events written out of index order come back in index order.
    store = graph.store
    split_ids = store.put_artifacts([graph.artifact(f"split-{k}") for k in range(3)])
    splitter_type = store.put_execution_type(pb.ExecutionType(name="Splitter"))
    events = []
    for artifact_id, index in zip(split_ids, (2, 0, 1)):
        event = pb.Event(type=pb.Event.OUTPUT, artifact_id=artifact_id)
        event.path.steps.add().key = "splits"
        event.path.steps.add().index = index
        events.append((pb.Artifact(id=artifact_id, type_id=graph.art_type), event))
    execution_id, _, _ = store.put_execution(pb.Execution(type_id=splitter_type), events, [])
    assert ids(mlmd.execution_outputs(store, execution_id)) == {"splits": [split_ids[1], split_ids[2], split_ids[0]]}
    assert mlmd.execution_inputs(store, execution_id) == {}


# -- lineage ----------------------------------------------------------------------------------------


def test_mlmd_get_lineage_subgraph_cannot_select_starting_nodes_in_ml_metadata_1_21(graph):
    """The MLMD call `lineage_subgraph` tries first: in 1.21 starting nodes are chosen only by a filter
    query, and filter queries are unimplemented. When this test fails, the call works in the installed
    ml-metadata and `lineage_subgraph` returns its result instead of walking events."""
    options = pb.LineageSubgraphQueryOptions(max_num_hops=2, direction=pb.LineageSubgraphQueryOptions.UPSTREAM)
    options.starting_artifacts.filter_query = f"id = {graph.a['model']}"
    with pytest.raises(errors.UnimplementedError, match="filter_query is not supported - ZetaSQL dependency removed"):
        graph.store.get_lineage_subgraph(options)
    options.starting_artifacts.filter_query = ""
    with pytest.raises(errors.InvalidArgumentError, match="Cannot list starting nodes if `filter_query` is unspecified"):
        graph.store.get_lineage_subgraph(options)
    assert [f.name for f in pb.LineageSubgraphQueryOptions.StartingNodes.DESCRIPTOR.fields] == ["filter_query"]


def graph_ids(lineage):
    return ([a.id for a in lineage.artifacts], [e.id for e in lineage.executions],
            [(ev.artifact_id, ev.execution_id, ev.type) for ev in lineage.events])


def test_mlmd_lineage_subgraph_upstream_by_hops(graph):
    a, e, IN, OUT = graph.a, graph.e, pb.Event.INPUT, pb.Event.OUTPUT
    trainer = e[("run-1", "Trainer")]
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["model"]], max_num_hops=0)) == ([a["model"]], [], [])
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["model"]], max_num_hops=1)) == (
        [a["model"]], [trainer], [(a["model"], trainer, OUT)])
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["model"]], max_num_hops=2)) == (
        sorted([a["model"], a["transform_graph"], a["transformed_examples"]]), [trainer],
        sorted([(a["model"], trainer, OUT), (a["transform_graph"], trainer, IN),
                (a["transformed_examples"], trainer, IN)]))
    transforms = [e[("run-1", "Transform")], e[("run-2", "Transform")]]
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["model"]], max_num_hops=3))[1] == sorted(
        [trainer] + transforms)
    full = mlmd.lineage_subgraph(graph.store, [a["model"]])
    examplegens = [e[("run-1", "ExampleGen")], e[("run-2", "ExampleGen")]]
    assert graph_ids(full)[:2] == (
        sorted([a["examples"], a["transform_graph"], a["transformed_examples"], a["model"]]),
        sorted(examplegens + transforms + [trainer]))
    # model<-Trainer, Trainer's 2 inputs, each output by both Transforms, their inputs, examples<-2 ExampleGens.
    assert len(full.events) == 1 + 2 + 2 * 2 + 2 * 1 + 2


def test_mlmd_lineage_subgraph_downstream_and_bidirectional(graph):
    a, e = graph.a, graph.e
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["model"]], mlmd.DOWNSTREAM))[:2] == (
        sorted([a["model"], a["blessing"], a["pushed_model"]]),
        [e[("run-1", "Evaluator")], e[("run-1", "Pusher")]])
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["model"]], mlmd.BIDIRECTIONAL, max_num_hops=1))[:2] == (
        [a["model"]], [e[("run-1", "Trainer")], e[("run-1", "Evaluator")], e[("run-1", "Pusher")]])
    # Two hops both ways from the blessing: its Evaluator, then the Evaluator's other artifacts; and its Pusher,
    # then the Pusher's other artifacts.
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [a["blessing"]], mlmd.BIDIRECTIONAL, max_num_hops=2))[:2] == (
        sorted([a["blessing"], a["model"], a["examples"], a["pushed_model"]]),
        [e[("run-1", "Evaluator")], e[("run-1", "Pusher")]])


def test_mlmd_lineage_subgraph_arguments(graph):
    assert graph_ids(mlmd.lineage_subgraph(graph.store, [])) == ([], [], [])
    with pytest.raises(ValueError, match="101 starting artifacts; lineage starts from at most 100"):
        mlmd.lineage_subgraph(graph.store, range(1, 102))
    with pytest.raises(ValueError, match="max_num_hops must be >= 0, not -1"):
        mlmd.lineage_subgraph(graph.store, [1], max_num_hops=-1)


class _StoreWithLineageQueries:
    """The real store, with a get_lineage_subgraph that answers: the case of an ml-metadata build with filter
    queries."""

    def __init__(self, store, answer):
        self._store, self._answer, self.calls = store, answer, []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def get_lineage_subgraph(self, options, field_mask_paths=None):
        self.calls.append((options, field_mask_paths))
        return self._answer


def test_mlmd_lineage_subgraph_uses_ml_metadata_when_it_answers(graph):
    answer = pb.LineageGraph()
    answer.artifacts.add(id=9)
    answer.artifacts.add(id=4)
    answer.executions.add(id=3)
    answer.events.add(artifact_id=9, execution_id=3, type=pb.Event.INPUT)
    answer.events.add(artifact_id=4, execution_id=3, type=pb.Event.OUTPUT)
    store = _StoreWithLineageQueries(graph.store, answer)
    result = mlmd.lineage_subgraph(store, [5, 3, 5], mlmd.DOWNSTREAM, max_num_hops=7)
    [(options, mask)] = store.calls
    assert options.starting_artifacts.filter_query == "id IN (3, 5)"
    assert (options.max_num_hops, options.direction) == (7, pb.LineageSubgraphQueryOptions.DOWNSTREAM)
    assert mask == ["artifacts", "executions", "events"]
    assert graph_ids(result) == ([4, 9], [3], [(4, 3, pb.Event.OUTPUT), (9, 3, pb.Event.INPUT)])


def test_mlmd_upstream_nodes_with_distances(graph):
    a = graph.a
    assert mlmd.upstream_nodes(graph.store, a["pushed_model"], PIPELINE) == {
        "Pusher": 1, "Trainer": 2, "Evaluator": 2, "Transform": 3, "ExampleGen": 3}
    assert mlmd.upstream_nodes(graph.store, a["model"], PIPELINE) == {"Trainer": 1, "Transform": 2, "ExampleGen": 3}
    assert mlmd.upstream_nodes(graph.store, a["examples"], PIPELINE) == {"ExampleGen": 1}
    assert mlmd.upstream_nodes(graph.store, a["model"], "other") == {}


def test_mlmd_producer_is_the_first_execution_that_output_the_artifact(graph):
    a, e = graph.a, graph.e
    execution, type_name, inputs = mlmd.producer(graph.store, a["model"])
    assert (execution.id, type_name, ids(inputs)) == (
        e[("run-1", "Trainer")], "tfx.Trainer",
        {"transformed_examples": [a["transformed_examples"]], "transform_graph": [a["transform_graph"]]})
    # run-2's CACHED ExampleGen recorded the examples again; the creator is run-1's.
    execution, type_name, inputs = mlmd.producer(graph.store, a["examples"])
    assert (execution.id, execution.last_known_state, type_name, inputs) == (
        e[("run-1", "ExampleGen")], pb.Execution.COMPLETE, "tfx.ExampleGen", {})
    assert mlmd.producer(graph.store, graph.store.put_artifacts([graph.artifact("orphan")])[0]) is None


# -- pushed models and recording executions ---------------------------------------------------------


def test_mlmd_new_artifact_registers_its_type_and_is_not_stored(store):
    # A type registered with properties (as TFX does for some) is reused as it is.
    with_props = pb.ArtifactType(name="Model")
    with_props.properties["span"] = pb.INT
    model_type = store.put_artifact_type(with_props)
    artifact = mlmd.new_artifact(store, "Model", "/m/1", {"s": "x", "i": 3, "f": 0.5, "b": True})
    assert artifact.type_id == model_type and not artifact.HasField("id")
    assert (artifact.uri, artifact.state) == ("/m/1", pb.Artifact.LIVE)
    assert {k: v.WhichOneof("value") for k, v in artifact.custom_properties.items()} == {
        "s": "string_value", "i": "int_value", "f": "double_value", "b": "bool_value"}
    assert (artifact.custom_properties["s"].string_value, artifact.custom_properties["i"].int_value,
            artifact.custom_properties["f"].double_value, artifact.custom_properties["b"].bool_value) == (
        "x", 3, 0.5, True)
    fresh = mlmd.new_artifact(store, "cvrank.New", "/n")
    assert store.get_artifact_type("cvrank.New").id == fresh.type_id
    assert store.get_artifacts() == []
    with pytest.raises(TypeError, match="custom property 'l': list is not str, int, float or bool"):
        mlmd.new_artifact(store, "Model", "/m/2", {"l": [1]})


def event_rows(store, execution_id):
    return [(ev.type, ev.path.steps[0].key, ev.path.steps[1].index, ev.artifact_id)
            for ev in sorted(store.get_events_by_execution_ids([execution_id]), key=lambda ev: ev.artifact_id)]


def test_mlmd_put_execution_with_lineage_and_finish_execution(graph):
    store, a = graph.store, graph.a
    [source] = store.get_artifacts_by_id([a["pushed_model"]])
    cv_1 = mlmd.new_artifact(store, "cvrank.CvFile", "/cvs/1.csv", {"sha256": "1" * 64})
    cv_2 = mlmd.new_artifact(store, "cvrank.CvFile", "/cvs/2.csv", {"sha256": "2" * 64})
    out = mlmd.new_artifact(store, "PushedModel", "/serving/2", {"pushed": 1})
    execution_id = mlmd.put_execution_with_lineage(
        store, "cvrank.CvIndexUpdate", PIPELINE, [("source_model", source), ("cvs", cv_1), ("cvs", cv_2)],
        [("pushed_model", out)], {"pushed_version": "2"})
    [execution] = store.get_executions_by_id([execution_id])
    assert store.get_execution_types_by_id([execution.type_id])[0].name == "cvrank.CvIndexUpdate"
    assert execution.last_known_state == pb.Execution.RUNNING
    assert dict(execution.custom_properties) == {"pushed_version": pb.Value(string_value="2")}
    # The pipeline's existing context, no other.
    assert [(c.id, c.name) for c in store.get_contexts_by_execution(execution_id)] == [
        (graph.store.get_context_by_type_and_name("pipeline", PIPELINE).id, PIPELINE)]
    cv_ids = [x.id for x in store.get_artifacts_by_type("cvrank.CvFile")]
    [out_id] = [x.id for x in store.get_artifacts_by_uri("/serving/2")]
    assert event_rows(store, execution_id) == [
        (pb.Event.INPUT, "source_model", 0, a["pushed_model"]), (pb.Event.INPUT, "cvs", 0, cv_ids[0]),
        (pb.Event.INPUT, "cvs", 1, cv_ids[1]), (pb.Event.OUTPUT, "pushed_model", 0, out_id)]
    assert [x.uri for x in store.get_artifacts_by_id(cv_ids)] == ["/cvs/1.csv", "/cvs/2.csv"]

    # Its lineage goes through the update to the pipeline's nodes.
    assert mlmd.upstream_nodes(store, out_id, PIPELINE) == {
        "Pusher": 2, "Trainer": 3, "Evaluator": 3, "Transform": 4, "ExampleGen": 4}
    _, type_name, inputs = mlmd.producer(store, out_id)
    assert (type_name, ids(inputs)) == ("cvrank.CvIndexUpdate", {"source_model": [a["pushed_model"]],
                                                                 "cvs": cv_ids})

    mlmd.finish_execution(store, execution_id, pb.Execution.COMPLETE)
    assert store.get_executions_by_id([execution_id])[0].last_known_state == pb.Execution.COMPLETE
    with pytest.raises(LookupError, match="no execution 999 in ML Metadata"):
        mlmd.finish_execution(store, 999, pb.Execution.FAILED)


def test_mlmd_put_execution_with_lineage_creates_the_pipeline_context(store):
    execution_id = mlmd.put_execution_with_lineage(
        store, "Step", "fresh", [], [("out", mlmd.new_artifact(store, "Thing", "/t"))], state=pb.Execution.COMPLETE)
    [ctx] = store.get_contexts_by_execution(execution_id)
    assert (ctx.name, store.get_context_types_by_id([ctx.type_id])[0].name) == ("fresh", "pipeline")
    assert store.get_executions_by_id([execution_id])[0].last_known_state == pb.Execution.COMPLETE


def test_index_records_its_update_through_mlmd(graph, tmp_path):
    """serving.index's record of an update: the source version's PushedModel and the CV files (with SHA-256)
    in, a new PushedModel out, in the pipeline context."""
    from serving import index

    store, a = graph.store, graph.a
    cv_path = tmp_path / "cvs.csv"
    cv_path.write_bytes(b"cv_id,text\ncv-1,nurse\n")
    final_dir = os.path.join(graph.serving_dir, "7")
    manifest = {"saved_model.pb": {"bytes": 3, "sha256": "ab"}}
    execution_id = index._record(store, PIPELINE, os.path.join(graph.serving_dir, "1"), [str(cv_path)], final_dir,
                                 7, manifest, 1, 5)
    pushed = pushes.push_records(store, graph.serving_dir)[7].artifact
    execution, type_name, inputs = mlmd.producer(store, pushed.id)
    assert (execution.id, type_name, execution.last_known_state) == (
        execution_id, "cvrank.CvIndexUpdate", pb.Execution.COMPLETE)
    assert {k: v.string_value for k, v in execution.custom_properties.items()} == {
        "source_version": "1", "pushed_version": "7"}
    [cv_file] = inputs["cvs"]
    assert (cv_file.uri, cv_file.custom_properties["sha256"].string_value) == (
        str(cv_path), "3c8ff43821fbdbcb5ff740c3e0ab5b93a272049d2b5c4fe0a31e67be0e76f283")
    assert [x.id for x in inputs["source_model"]] == [a["pushed_model"]]
    assert {k: getattr(v, v.WhichOneof("value")) for k, v in pushed.custom_properties.items()} == {
        "pushed": 1, "pushed_version": "7", "pushed_destination": final_dir, "index_size": 5, "cvs_added": 1,
        "cvrank_manifest": '{"saved_model.pb":{"bytes":3,"sha256":"ab"}}'}


def test_mlmd_record_run_keeps_what_a_run_recorded_first(store):
    mlmd.record_run(store, "run-1", {"git_commit": "abc", "settings": "{}"})
    mlmd.record_run(store, "run-1", {"git_commit": "def", "git_dirty": "no"})  # a retried node
    assert mlmd.run_properties(store, "run-1") == {"git_commit": "abc", "settings": "{}", "git_dirty": "no"}
    assert len(store.get_contexts_by_type("pipeline_run")) == 1
    assert mlmd.run_properties(store, "no-such-run") == {}


def test_mlmd_record_run_adds_to_a_context_tfx_created(graph):
    store = graph.store
    [run_id] = [c.name for c in store.get_contexts_by_type("pipeline_run")][:1]
    before = {e.id for e in store.get_executions_by_context(store.get_context_by_type_and_name("pipeline_run", run_id).id)}
    mlmd.record_run(store, run_id, {"git_commit": "abc"})
    context = store.get_context_by_type_and_name("pipeline_run", run_id)
    assert mlmd.run_properties(store, run_id)["git_commit"] == "abc"
    assert {e.id for e in store.get_executions_by_context(context.id)} == before
