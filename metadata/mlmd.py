"""cvrank's one module for ML Metadata: opening the store, the executions of a run and their states, the
artifacts an execution consumed and produced, lineage, and recording executions cvrank runs itself
(`cvrank index`).

Contexts are TFX's: a "pipeline" context named after the pipeline, a "pipeline_run" context per run
(named by run id) and a "node" context per pipeline node named "<pipeline>.<node id>". Input and
output keys are the first step of an event's path, as TFX records them.

Lineage goes through `MetadataStore.get_lineage_subgraph`. In ml-metadata 1.21 that call selects its
starting nodes only with a `filter_query`, and filter queries were removed with ZetaSQL (the call
raises `UnimplementedError`); `lineage_subgraph` then builds the same subgraph from events.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ml_metadata import errors, metadata_store
from ml_metadata.proto import metadata_store_pb2

Artifact = metadata_store_pb2.Artifact
Event = metadata_store_pb2.Event
Execution = metadata_store_pb2.Execution
LineageGraph = metadata_store_pb2.LineageGraph
Direction = metadata_store_pb2.LineageSubgraphQueryOptions.Direction
UPSTREAM = metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM
DOWNSTREAM = metadata_store_pb2.LineageSubgraphQueryOptions.DOWNSTREAM
BIDIRECTIONAL = metadata_store_pb2.LineageSubgraphQueryOptions.BIDIRECTIONAL

PUSHED_MODEL_TYPE = "PushedModel"  # TFX's type name
# A string custom property of an output artifact: a JSON list of sentences, the data warnings of the node
# that produced it ("[]" when none). FileCheck and DataCheck set it; the run summary prints it.
WARNINGS_PROPERTY = "warnings"
MAX_STARTING_NODES = 100  # get_lineage_subgraph's limit
MAX_NUM_HOPS = 100  # TFX's limit for lineage tracing

_STATE_NAMES = {v: k for k, v in Execution.State.items()}
# What an execution consumed and produced (run_node_outputs, producer, execution_inputs/outputs).
_CONSUMED = (Event.INPUT, Event.DECLARED_INPUT)
_PRODUCED = (Event.OUTPUT, Event.DECLARED_OUTPUT)
# The edges a lineage walk follows, as TFX's own walk does. INTERNAL_INPUT/INTERNAL_OUTPUT are left out:
# a Resolver records the artifacts it resolved as INTERNAL_OUTPUT, it did not produce them.
_INPUT_EDGES = frozenset({Event.INPUT, Event.DECLARED_INPUT})
_OUTPUT_EDGES = frozenset({Event.OUTPUT, Event.DECLARED_OUTPUT, Event.PENDING_OUTPUT})

PropertyValue = Union[str, int, float, bool]


# -- the store --------------------------------------------------------------------------------------


def sqlite_store(path: str, read_only: bool = False) -> metadata_store.MetadataStore:
    """The SQLite ML Metadata store at `path`. Read-write, creating the file if missing; with `read_only`
    the file is never created, written or migrated, and a missing file raises FileNotFoundError."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    if read_only:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no ML Metadata store at {path}")
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    else:
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def open_store(connection: metadata_store_pb2.ConnectionConfig,
               read_only: bool = False) -> metadata_store.MetadataStore:
    """The store of `connection` (SQLite or PostgreSQL, as TFX's pipelines are configured). A SQLite store
    is opened as `sqlite_store` does (its directory created unless `read_only`); a PostgreSQL database is
    created on first use unless `read_only`."""
    if connection.WhichOneof("config") == "sqlite":
        if not read_only:
            prepare_location(connection)
        return sqlite_store(connection.sqlite.filename_uri, read_only=read_only)
    if read_only:
        connection = metadata_store_pb2.ConnectionConfig.FromString(connection.SerializeToString())
        connection.postgresql.skip_db_creation = True
    return metadata_store.MetadataStore(connection)


