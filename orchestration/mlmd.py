"""Reads what cvrank needs from ML Metadata: the executions of a run and their states, and lineage."""

from __future__ import annotations

from typing import Dict

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATE_NAMES = {
    v: k for k, v in metadata_store_pb2.Execution.State.items()
}


def sqlite_store(path: str) -> metadata_store.MetadataStore:
    """Opens (read-write, creating if missing) the SQLite ML Metadata store at `path`."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def run_node_states(store: metadata_store.MetadataStore, pipeline_name: str, run_id: str) -> Dict[str, str]:
    """Maps each node id executed in run `run_id` of `pipeline_name` to its execution state name
    (COMPLETE, CACHED, FAILED, RUNNING, ...). Nodes that did not start in that run are absent."""
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run_ctx is None:
        return {}
    states: Dict[str, str] = {}
    prefix = pipeline_name + "."
    for execution in store.get_executions_by_context(run_ctx.id):
        for ctx in store.get_contexts_by_execution(execution.id):
            if ctx.name.startswith(prefix) and store.get_context_types_by_id([ctx.type_id])[0].name == "node":
                states[ctx.name[len(prefix):]] = _STATE_NAMES[execution.last_known_state]
    return states


def run_node_outputs(store: metadata_store.MetadataStore, pipeline_name: str, run_id: str,
                     node_id: str) -> Dict[str, list]:
    """The output artifacts of `node_id`'s execution in run `run_id`, by output key. For a CACHED
    execution these are the reused artifacts of the earlier run."""
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    node_ctx = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if run_ctx is None or node_ctx is None:
        return {}
    node_execs = {e.id for e in store.get_executions_by_context(node_ctx.id)}
    execs = [e for e in store.get_executions_by_context(run_ctx.id) if e.id in node_execs]
    outputs: Dict[str, list] = {}
    if not execs:
        return outputs
    output_types = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    events = [ev for ev in store.get_events_by_execution_ids([execs[-1].id]) if ev.type in output_types]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in events])}
    for ev in events:
        key = ev.path.steps[0].key if ev.path.steps else ""
        if ev.artifact_id in artifacts:
            outputs.setdefault(key, []).append(artifacts[ev.artifact_id])
    return outputs


def upstream_nodes(store: metadata_store.MetadataStore, artifact_id: int, pipeline_name: str) -> Dict[str, int]:
    """Walks lineage upstream from an artifact: every node whose execution produced the artifact or,
    transitively, one of that execution's inputs. Returns {node id: distance in executions}."""
    prefix = pipeline_name + "."
    found: Dict[str, int] = {}
    frontier = [(artifact_id, 1)]
    seen_artifacts = set()
    while frontier:
        current, depth = frontier.pop(0)
        if current in seen_artifacts:
            continue
        seen_artifacts.add(current)
        producers = [ev.execution_id for ev in store.get_events_by_artifact_ids([current])
                     if ev.type == metadata_store_pb2.Event.OUTPUT]
        for execution_id in producers:
            for ctx in store.get_contexts_by_execution(execution_id):
                if ctx.name.startswith(prefix):
                    node = ctx.name[len(prefix):]
                    found[node] = min(found.get(node, depth), depth)
            for ev in store.get_events_by_execution_ids([execution_id]):
                if ev.type == metadata_store_pb2.Event.INPUT:
                    frontier.append((ev.artifact_id, depth + 1))
    return found


def producer(store: metadata_store.MetadataStore, artifact_id: int):
    """The execution that output artifact `artifact_id`, its type name and its inputs by key:
    (execution, type name, {input key: [artifacts]}), or None when no execution recorded it as an output."""
    events = [ev for ev in store.get_events_by_artifact_ids([artifact_id])
              if ev.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    if not events:
        return None
    [execution] = store.get_executions_by_id([events[-1].execution_id])
    [exec_type] = store.get_execution_types_by_id([execution.type_id])
    inputs: Dict[str, list] = {}
    in_events = [ev for ev in store.get_events_by_execution_ids([execution.id])
                 if ev.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in in_events])}
    for ev in in_events:
        key = ev.path.steps[0].key if ev.path.steps else ""
        inputs.setdefault(key, []).append(artifacts[ev.artifact_id])
    return execution, exec_type.name, inputs
