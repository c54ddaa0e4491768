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