def prepare_location(connection: metadata_store_pb2.ConnectionConfig) -> None:
    """Creates the directory of a SQLite store (TFX opens the file, not its directory); nothing for a server."""
    if connection.WhichOneof("config") == "sqlite":
        os.makedirs(os.path.dirname(os.path.abspath(connection.sqlite.filename_uri)), exist_ok=True)


def has_store(connection: metadata_store_pb2.ConnectionConfig) -> bool:
    """Whether anything may already be recorded: a SQLite file exists; a server database always may."""
    if connection.WhichOneof("config") == "sqlite":
        return os.path.exists(connection.sqlite.filename_uri)
    return True


def describe(connection: metadata_store_pb2.ConnectionConfig) -> str:
    """Where a store lives, for messages: the SQLite path, or postgresql://user@host:port/db (no password)."""
    if connection.WhichOneof("config") == "sqlite":
        return connection.sqlite.filename_uri
    pg = connection.postgresql
    return f"postgresql://{pg.user + '@' if pg.user else ''}{pg.host}:{pg.port}/{pg.dbname}"


def empty_store() -> metadata_store.MetadataStore:
    """An empty in-memory store: what a reader sees of a workspace that has no store yet."""
    config = metadata_store_pb2.ConnectionConfig()
    config.fake_database.SetInParent()
    return metadata_store.MetadataStore(config)


# -- executions of a pipeline and a run -------------------------------------------------------------


def node_executions(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str) -> List[Execution]:
    """Every execution of node `node_id` of `pipeline_name`, over all runs, oldest first; [] when the node
    never ran."""
    ctx = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if ctx is None:
        return []
    return sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)


def run_node_states(store: metadata_store.MetadataStore, pipeline_name: str, run_id: str) -> Dict[str, str]:
    """Maps each node id executed in run `run_id` of `pipeline_name` to its execution state name
    (COMPLETE, CACHED, FAILED, RUNNING, ...). Nodes that did not start in that run are absent."""
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run_ctx is None:
        return {}
    node_type_id = _context_type_id(store, "node")
    prefix = pipeline_name + "."
    states: Dict[str, str] = {}
    for execution in sorted(store.get_executions_by_context(run_ctx.id), key=lambda e: e.id):
        for ctx in store.get_contexts_by_execution(execution.id):
            if ctx.type_id == node_type_id and ctx.name.startswith(prefix):
                states[ctx.name[len(prefix):]] = _STATE_NAMES[execution.last_known_state]
    return states


def _artifacts_by_key(store: metadata_store.MetadataStore, execution_id: int, event_types) -> Dict[str, List[Artifact]]:
    events = [ev for ev in store.get_events_by_execution_ids([execution_id]) if ev.type in event_types]
    # TFX's paths are [key, index]: list artifacts in index order under each key.
    events.sort(key=lambda ev: ev.path.steps[1].index if len(ev.path.steps) > 1 else 0)
    artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted({ev.artifact_id for ev in events}))}
    found: Dict[str, List[Artifact]] = {}
    for ev in events:
        if ev.artifact_id in artifacts:
            found.setdefault(ev.path.steps[0].key if ev.path.steps else "", []).append(artifacts[ev.artifact_id])
    return found


def execution_inputs(store: metadata_store.MetadataStore, execution_id: int) -> Dict[str, List[Artifact]]:
    """The artifacts execution `execution_id` consumed (INPUT and DECLARED_INPUT events), by input key."""
    return _artifacts_by_key(store, execution_id, _CONSUMED)


def execution_outputs(store: metadata_store.MetadataStore, execution_id: int) -> Dict[str, List[Artifact]]:
    """The artifacts execution `execution_id` output (OUTPUT and DECLARED_OUTPUT events), by output key."""
    return _artifacts_by_key(store, execution_id, _PRODUCED)


