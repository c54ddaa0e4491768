"""Runs a TFX pipeline node by node from its compiled IR.

This is what TFX's LocalDagRunner does, with two differences that cvrank needs: the run id is chosen by
the caller (so a run can be found in ML Metadata and reported), and a single node can be launched on its
own, which is how each Airflow task runs its node.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable, Mapping, Optional

from tfx.dsl.compiler import compiler
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.portable import launcher, runtime_parameter_utils
from tfx.orchestration.local import runner_utils
from tfx.dsl.compiler.constants import PIPELINE_RUN_ID_PARAMETER_NAME
from google.protobuf import json_format
from tfx.proto import pusher_pb2
from tfx.proto.orchestration import pipeline_pb2

from config import PipelineConfig
from metadata import mlmd
from orchestration import provenance
from orchestration.runs import new_run_id
from serving import pushes


def compile_pipeline(pipeline: tfx_pipeline.Pipeline) -> pipeline_pb2.Pipeline:
    """Compiles a pipeline to its intermediate representation (IR), runtime parameters unresolved."""
    return compiler.Compiler().compile(pipeline)


def bind_run_id(pipeline_ir: pipeline_pb2.Pipeline, run_id: str) -> pipeline_pb2.Pipeline:
    """Returns a copy of the IR with the pipeline-run-id runtime parameter set to `run_id`."""
    bound = pipeline_pb2.Pipeline()
    bound.CopyFrom(pipeline_ir)
    runtime_parameter_utils.substitute_runtime_parameter(
        bound, {PIPELINE_RUN_ID_PARAMETER_NAME: run_id}
    )
    return bound


def pipeline_root(pipeline_ir: pipeline_pb2.Pipeline) -> str:
    """The pipeline root of a compiled pipeline, bound or not (unbound, it is a runtime parameter's
    default)."""
    root = pipeline_ir.runtime_spec.pipeline_root
    return root.field_value.string_value or root.runtime_parameter.default_value.string_value


def node_ids(pipeline_ir: pipeline_pb2.Pipeline) -> list[str]:
    """Node ids in topological order (the order the compiler emits)."""
    return [n.pipeline_node.node_info.id for n in pipeline_ir.nodes]


def launch_node(bound_ir: pipeline_pb2.Pipeline, node_id: str,
                run_properties: Optional[Mapping[str, str]] = None) -> None:
    """Launches one node of a run-id-bound IR: resolves its inputs from ML Metadata, reuses a cached
    execution when inputs, parameters and code are unchanged, otherwise runs its executor and publishes
    the outputs. Raises whatever the executor raised; a failed execution is recorded as FAILED.
    `run_properties` (orchestration.provenance) are recorded on the run's context first, unless the run
    has them already."""
    deployment_config = runner_utils.extract_local_deployment_config(bound_ir)
    connection_config = getattr(
        deployment_config.metadata_connection_config,
        deployment_config.metadata_connection_config.WhichOneof("connection_config"),
    )
    mlmd.prepare_location(connection_config)
    if run_properties:
        run_id = bound_ir.runtime_spec.pipeline_run_id.field_value.string_value
        mlmd.record_run(mlmd.open_store(connection_config), run_id, run_properties)
    for node in bound_ir.nodes:
        pipeline_node = node.pipeline_node
        if pipeline_node.node_info.id != node_id:
            continue
        try:
            launcher.Launcher(
                pipeline_node=pipeline_node,
                mlmd_connection=metadata.Metadata(connection_config),
                pipeline_info=bound_ir.pipeline_info,
                pipeline_runtime_spec=bound_ir.runtime_spec,
                executor_spec=runner_utils.extract_executor_spec(deployment_config, node_id),
                custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment_config, node_id),
            ).launch()
        finally:
            _publish_recorded_pushes(pipeline_node, connection_config)
        return
    raise KeyError(f"pipeline {bound_ir.pipeline_info.id} has no node {node_id!r}")


def push_base_path(pipeline_node) -> Optional[str]:
    """The model base path of a node with a filesystem `push_destination` parameter (a Pusher), or None."""
    parameter = pipeline_node.parameters.parameters.get("push_destination")
    if parameter is None or not parameter.field_value.string_value:
        return None
    destination = json_format.Parse(parameter.field_value.string_value, pusher_pb2.PushDestination())
    return destination.filesystem.base_directory or None


def push_base_paths(pipeline_ir: pipeline_pb2.Pipeline) -> list[str]:
    """The model base paths the pipeline's Pushers write to."""
    paths = (push_base_path(n.pipeline_node) for n in pipeline_ir.nodes)
    return sorted({p for p in paths if p})


def _publish_recorded_pushes(pipeline_node, connection_config) -> None:
    # A Pusher only stages its version; it becomes visible once the launcher has committed the record,
    # and a staged version whose record never made it is removed (serving/pushes.py).
    base = push_base_path(pipeline_node)
    if base is None:
        return
    from ml_metadata import metadata_store

    for note in pushes.reconcile(metadata_store.MetadataStore(connection_config), base):
        logging.info("cvrank: %s", note)


class NodeListener:
    """Told about each node of `run_pipeline` as it starts and ends (override what you need)."""

    def node_started(self, node_id: str, index: int, total: int) -> None:
        pass

    def node_finished(self, node_id: str, seconds: float, error: Optional[BaseException]) -> None:
        pass


def run_pipeline(
    pipeline: tfx_pipeline.Pipeline,
    run_id: Optional[str] = None,
    listener: Optional[NodeListener] = None,
    nodes: Optional[Iterable[str]] = None,
    config: Optional[PipelineConfig] = None,
) -> str:
    """Runs every node (or those in `nodes`) of `pipeline` in topological order under one run id.

    The run's context records the code version and, given the `config` the pipeline was built from, the
    settings that differ from the defaults (orchestration.provenance). Stops at the first failing node
    (its exception propagates); nodes already run stay recorded. Returns the run id.
    """
    properties = provenance.code_properties()
    if config is not None:
        properties.update(provenance.settings_properties(config))
    run_id = run_id or new_run_id()
    bound = bind_run_id(compile_pipeline(pipeline), run_id)
    wanted = set(nodes) if nodes is not None else None
    selected = [n for n in node_ids(bound) if wanted is None or n in wanted]
    listener = listener or NodeListener()
    for index, node_id in enumerate(selected, start=1):
        listener.node_started(node_id, index, len(selected))
        logging.info("cvrank: launching %s (run %s)", node_id, run_id)
        start = time.monotonic()
        try:
            launch_node(bound, node_id, properties)
        except BaseException as err:
            listener.node_finished(node_id, time.monotonic() - start, err)
            raise
        listener.node_finished(node_id, time.monotonic() - start, None)
    return run_id
