"""A real ML Metadata store and pipeline root filled the way TFX's launcher fills them, for recovery and
garbage collection tests: contexts "pipeline", "pipeline_run" and "node" ("<pipeline>.<node id>"), an
execution registered RUNNING with its INPUT events, output directories `<root>/<node>/<key>/<execution id>`
and the run record `<root>/<node>/.system/executor_execution/<execution id>`, then the result: COMPLETE
with LIVE outputs, CACHED with OUTPUT events to the reused artifacts, FAILED with the output directories
removed, or nothing at all (a killed process: RUNNING, directories left behind)."""

from __future__ import annotations

import os
import shutil
from typing import Dict, Mapping, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2 as pb

from metadata import mlmd

COMPLETE, CACHED, FAILED, RUNNING = pb.Execution.COMPLETE, pb.Execution.CACHED, pb.Execution.FAILED, pb.Execution.RUNNING


def tree(path: str) -> Dict[str, bytes]:
    """Every file under `path` with its content, by path relative to `path`."""
    found = {}
    for directory, _, files in os.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = f.read()
    return found


def _event(kind, key: str) -> pb.Event:
    event = pb.Event(type=kind)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    return event


class PipelineStore:
    """Pipeline `name` with root `root` recorded in `store`; `artifacts` maps names to artifact ids."""

    def __init__(self, store, root: str, name: str = "cvrank"):
        self.store, self.root, self.name = store, root, name
        self.ctx_types = {kind: store.put_context_type(pb.ContextType(name=kind))
                          for kind in ("pipeline", "pipeline_run", "node")}
        self.artifact_type = store.put_artifact_type(pb.ArtifactType(name="Blob"))
        self.pushed_type = store.put_artifact_type(pb.ArtifactType(name=mlmd.PUSHED_MODEL_TYPE))
        self.artifacts: Dict[str, int] = {}

    def _context(self, kind: str, name: str) -> pb.Context:
        found = self.store.get_context_by_type_and_name(kind, name)
        return found if found is not None else pb.Context(type_id=self.ctx_types[kind], name=name)

    def execute(self, run_id: str, node: str, state=COMPLETE, inputs: Mapping[str, str] = (),
                outputs: Mapping[str, str] = (), internal_outputs: Mapping[str, str] = (),
                pushed_destination: Optional[str] = None, size: int = 1000) -> int:
        """Records node `node` of run `run_id` ending in `state` and returns the execution id. `inputs` and
        `internal_outputs` map keys to names of existing artifacts; `outputs` maps output keys to names of
        new artifacts of `size` bytes (CACHED: to existing names, reused). Output key 'pushed_model' is a
        PushedModel pushed to `pushed_destination`."""
        exec_type = self.store.put_execution_type(pb.ExecutionType(name=f"tfx.{node}"))
        contexts = [self._context("pipeline", self.name), self._context("pipeline_run", run_id),
                    self._context("node", f"{self.name}.{node}")]
        pairs = [(self.artifact(name), _event(pb.Event.INPUT, key)) for key, name in dict(inputs).items()]
        execution_id, _, context_ids = self.store.put_execution(
            pb.Execution(type_id=exec_type, last_known_state=RUNNING), pairs, contexts,
            reuse_context_if_already_exist=True)
        contexts = [pb.Context(id=i, type_id=c.type_id, name=c.name) for i, c in zip(context_ids, contexts)]
        published = []  # (artifact name, artifact, event)
        if state == CACHED:
            published = [(name, self.artifact(name), _event(pb.Event.OUTPUT, key)) for key, name in dict(outputs).items()]
        else:
            record = os.path.join(self.root, node, ".system", "executor_execution", str(execution_id))
            os.makedirs(record)
            with open(os.path.join(record, "executor_output.pb"), "wb") as f:
                f.write(b"r" * 10)
            for key, name in dict(outputs).items():
                uri = os.path.join(self.root, node, key, str(execution_id))
                os.makedirs(uri)
                with open(os.path.join(uri, "data"), "wb") as f:
                    f.write(b"x" * size)
                if state == FAILED:
                    shutil.rmtree(uri)  # TFX removes the outputs of a failed execution
                    continue
                pushed = key == "pushed_model"
                artifact = pb.Artifact(type_id=self.pushed_type if pushed else self.artifact_type, uri=uri,
                                       state=pb.Artifact.LIVE)
                if pushed:
                    artifact.custom_properties["pushed"].int_value = 1
                    artifact.custom_properties["pushed_destination"].string_value = pushed_destination
                published.append((name, artifact, _event(pb.Event.OUTPUT, key)))
        published += [(name, self.artifact(name), _event(pb.Event.INTERNAL_OUTPUT, key))
                      for key, name in dict(internal_outputs).items()]
        if state == RUNNING:  # killed: nothing more is recorded
            return execution_id
        _, artifact_ids, _ = self.store.put_execution(
            pb.Execution(id=execution_id, type_id=exec_type, last_known_state=state),
            [(artifact, event) for _, artifact, event in published], contexts)
        for (name, _, _), artifact_id in zip(published, artifact_ids):
            self.artifacts[name] = artifact_id
        return execution_id

    def artifact(self, name: str) -> pb.Artifact:
        [artifact] = self.store.get_artifacts_by_id([self.artifacts[name]])
        return artifact

    def states(self) -> Dict[int, Tuple[int, str]]:
        """Every artifact's (state, uri) by id."""
        return {a.id: (a.state, a.uri) for a in self.store.get_artifacts()}