def run_node_outputs(store: metadata_store.MetadataStore, pipeline_name: str, run_id: str,
                     node_id: str) -> Dict[str, List[Artifact]]:
    """The output artifacts of `node_id`'s execution in run `run_id`, by output key ({} when the node did
    not run then). For a CACHED execution these are the reused artifacts of the earlier run. When the node
    has several executions in the run, the newest one counts."""
    run_ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if run_ctx is None:
        return {}
    in_run = {e.id for e in store.get_executions_by_context(run_ctx.id)}
    execs = [e for e in node_executions(store, pipeline_name, node_id) if e.id in in_run]
    return execution_outputs(store, execs[-1].id) if execs else {}


# -- lineage ----------------------------------------------------------------------------------------


def lineage_subgraph(store: metadata_store.MetadataStore, artifact_ids: Sequence[int],
                     direction: Direction = UPSTREAM, max_num_hops: int = MAX_NUM_HOPS) -> LineageGraph:
    """The lineage subgraph around the artifacts `artifact_ids` (at most MAX_STARTING_NODES): every artifact
    and execution within `max_num_hops` of them (artifact -> execution is one hop) following events in
    `direction` (UPSTREAM: an artifact's producers, an execution's inputs; DOWNSTREAM: the reverse;
    BIDIRECTIONAL: both). Edges are INPUT/DECLARED_INPUT and OUTPUT/DECLARED_OUTPUT/PENDING_OUTPUT events;
    INTERNAL_INPUT/INTERNAL_OUTPUT ones (a Resolver's) are not lineage. The starting artifacts are included. Returns a LineageGraph with `artifacts`,
    `executions` and `events` filled (no contexts or types), each in id order (events by artifact, then
    execution, then type). Raises ValueError for more than MAX_STARTING_NODES artifacts or negative hops."""
    ids = sorted(set(artifact_ids))
    if len(ids) > MAX_STARTING_NODES:
        raise ValueError(f"{len(ids)} starting artifacts; lineage starts from at most {MAX_STARTING_NODES}")
    if max_num_hops < 0:
        raise ValueError(f"max_num_hops must be >= 0, not {max_num_hops}")
    if not ids:
        return LineageGraph()
    options = metadata_store_pb2.LineageSubgraphQueryOptions(max_num_hops=max_num_hops, direction=direction)
    options.starting_artifacts.filter_query = f"id IN ({', '.join(map(str, ids))})"
    try:
        graph = store.get_lineage_subgraph(options, ["artifacts", "executions", "events"])
    except errors.UnimplementedError:
        # ml-metadata 1.21: "filter_query is not supported - ZetaSQL dependency removed".
        graph = _walk_lineage(store, ids, direction, max_num_hops)
    return _sorted_graph(graph)


def _walk_lineage(store: metadata_store.MetadataStore, artifact_ids: List[int], direction: Direction,
                  max_num_hops: int) -> LineageGraph:
    """get_lineage_subgraph's result, hop by hop from events, for builds where the call is unavailable."""
    def follows(ev: Event, from_artifact: bool) -> bool:
        if direction not in (UPSTREAM, DOWNSTREAM):  # BIDIRECTIONAL, or unspecified which means the same
            return ev.type in _INPUT_EDGES or ev.type in _OUTPUT_EDGES
        # Upstream an artifact leads to its producers and an execution to its inputs; downstream the reverse.
        toward_producers = (direction == UPSTREAM) == from_artifact
        return ev.type in (_OUTPUT_EDGES if toward_producers else _INPUT_EDGES)

    artifacts, executions = set(artifact_ids), set()
    events: Dict[bytes, Event] = {}  # an event is seen from both its ends
    frontier, at_artifacts = set(artifact_ids), True
    for _ in range(max_num_hops):
        if not frontier:
            break
        found = (store.get_events_by_artifact_ids if at_artifacts else store.get_events_by_execution_ids)(
            sorted(frontier))
        followed = [ev for ev in found if follows(ev, at_artifacts)]
        for ev in followed:
            events[ev.SerializeToString(deterministic=True)] = ev
        reached = {ev.execution_id if at_artifacts else ev.artifact_id for ev in followed}
        seen = executions if at_artifacts else artifacts
        frontier = reached - seen
        seen.update(reached)
        at_artifacts = not at_artifacts
    graph = LineageGraph()
    graph.artifacts.extend(store.get_artifacts_by_id(sorted(artifacts)))
    graph.executions.extend(store.get_executions_by_id(sorted(executions)))
    graph.events.extend(events.values())
    return graph


