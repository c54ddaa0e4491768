"""Recovery from killed runs: executions a dead process left RUNNING, and the directories it left.

TFX's launcher records an execution as RUNNING before its executor starts and records the result
(COMPLETE or FAILED) when it ends; a process killed in between leaves the execution RUNNING forever, with
its output directories `<pipeline_root>/<node id>/<output key>/<execution id>` and its run record
`<pipeline_root>/<node id>/.system/executor_execution/<execution id>` behind. Every writer of a pipeline
holds the workspace lock (orchestration/workspace_lock.py) while its executions run, so whoever holds the
lock knows that any execution still RUNNING (or NEW) is such an orphan.

A retried Airflow task launches its node again under the same run id, and TFX's launcher then reuses the
execution registered for that run and node: the CANCELED execution runs again on clean directories and
ends COMPLETE or FAILED, its `cvrank_note` kept as a record of the earlier attempt.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from metadata import mlmd
from serving import pushes
from orchestration.pipeline_dirs import (EXECUTOR_EXECUTION, STATEFUL_WORKING_DIR, SYSTEM_DIR, PathSet,
                                         format_bytes, is_within, plain_name, remove_tree, stateful_working_dir_index,
                                         tree_size)

NOTE_PROPERTY = "cvrank_note"  # custom property saying why cvrank changed an execution's state


@dataclass(frozen=True)
class RecoveredExecution:
    """An orphaned execution, now CANCELED: its node and run (None when it had no run context), the
    state it was left in, the directories removed with their total size, and those that could not be
    removed ('path: error')."""

    execution_id: int
    node_id: str
    run_id: Optional[str]
    previous_state: str
    removed: Tuple[str, ...]
    removed_bytes: int
    not_removed: Tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for a run's summary, e.g. 'GloveTrainer execution 57 of run X was left RUNNING by a
        process that ended without a result: marked CANCELED, removed 2 directories (41 MiB)'."""
        run = f" of run {self.run_id}" if self.run_id else ""
        n = len(self.removed)
        removed = (f"removed {n} director{'y' if n == 1 else 'ies'} ({format_bytes(self.removed_bytes)})"
                   if n else "no directories to remove")
        line = (f"{self.node_id} execution {self.execution_id}{run} was left {self.previous_state} by a process "
                f"that ended without a result: marked CANCELED, {removed}")
        if self.not_removed:
            line += f"; could not remove {'; '.join(self.not_removed)}"
        return line


def execution_dirs(pipeline_root: str, node_id: str, execution: mlmd.Execution) -> List[str]:
    """The directories TFX's launcher makes for `execution` of node `node_id` that exist under
    `pipeline_root`: `<node>/<output key>/<execution id>` for each output key directory,
    `<node>/.system/executor_execution/<execution id>` and, when the execution names one,
    `<node>/.system/stateful_working_dir/<index>`. [] when `node_id` is not a plain directory name."""
    if not plain_name(node_id):
        return []
    node_dir = os.path.join(pipeline_root, node_id)
    name = str(execution.id)
    found = []
    if os.path.isdir(node_dir):
        for key in sorted(os.listdir(node_dir)):
            if key != SYSTEM_DIR and os.path.lexists(os.path.join(node_dir, key, name)):
                found.append(os.path.join(node_dir, key, name))
    found.append(os.path.join(node_dir, SYSTEM_DIR, EXECUTOR_EXECUTION, name))
    index = stateful_working_dir_index(execution)
    if index is not None and plain_name(index):
        found.append(os.path.join(node_dir, SYSTEM_DIR, STATEFUL_WORKING_DIR, index))
    return [p for p in found if os.path.lexists(p)]


def recover_orphaned_executions(store, pipeline_name: str, pipeline_root: str,
                                note_context: str) -> List[RecoveredExecution]:
    """Call while holding the workspace lock of `pipeline_name`. Every execution of a node of
    `pipeline_name` still NEW or RUNNING in ML Metadata is orphaned: marks it CANCELED with the custom
    property `cvrank_note` ('orphaned: ...; found by <note_context> at <UTC time>'), then removes its
    directories (`execution_dirs`) that lie inside `pipeline_root` and that no LIVE artifact's URI equals,
    contains or lies inside. COMPLETE, CACHED, FAILED and CANCELED executions, and executions outside a
    node context (`cvrank index` updates), are left alone. Returns one RecoveredExecution per execution
    marked, oldest first; [] when there is none. A directory that cannot be removed is reported in
    `not_removed`, not raised."""
    orphans = []
    for execution in mlmd.pipeline_executions(store, pipeline_name):
        if execution.last_known_state in mlmd.ACTIVE_STATES:
            node_id, run_id = mlmd.execution_node_and_run(store, pipeline_name, execution.id)
            if node_id is not None:
                orphans.append((execution, node_id, run_id))
    return cancel_orphans(store, pipeline_root, orphans, note_context)


def cancel_orphans(store, pipeline_root: str, orphans, note_context: str) -> List[RecoveredExecution]:
    """Marks each orphaned (execution, node id, run id) of `orphans` CANCELED with a `cvrank_note` naming
    `note_context`, and removes its directories inside `pipeline_root` that no LIVE artifact uses. Returns
    one RecoveredExecution per execution, in the order given."""
    if not orphans:
        return []
    live_uris = PathSet(a.uri for a in store.get_artifacts() if a.state == mlmd.Artifact.LIVE)
    found_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    note = f"orphaned: its process ended without recording a result; found by {note_context} at {found_at}"
    recovered = []
    for execution, node_id, run_id in orphans:
        mlmd.mark_execution(store, execution.id, mlmd.Execution.CANCELED, {NOTE_PROPERTY: note})
        removed, not_removed, size = [], [], 0
        for path in _removable(execution_dirs(pipeline_root, node_id, execution), pipeline_root, live_uris):
            bytes_here = tree_size(path)
            try:
                remove_tree(path)
            except OSError as err:
                not_removed.append(f"{path}: {err.strerror or err}")
                continue
            removed.append(path)
            size += bytes_here
        recovered.append(RecoveredExecution(execution.id, node_id, run_id,
                                            mlmd.state_name(execution.last_known_state), tuple(removed), size,
                                            tuple(not_removed)))
    return recovered


def _removable(paths: Iterable[str], pipeline_root: str, live_uris: PathSet) -> List[str]:
    return [p for p in paths if is_within(p, pipeline_root) and not live_uris.overlaps(p)]


def recover_workspace(store, pipeline_name: str, pipeline_root: str, push_base_paths: Iterable[str],
                      note_context: str) -> List[str]:
    """What every writer does first, under the workspace lock: orphaned executions of `pipeline_name`
    are recovered (`recover_orphaned_executions`) and the staged versions under each of
    `push_base_paths` are published when recorded or removed when not (`serving.pushes.reconcile`).
    Returns one sentence per thing put right."""
    notes = [r.describe() for r in recover_orphaned_executions(store, pipeline_name, pipeline_root, note_context)]
    for base in push_base_paths:
        notes += pushes.reconcile(store, base)
    return notes
