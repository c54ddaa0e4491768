"""`cvrank index`: adds CVs to the served model's index without retraining.

The newest version under the model base path is rebuilt from its own contents (Transform graph copy, word
vectors, word weights, centre: `serving.model.load_for_indexing`), the new CVs are embedded exactly as that
model embeds a query, and a new version holding the old index plus the new CVs (a CV whose id is already
indexed is replaced) is pushed under the next version number. A server polling the base path picks it up
like any push.

ML Metadata records the update as an execution of type `cvrank.CvIndexUpdate` in the pipeline's context,
with the source version's PushedModel and the CV files (`cvrank.CvFile`, with a SHA-256 of each) as
inputs and a new PushedModel (`pushed_version`, `pushed_destination`) as output, so lineage tells which
model and which CV files a served version holds. The version directory is written under a temporary
name on the same filesystem and renamed into place only once complete and recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import time
from typing import List

import numpy as np
from ml_metadata.proto import metadata_store_pb2

from orchestration import mlmd
from serving.cv_files import Cv, cv_file_paths, read_cv_files
from serving.versions import versions_on_disk

log = logging.getLogger("cvrank.serving")

EXECUTION_TYPE = "cvrank.CvIndexUpdate"
CV_FILE_TYPE = "cvrank.CvFile"
PUSHED_MODEL_TYPE = "PushedModel"  # TFX's type, so index versions and Pusher versions look alike


class IndexUpdateError(Exception):
    """The index update cannot be done; nothing was pushed. The message says why."""


@dataclasses.dataclass
class IndexResult:
    source_version: int
    version: int
    path: str
    added: int
    replaced: int
    index_size: int
    execution_id: int


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _type_id(store, name: str, kind: str) -> int:
    proto = {"artifact": metadata_store_pb2.ArtifactType, "execution": metadata_store_pb2.ExecutionType,
             "context": metadata_store_pb2.ContextType}[kind](name=name)
    put = {"artifact": store.put_artifact_type, "execution": store.put_execution_type,
           "context": store.put_context_type}[kind]
    return put(proto, can_add_fields=True)


def pushed_model_artifact(store, version_dir: str):
    """The PushedModel artifact whose `pushed_destination` is `version_dir`, or None."""
    version_dir = os.path.abspath(version_dir)
    found = [a for a in store.get_artifacts_by_type(PUSHED_MODEL_TYPE)
             if a.custom_properties["pushed_destination"].string_value == version_dir
             and a.custom_properties["pushed"].int_value == 1]
    return max(found, key=lambda a: a.id) if found else None


def _merge(old_ids: np.ndarray, old_vectors: np.ndarray, old_snippets: np.ndarray, cvs: List[Cv],
           new_vectors: np.ndarray, snippets: List[bytes]):
    position = {cv_id: k for k, cv_id in enumerate(old_ids.tolist())}
    ids, vectors, snips = list(old_ids.tolist()), old_vectors.copy(), list(old_snippets.tolist())
    replaced = 0
    appended_ids, appended_rows, appended_snips = [], [], []
    for cv, vector, snip in zip(cvs, new_vectors, snippets):
        key = cv.cv_id.encode("utf-8")
        if key in position:
            vectors[position[key]] = vector
            snips[position[key]] = snip
            replaced += 1
        else:
            appended_ids.append(key)
            appended_rows.append(vector)
            appended_snips.append(snip)
    if appended_rows:
        vectors = np.concatenate([vectors, np.stack(appended_rows)])
    return np.array(ids + appended_ids, dtype=object), vectors, snips + appended_snips, replaced


def update_index(cv_paths: List[str], model_base_path: str, metadata_path: str,
                 pipeline_name: str = "cvrank") -> IndexResult:
    """Pushes a new version of the newest model under `model_base_path` whose index also holds the CVs
    of `cv_paths` (files or directories of `cv_id,text` CSV). Raises CvFileError for bad CV files and
    IndexUpdateError when there is no model to start from; in both cases nothing is pushed."""
    import tensorflow as tf

    from serving.model import load_for_indexing, save_model, snippet

    files = [f for p in cv_paths for f in cv_file_paths(p)]
    cvs = read_cv_files(files)
    versions = versions_on_disk(model_base_path)
    usable = [v for v in sorted(versions, reverse=True)
              if os.path.exists(os.path.join(versions[v], "saved_model.pb"))]
    if not usable:
        raise IndexUpdateError(f"no model under {model_base_path} to add CVs to; run `cvrank run` first")
    source_version = usable[0]
    source_dir = versions[source_version]
    with tempfile.TemporaryDirectory(prefix="cvrank-index-") as work_dir:  # the Transform graph, unpacked
        try:
            model = load_for_indexing(source_dir, work_dir)
        except (FileNotFoundError, tf.errors.OpError, ValueError, OSError) as err:
            raise IndexUpdateError(f"version {source_version} ({source_dir}) cannot be indexed: {err}") from None

        texts = [cv.text.encode("utf-8") for cv in cvs]
        ids, vectors, snips, replaced = _merge(model.cv_ids.numpy(), model.cv_matrix.numpy(),
                                               model.cv_snippets.numpy(), cvs, model.embed_texts(texts),
                                               [snippet(t) for t in texts])
        model.set_index_vectors(ids, vectors, snips)

        version = max(int(time.time()), max(versions) + 1)
        final_dir = os.path.join(os.path.abspath(model_base_path), str(version))
        temp_dir = os.path.join(os.path.abspath(model_base_path), f".tmp-{version}-{os.getpid()}")
        os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
        store = mlmd.sqlite_store(metadata_path)
        execution_id = None
        try:
            save_model(model, temp_dir)
            execution_id = _record(store, pipeline_name, source_dir, files, final_dir, version, len(cvs), len(ids))
            os.rename(temp_dir, final_dir)
            _finish(store, execution_id, metadata_store_pb2.Execution.COMPLETE)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            if execution_id is not None and not os.path.isdir(final_dir):
                _finish(store, execution_id, metadata_store_pb2.Execution.FAILED)
            raise
    return IndexResult(source_version, version, final_dir, len(cvs) - replaced, replaced, len(ids), execution_id)


def _record(store, pipeline_name: str, source_dir: str, files: List[str], final_dir: str, version: int,
            n_cvs: int, index_size: int) -> int:
    """Records the update (RUNNING) with its inputs and its output; returns the execution id."""
    exec_type = _type_id(store, EXECUTION_TYPE, "execution")
    file_type = _type_id(store, CV_FILE_TYPE, "artifact")
    pushed_type = _type_id(store, PUSHED_MODEL_TYPE, "artifact")
    context_type = _type_id(store, "pipeline", "context")

    source = pushed_model_artifact(store, source_dir)
    inputs = []
    if source is not None:
        inputs.append(("source_model", source))
    else:
        log.warning("%s is not recorded in ML Metadata as a pushed model; lineage starts at this update",
                    source_dir)
    for path in files:
        artifact = metadata_store_pb2.Artifact(type_id=file_type, uri=os.path.abspath(path),
                                               state=metadata_store_pb2.Artifact.LIVE)
        artifact.custom_properties["sha256"].string_value = _sha256(path)
        inputs.append(("cvs", artifact))
    output = metadata_store_pb2.Artifact(type_id=pushed_type, uri=final_dir, state=metadata_store_pb2.Artifact.LIVE)
    output.custom_properties["pushed"].int_value = 1
    output.custom_properties["pushed_version"].string_value = str(version)
    output.custom_properties["pushed_destination"].string_value = final_dir
    output.custom_properties["index_size"].int_value = index_size
    output.custom_properties["cvs_added"].int_value = n_cvs

    execution = metadata_store_pb2.Execution(type_id=exec_type, last_known_state=metadata_store_pb2.Execution.RUNNING)
    execution.custom_properties["source_version"].string_value = os.path.basename(source_dir)
    execution.custom_properties["pushed_version"].string_value = str(version)

    def event(kind, key, index):
        e = metadata_store_pb2.Event(type=kind)
        step = e.path.steps.add()
        step.key = key
        e.path.steps.add().index = index
        return e

    artifacts_and_events = []
    counts = {}
    for key, artifact in inputs:
        artifacts_and_events.append((artifact, event(metadata_store_pb2.Event.INPUT, key, counts.get(key, 0))))
        counts[key] = counts.get(key, 0) + 1
    artifacts_and_events.append((output, event(metadata_store_pb2.Event.OUTPUT, "pushed_model", 0)))
    context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if context is None:
        context = metadata_store_pb2.Context(type_id=context_type, name=pipeline_name)
    execution_id, _artifact_ids, _ = store.put_execution(execution, artifacts_and_events, [context],
                                                         reuse_context_if_already_exist=True)
    return execution_id


def _finish(store, execution_id: int, state) -> None:
    [execution] = store.get_executions_by_id([execution_id])
    execution.last_known_state = state
    store.put_executions([execution])