def _sorted_graph(graph: LineageGraph) -> LineageGraph:
    result = LineageGraph()
    result.artifacts.extend(sorted(graph.artifacts, key=lambda a: a.id))
    result.executions.extend(sorted(graph.executions, key=lambda e: e.id))
    result.events.extend(sorted(graph.events, key=lambda ev: (ev.artifact_id, ev.execution_id, ev.type)))
    return result


def upstream_nodes(store: metadata_store.MetadataStore, artifact_id: int, pipeline_name: str) -> Dict[str, int]:
    """Every node of `pipeline_name` whose execution produced artifact `artifact_id` or, transitively, one
    of that execution's inputs, with its distance in executions ({node id: 1} for the producer's node, 2
    for the producers of its inputs, ...; the shortest when a node is reached several ways). Produced means
    an OUTPUT or DECLARED_OUTPUT event (a Resolver that resolved the artifact is not listed). Executions
    outside a node context (e.g. `cvrank index` updates) are crossed but not listed. Lineage further than
    MAX_NUM_HOPS hops (half as many executions) is not followed."""
    graph = lineage_subgraph(store, [artifact_id], UPSTREAM)
    producers: Dict[int, List[int]] = {}
    inputs: Dict[int, List[int]] = {}
    for ev in graph.events:  # only what was produced and consumed, whatever edges the subgraph holds
        if ev.type in _PRODUCED:
            producers.setdefault(ev.artifact_id, []).append(ev.execution_id)
        elif ev.type in _CONSUMED:
            inputs.setdefault(ev.execution_id, []).append(ev.artifact_id)
    # The subgraph holds the edges; distances are counted on it, breadth first.
    distance: Dict[int, int] = {}
    frontier, depth = [artifact_id], 0
    while frontier:
        depth += 1
        reached = {e for a in frontier for e in producers.get(a, []) if e not in distance}
        for execution_id in reached:
            distance[execution_id] = depth
        frontier = sorted({a for e in reached for a in inputs.get(e, [])})
    node_type_id = _context_type_id(store, "node")
    prefix = pipeline_name + "."
    found: Dict[str, int] = {}
    for execution_id, d in sorted(distance.items(), key=lambda item: item[1]):
        for ctx in store.get_contexts_by_execution(execution_id):
            if ctx.type_id == node_type_id and ctx.name.startswith(prefix):
                found.setdefault(ctx.name[len(prefix):], d)
    return found


def _context_type_id(store: metadata_store.MetadataStore, name: str) -> Optional[int]:
    try:
        return store.get_context_type(name).id
    except errors.NotFoundError:
        return None


def producer(store: metadata_store.MetadataStore, artifact_id: int):
    """The execution that created artifact `artifact_id`, its type name and its inputs by key:
    (execution, type name, {input key: [artifacts]}), or None when no execution output it. The creator is
    the first execution that recorded the artifact as an output: CACHED executions of later runs record
    the same artifact again."""
    execution_ids = [ev.execution_id for ev in store.get_events_by_artifact_ids([artifact_id])
                     if ev.type in _PRODUCED]
    if not execution_ids:
        return None
    [execution] = store.get_executions_by_id([min(execution_ids)])
    [exec_type] = store.get_execution_types_by_id([execution.type_id])
    return execution, exec_type.name, execution_inputs(store, execution.id)


