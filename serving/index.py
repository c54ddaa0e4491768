"""`cvrank index`: adds CVs to the served model's index without retraining.

The newest version under the model base path is rebuilt from its own contents (Transform graph copy, word
vectors, word weights, centre: `serving.model.load_for_indexing`), the new CVs are embedded exactly as that
model embeds a query, the lexical weights are recomputed over the whole new index, and a new version
holding the old index plus the new CVs (a CV whose id is already indexed is replaced) is pushed under the
next version number. A server polling the base path picks it up like any push. Words of the new CVs that
the model's Transform `terms` vocabulary does not hold are dropped: they match nothing lexically and do
not count in BM25's document length.

ML Metadata records the update as an execution of type `cvrank.CvIndexUpdate` in the pipeline's context,
with the source version's PushedModel and the CV files (`cvrank.CvFile`, with a SHA-256 of each) as
inputs and a new PushedModel (`pushed_version`, `pushed_destination`) as output, so lineage tells which
model and which CV files a served version holds. The version is written under a staging name
(`serving.base_path`) and renamed into place only once complete and recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import List

import numpy as np

from metadata import mlmd
from serving import base_path, pushes
from serving.cv_files import Cv, cv_file_paths, read_cv_files
from serving.lexical import TermCounts

log = logging.getLogger("cvrank.serving")

EXECUTION_TYPE = "cvrank.CvIndexUpdate"
CV_FILE_TYPE = "cvrank.CvFile"


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


def _merge(old_ids: np.ndarray, cvs: List[Cv]) -> tuple[np.ndarray, int]:
    """Where each row of the merged index comes from: indices into the old rows followed by the new ones
    (a new CV whose id is already indexed takes that row's place), and how many CVs were replaced."""
    position = {cv_id: k for k, cv_id in enumerate(old_ids.tolist())}
    rows = list(range(len(old_ids)))
    replaced = 0
    for j, cv in enumerate(cvs):
        key = cv.cv_id.encode("utf-8")
        if key in position:
            rows[position[key]] = len(old_ids) + j
            replaced += 1
        else:
            rows.append(len(old_ids) + j)
    return np.asarray(rows, np.int64), replaced


def update_index(cv_paths: List[str], model_base_path: str, metadata_connection,
                 pipeline_name: str = "cvrank") -> IndexResult:
    """Pushes a new version of the newest model under `model_base_path` whose index also holds the CVs
    of `cv_paths` (files or directories of `cv_id,text` CSV). Raises CvFileError for bad CV files and
    IndexUpdateError when there is no model to start from; in both cases nothing is pushed."""
    import tensorflow as tf

    from serving.model import load_for_indexing, save_model, snippet

    files = [f for p in cv_paths for f in cv_file_paths(p)]
    cvs = read_cv_files(files)
    versions = base_path.versions_on_disk(model_base_path)
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
        old_ids, old_vectors, old_snippets, old_counts = model.index_parts()
        raw, new_counts = model.index_texts(texts)
        rows, replaced = _merge(old_ids, cvs)
        ids = np.concatenate([old_ids, np.array([cv.cv_id.encode("utf-8") for cv in cvs], dtype=object)])[rows]
        vectors = np.concatenate([old_vectors, model.final_vectors(raw)])[rows]
        snips = np.concatenate([old_snippets, np.array([snippet(t) for t in texts], dtype=object)])[rows]
        # The lexical weights (idf, average length) are recomputed over the whole new index.
        model.set_index_parts(ids, vectors, snips, TermCounts.concat(old_counts, new_counts).rows(rows))

        version, _, manifest = base_path.stage_version(model_base_path, lambda d: save_model(model, d))
        final_dir = os.path.join(os.path.abspath(model_base_path), str(version))
        try:
            if metadata_connection.WhichOneof("config") == "sqlite":
                os.makedirs(os.path.dirname(os.path.abspath(metadata_connection.sqlite.filename_uri)), exist_ok=True)
            execution_id = _record(mlmd.open_store(metadata_connection), pipeline_name, source_dir, files, final_dir,
                                   version, manifest, len(cvs), len(ids))
        except BaseException:
            base_path.discard_staged(model_base_path, version)
            raise
        # Recorded: from here on a failed rename is finished by the next run's reconcile (serving/pushes.py).
        base_path.publish_version(model_base_path, version)
    return IndexResult(source_version, version, final_dir, len(cvs) - replaced, replaced, len(ids), execution_id)


def _record(store, pipeline_name: str, source_dir: str, files: List[str], final_dir: str, version: int,
            manifest, n_cvs: int, index_size: int) -> int:
    """Records the update (COMPLETE) with its inputs and its output; returns the execution id."""
    record = pushes.push_records(store, os.path.dirname(source_dir)).get(int(os.path.basename(source_dir)))
    inputs = []
    if record is not None:
        inputs.append(("source_model", record.artifact))
    else:
        log.warning("%s is not recorded in ML Metadata as a pushed model; lineage starts at this update",
                    source_dir)
    for path in files:
        inputs.append(("cvs", mlmd.new_artifact(store, CV_FILE_TYPE, os.path.abspath(path),
                                                {"sha256": base_path.file_digest(path)[1]})))
    # TFX's PushedModel type and properties, so index versions and Pusher versions look alike.
    output = mlmd.new_artifact(store, mlmd.PUSHED_MODEL_TYPE, final_dir, {
        **pushes.push_properties(version, final_dir, manifest), "index_size": index_size, "cvs_added": n_cvs})
    return mlmd.put_execution_with_lineage(
        store, EXECUTION_TYPE, pipeline_name, inputs, [("pushed_model", output)],
        {"source_version": os.path.basename(source_dir), "pushed_version": str(version)},
        state=mlmd.Execution.COMPLETE)