# -- pushed models ----------------------------------------------------------------------------------


# -- what TFX's Evaluator and Pusher record ----------------------------------------------------------


def blessed(blessing: Optional[Artifact]) -> Optional[bool]:
    """Whether a ModelBlessing artifact blesses its model (its `blessed` property); None without one."""
    if blessing is None or "blessed" not in blessing.custom_properties:
        return None
    return bool(blessing.custom_properties["blessed"].int_value)


def pushed_version(pushed_model: Optional[Artifact]) -> Optional[str]:
    """The version a PushedModel artifact records as pushed (`pushed` = 1 and `pushed_version`), or None
    when it records no push (not blessed) or there is no artifact."""
    if pushed_model is None:
        return None
    props = pushed_model.custom_properties
    if "pushed" not in props or props["pushed"].int_value != 1 or "pushed_version" not in props:
        return None
    return props["pushed_version"].string_value


# -- runs -------------------------------------------------------------------------------------------


def record_run(store: metadata_store.MetadataStore, run_id: str, properties: Mapping[str, PropertyValue]) -> None:
    """Creates the "pipeline_run" context `run_id` if it does not exist (TFX's launcher then uses it) and
    sets those of `properties` it does not have yet as custom properties (values as for `new_artifact`):
    what a run recorded first stays, so a retried node cannot rewrite its run's record."""
    context = store.get_context_by_type_and_name("pipeline_run", run_id)
    if context is None:
        context = metadata_store_pb2.Context(type_id=_type_id(store, metadata_store_pb2.ContextType, "pipeline_run"),
                                             name=run_id)
    missing = {k: v for k, v in properties.items() if k not in context.custom_properties}
    if not missing and context.HasField("id"):
        return
    _set_properties(context.custom_properties, missing)
    try:
        store.put_contexts([context])
    except errors.AlreadyExistsError:  # created meanwhile by another writer: add to that one
        record_run(store, run_id, properties)


def run_properties(store: metadata_store.MetadataStore, run_id: str) -> Dict[str, PropertyValue]:
    """The custom properties of the "pipeline_run" context `run_id` ({} when there is no such run)."""
    context = store.get_context_by_type_and_name("pipeline_run", run_id)
    if context is None:
        return {}
    return {name: getattr(value, value.WhichOneof("value")) for name, value in context.custom_properties.items()
            if value.WhichOneof("value")}


# -- recording executions ---------------------------------------------------------------------------


def _set_properties(target, values: Optional[Mapping[str, PropertyValue]]) -> None:
    for name, value in (values or {}).items():
        if isinstance(value, bool):
            target[name].bool_value = value
        elif isinstance(value, int):
            target[name].int_value = value
        elif isinstance(value, float):
            target[name].double_value = value
        elif isinstance(value, str):
            target[name].string_value = value
        else:
            raise TypeError(f"custom property {name!r}: {type(value).__name__} is not str, int, float or bool")


def new_artifact(store: metadata_store.MetadataStore, type_name: str, uri: str,
                 custom_properties: Optional[Mapping[str, PropertyValue]] = None) -> Artifact:
    """A LIVE artifact of type `type_name` (registered if missing) at `uri` with `custom_properties`
    (str -> string_value, int -> int_value, float -> double_value, bool -> bool_value). It is not stored:
    pass it to `put_execution_with_lineage`. Raises TypeError for another property value type."""
    artifact = Artifact(type_id=_type_id(store, metadata_store_pb2.ArtifactType, type_name), uri=uri,
                        state=Artifact.LIVE)
    _set_properties(artifact.custom_properties, custom_properties)
    return artifact


def _type_id(store: metadata_store.MetadataStore, proto_class, name: str) -> int:
    put = {metadata_store_pb2.ArtifactType: store.put_artifact_type,
           metadata_store_pb2.ExecutionType: store.put_execution_type,
           metadata_store_pb2.ContextType: store.put_context_type}[proto_class]
    # By name only: an existing type (e.g. TFX's, with properties) is reused as it is.
    return put(proto_class(name=name), can_add_fields=True, can_omit_fields=True)


def put_execution_with_lineage(store: metadata_store.MetadataStore, execution_type: str, pipeline_name: str,
                               inputs: Sequence[Tuple[str, Artifact]], outputs: Sequence[Tuple[str, Artifact]],
                               custom_properties: Optional[Mapping[str, PropertyValue]] = None,
                               state=Execution.RUNNING) -> int:
    """Records, in one transaction, an execution of type `execution_type` (registered if missing) in state
    `state` with `custom_properties`, in the "pipeline" context `pipeline_name` (created if missing), with
    an INPUT event to each (key, artifact) of `inputs` and an OUTPUT event to each of `outputs`. Event paths
    are [key, index] as TFX writes them, the index counting artifacts under the same key. Artifacts without
    an id (see `new_artifact`) are created; artifacts with one are existing ones. Returns the execution id."""
    execution = Execution(type_id=_type_id(store, metadata_store_pb2.ExecutionType, execution_type),
                          last_known_state=state)
    _set_properties(execution.custom_properties, custom_properties)
    artifacts_and_events = []
    for event_type, keyed in ((Event.INPUT, inputs), (Event.OUTPUT, outputs)):
        counts: Dict[str, int] = {}
        for key, artifact in keyed:
            event = Event(type=event_type)
            event.path.steps.add().key = key
            event.path.steps.add().index = counts.get(key, 0)
            counts[key] = counts.get(key, 0) + 1
            artifacts_and_events.append((artifact, event))
    context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if context is None:
        context = metadata_store_pb2.Context(
            type_id=_type_id(store, metadata_store_pb2.ContextType, "pipeline"), name=pipeline_name)
    execution_id, _, _ = store.put_execution(execution, artifacts_and_events, [context],
                                             reuse_context_if_already_exist=True)
    return execution_id


def finish_execution(store: metadata_store.MetadataStore, execution_id: int, state) -> None:
    """Sets the last known state of execution `execution_id` to `state` (an Execution.State, e.g.
    COMPLETE or FAILED). Raises LookupError when there is no such execution."""
    executions = store.get_executions_by_id([execution_id])
    if not executions:
        raise LookupError(f"no execution {execution_id} in ML Metadata")
    [execution] = executions
    execution.last_known_state = state
    store.put_executions([execution])


# -- runs of a pipeline, for recovery and garbage collection ----------------------------------------

Context = metadata_store_pb2.Context
ACTIVE_STATES = frozenset({Execution.NEW, Execution.RUNNING})  # started, no result recorded yet


def state_name(state) -> str:
    """The name of an Execution.State value (COMPLETE, CACHED, RUNNING, CANCELED, ...)."""
    return _STATE_NAMES[state]


def pipeline_executions(store: metadata_store.MetadataStore, pipeline_name: str) -> List[Execution]:
    """Every execution in the "pipeline" context `pipeline_name`, oldest first: TFX's node executions and
    cvrank's own (`cvrank index`, which have no node or run context); [] when the pipeline never ran."""
    ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if ctx is None:
        return []
    return sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)


def pipeline_runs(store: metadata_store.MetadataStore, pipeline_name: str) -> List[Tuple[Context, List[Execution]]]:
    """The runs of `pipeline_name`, oldest first (by the creation time of their "pipeline_run" context,
    then id): each run's context with its executions of that pipeline, oldest first. A run context
    holding no execution of the pipeline is not one of its runs."""
    in_pipeline = {e.id for e in pipeline_executions(store, pipeline_name)}
    runs = []
    for ctx in store.get_contexts_by_type("pipeline_run"):
        executions = sorted((e for e in store.get_executions_by_context(ctx.id) if e.id in in_pipeline),
                            key=lambda e: e.id)
        if executions:
            runs.append((ctx, executions))
    runs.sort(key=lambda run: (run[0].create_time_since_epoch, run[0].id))
    return runs


def execution_node_and_run(store: metadata_store.MetadataStore, pipeline_name: str,
                           execution_id: int) -> Tuple[Optional[str], Optional[str]]:
    """(node id, run id) of execution `execution_id`: the node id from its "node" context
    "<pipeline_name>.<node id>", the run id from its "pipeline_run" context; None for either context the
    execution is not in."""
    node_type_id = _context_type_id(store, "node")
    run_type_id = _context_type_id(store, "pipeline_run")
    prefix = pipeline_name + "."
    node_id = run_id = None
    for ctx in store.get_contexts_by_execution(execution_id):
        if ctx.type_id == node_type_id and ctx.name.startswith(prefix):
            node_id = ctx.name[len(prefix):]
        elif ctx.type_id == run_type_id:
            run_id = ctx.name
    return node_id, run_id


def execution_run_id(store: metadata_store.MetadataStore, execution_id: int) -> Optional[str]:
    """The run id (the "pipeline_run" context's name) of execution `execution_id`, or None."""
    run_type_id = _context_type_id(store, "pipeline_run")
    return next((c.name for c in store.get_contexts_by_execution(execution_id) if c.type_id == run_type_id), None)


def referenced_artifact_ids(store: metadata_store.MetadataStore, execution_ids: Sequence[int]) -> set[int]:
    """The ids of every artifact that any of `execution_ids` has an event with, of any type: consumed,
    produced, reused from cache (a CACHED execution's OUTPUT events) or resolved (INTERNAL_OUTPUT)."""
    ids = sorted(set(execution_ids))
    found = set()
    for start in range(0, len(ids), 500):  # keeps each SQL IN list short
        found.update(ev.artifact_id for ev in store.get_events_by_execution_ids(ids[start:start + 500]))
    return found


def mark_execution(store: metadata_store.MetadataStore, execution_id: int, state,
                   custom_properties: Optional[Mapping[str, PropertyValue]] = None) -> None:
    """Sets the last known state of execution `execution_id` to `state` and sets `custom_properties` on it
    (others are kept), in one write. Raises LookupError when there is no such execution."""
    executions = store.get_executions_by_id([execution_id])
    if not executions:
        raise LookupError(f"no execution {execution_id} in ML Metadata")
    [execution] = executions
    execution.last_known_state = state
    _set_properties(execution.custom_properties, custom_properties)
    store.put_executions([execution])


def set_artifacts_state(store: metadata_store.MetadataStore, artifact_ids: Sequence[int], state) -> None:
    """Sets the state of each artifact of `artifact_ids` to `state` (an Artifact.State, e.g. DELETED), in
    one write. Raises LookupError naming the ids that are not in the store."""
    ids = sorted(set(artifact_ids))
    if not ids:
        return
    artifacts = store.get_artifacts_by_id(ids)
    missing = sorted(set(ids) - {a.id for a in artifacts})
    if missing:
        raise LookupError(f"no artifacts {missing} in ML Metadata")
    for artifact in artifacts:
        artifact.state = state
    store.put_artifacts(artifacts)


def producing_execution_ids(store: metadata_store.MetadataStore, artifact_ids: Sequence[int]) -> set[int]:
    """The ids of the executions that output (OUTPUT or DECLARED_OUTPUT event) any of `artifact_ids`: their
    creators, and the CACHED executions that reused them."""
    ids = sorted(set(artifact_ids))
    found = set()
    for start in range(0, len(ids), 500):  # keeps each SQL IN list short
        found.update(ev.execution_id for ev in store.get_events_by_artifact_ids(ids[start:start + 500])
                     if ev.type in _PRODUCED)
    return found
