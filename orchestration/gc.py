"""Garbage collection of a pipeline's artifacts: what the last runs and the served models do not use goes.

An artifact stays when an execution of one of the last `keep_runs` runs has an event with it (consumed,
produced, reused from cache by a CACHED execution, or resolved by a Resolver), or when it is protected:
its URI, or the `pushed_destination` of a pushed model, is among the caller's protected URIs (the served
versions), and then so is everything upstream of it in ML Metadata's lineage (the model, its blessing,
the data it was trained and evaluated on). Every other artifact under the pipeline root is removed: its
directory is deleted and its state set to DELETED, so TFX never reuses it from cache and never resolves it
as an input (a node whose earlier outputs are gone simply executes again).

Directories under the pipeline root that no artifact points to are removed too, unless they belong to a
kept execution: output directories left by failed or killed executions, `.system/executor_execution/<id>`
run records of executions outside the kept runs, `.system/stateful_working_dir/<index>` working
directories no kept execution names, and `.system/driver_execution/<time>` driver outputs older than the
oldest kept run. Nothing outside the pipeline root is touched. Call while holding the workspace lock,
after `recovery.recover_orphaned_executions`: executions still RUNNING or NEW are treated as in use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from metadata import mlmd
from orchestration.pipeline_dirs import (DRIVER_EXECUTION, EXECUTOR_EXECUTION, STATEFUL_WORKING_DIR, SYSTEM_DIR,
                                         PathSet, format_bytes, is_within, remove_tree, stateful_working_dir_index,
                                         tree_size)

DEFAULT_KEEP_RUNS = 5
_DRIVER_CLOCK_SLACK_US = 1_000_000  # driver output names are microsecond times; run times are milliseconds


@dataclass(frozen=True)
class GcEntry:
    """A path removed (or, in a dry run, to be removed): the artifact it held (None for a directory no
    artifact points to), its size in bytes, and why it goes."""

    path: str
    artifact_id: Optional[int]
    bytes: int
    reason: str


@dataclass
class GcReport:
    """What `collect_garbage` removed, or would remove in a dry run: `entries` (paths and artifacts, in
    path order), the run ids kept, how many artifacts protected URIs kept, and the paths that could not be
    removed ('path: error')."""

    pipeline_root: str
    keep_runs: int
    kept_run_ids: Tuple[str, ...]
    protected_artifacts: int
    dry_run: bool
    entries: List[GcEntry] = field(default_factory=list)
    not_removed: List[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries)

    @property
    def paths(self) -> List[str]:
        """The distinct paths of `entries`."""
        return sorted({e.path for e in self.entries})

    @property
    def artifact_ids(self) -> List[int]:
        """The artifacts marked DELETED (or to be marked, in a dry run)."""
        return sorted({e.artifact_id for e in self.entries if e.artifact_id is not None})

    def format(self) -> str:
        """The report for a terminal: what was kept, one line per path with its size and reason, totals."""
        if len(self.kept_run_ids) == 1:
            runs = f"the last run ({self.kept_run_ids[0]})"
        elif self.kept_run_ids:
            runs = f"the last {len(self.kept_run_ids)} runs ({self.kept_run_ids[0]} to {self.kept_run_ids[-1]})"
        else:
            runs = "no runs (none recorded)"
        protected = (f" and {self.protected_artifacts} artifact{'s' if self.protected_artifacts != 1 else ''} "
                     "of protected models and their lineage" if self.protected_artifacts else "")
        lines = [f"garbage collection of {self.pipeline_root}: keeping {runs}{protected}"]
        width = max((len(format_bytes(e.bytes)) for e in self.entries), default=0)
        for e in self.entries:
            rel = os.path.relpath(e.path, self.pipeline_root)
            lines.append(f"  {format_bytes(e.bytes):>{width}}  {rel}  ({e.reason})")
        n, artifacts = len(self.paths), len(self.artifact_ids)
        what = f"{n} path{'s' if n != 1 else ''} ({format_bytes(self.total_bytes)})"
        marked = f"{artifacts} artifact{'s' if artifacts != 1 else ''} DELETED in ML Metadata"
        if not self.entries:
            lines.append("nothing to remove")
        elif self.dry_run:
            lines.append(f"would remove {what} and mark {marked} (dry run: nothing was changed)")
        else:
            lines.append(f"removed {what}; marked {marked}")
        lines.extend(f"could not remove {p}" for p in self.not_removed)
        return "\n".join(lines)


def collect_garbage(store, pipeline_name: str, pipeline_root: str, keep_runs: int = DEFAULT_KEEP_RUNS,
                    protected_uris: Iterable[str] = (), dry_run: bool = False) -> GcReport:
    """Removes, under `pipeline_root`, every artifact of `store` that neither the last `keep_runs` runs of
    `pipeline_name` nor `protected_uris` (artifact URIs or pushed models' destinations, kept with their
    upstream lineage) use, marking it DELETED in ML Metadata, and every leftover directory (module
    docstring). With `dry_run` nothing is changed and the report says what would go. A second call right
    after the first removes nothing. Raises ValueError when `keep_runs` < 1, and when `pipeline_root`
    exists but the store has never recorded `pipeline_name` (it could not tell what is in use)."""
    if keep_runs < 1:
        raise ValueError(f"keep_runs must be at least 1, not {keep_runs}")
    root = os.path.abspath(pipeline_root)
    protected_paths = {os.path.normpath(os.path.abspath(u)) for u in protected_uris}
    report = GcReport(root, keep_runs, (), 0, dry_run)
    if not os.path.isdir(root):
        return report
    if store.get_context_by_type_and_name("pipeline", pipeline_name) is None:
        raise ValueError(f"ML Metadata has no pipeline {pipeline_name!r}: nothing under {root} can be told "
                         "in use or not, so nothing is collected")

    runs = mlmd.pipeline_runs(store, pipeline_name)
    kept_runs = runs[-keep_runs:]
    report.kept_run_ids = tuple(ctx.name for ctx, _ in kept_runs)
    kept_executions = {e.id: e for _, executions in kept_runs for e in executions}
    busy_nodes: Set[str] = set()  # nodes with an execution that may still be writing
    for execution in mlmd.pipeline_executions(store, pipeline_name):
        if execution.last_known_state in mlmd.ACTIVE_STATES:
            kept_executions[execution.id] = execution
            node_id, _ = mlmd.execution_node_and_run(store, pipeline_name, execution.id)
            busy_nodes.add(node_id or "")

    artifacts = store.get_artifacts()
    keep_ids = mlmd.referenced_artifact_ids(store, list(kept_executions))
    protected_ids = _protected_artifact_ids(store, artifacts, protected_paths)
    report.protected_artifacts = len(protected_ids)
    keep_ids |= protected_ids
    keep_paths = PathSet([a.uri for a in artifacts if a.id in keep_ids] + sorted(protected_paths))

    entries: Dict[str, List[GcEntry]] = {}  # path -> its entries (artifacts sharing a directory share one)

    def add(path: str, artifact_id: Optional[int], reason: str) -> None:
        if keep_paths.overlaps(path) or not is_within(path, root):
            return
        size = tree_size(path) if path not in entries else 0
        entries.setdefault(path, []).append(GcEntry(path, artifact_id, size, reason))

    last_runs = f"the last {len(kept_runs)} runs" if len(kept_runs) != 1 else "the last run"
    unused = f"not used by {last_runs} or a protected model"
    for artifact in artifacts:
        if artifact.id in keep_ids or not artifact.uri:
            continue
        path = _artifact_dir(artifact.uri, root)
        if path is None:
            continue  # outside the pipeline root (pushed versions, input files): never touched
        exists = os.path.lexists(path)
        if artifact.state == mlmd.Artifact.DELETED:
            if exists:
                add(path, None, f"artifact {artifact.id}, already DELETED in ML Metadata, left these files")
            continue
        add(path, artifact.id, f"artifact {artifact.id}: {unused}" + ("" if exists else "; its files were gone"))

    artifact_paths = PathSet(a.uri for a in artifacts)
    # A run record stays with its execution, and with the execution that made an artifact that stays.
    kept_names = {str(i) for i in set(kept_executions) | mlmd.producing_execution_ids(store, list(keep_ids))}
    oldest_kept_us = (kept_runs[0][0].create_time_since_epoch * 1000 - _DRIVER_CLOCK_SLACK_US) if kept_runs else None
    named = {stateful_working_dir_index(e) for e in kept_executions.values()}
    for node_id in _dirs(root):
        node_dir = os.path.join(root, node_id)
        for key in _dirs(node_dir):
            if key == SYSTEM_DIR:
                continue
            for name in _dirs(os.path.join(node_dir, key), with_files=True):
                path = os.path.join(node_dir, key, name)
                if name not in kept_names and not artifact_paths.overlaps(path):
                    add(path, None, "no artifact points here, and no kept execution made it")
        system = os.path.join(node_dir, SYSTEM_DIR)
        for name in _dirs(os.path.join(system, EXECUTOR_EXECUTION)):
            if name.isdigit() and name not in kept_names:
                add(os.path.join(system, EXECUTOR_EXECUTION, name), None,
                    f"run record of execution {name}: not in {last_runs}, made nothing kept")
        if node_id not in busy_nodes:
            for name in _dirs(os.path.join(system, STATEFUL_WORKING_DIR)):
                if name not in named:
                    add(os.path.join(system, STATEFUL_WORKING_DIR, name), None,
                        "working directory of no kept execution")
        for name in _dirs(os.path.join(system, DRIVER_EXECUTION)):
            if name.isdigit() and (oldest_kept_us is None or int(name) < oldest_kept_us):
                add(os.path.join(system, DRIVER_EXECUTION, name), None,
                    f"driver output older than {last_runs}")

    report.entries = [e for path in sorted(entries) for e in entries[path]]
    if dry_run or not report.entries:
        return report
    # ML Metadata first: from here on TFX neither reuses nor resolves these artifacts, whatever happens to
    # the files; a directory that cannot be removed now is found again by the next collection.
    mlmd.set_artifacts_state(store, report.artifact_ids, mlmd.Artifact.DELETED)
    removed = []
    for path in sorted(entries):
        try:
            remove_tree(path)
            removed.extend(entries[path])
        except OSError as err:
            report.not_removed.append(f"{path}: {err.strerror or err}")
    report.entries = removed
    return report


def _protected_artifact_ids(store, artifacts, protected_paths: Set[str]) -> Set[int]:
    """The artifacts whose URI or pushed destination is protected, with everything upstream of them."""
    if not protected_paths:
        return set()
    starts = []
    for a in artifacts:
        destination = a.custom_properties["pushed_destination"].string_value \
            if "pushed_destination" in a.custom_properties else ""
        if (a.uri and os.path.normpath(a.uri) in protected_paths) or \
                (destination and os.path.normpath(destination) in protected_paths):
            starts.append(a.id)
    found = set(starts)
    for i in range(0, len(starts), mlmd.MAX_STARTING_NODES):
        graph = mlmd.lineage_subgraph(store, starts[i:i + mlmd.MAX_STARTING_NODES], mlmd.UPSTREAM)
        found.update(a.id for a in graph.artifacts)
    return found


def _artifact_dir(uri: str, root: str) -> Optional[str]:
    """The directory holding artifact `uri` when it lies under `root`: TFX's `<node>/<key>/<execution id>`
    (a value artifact's URI is the file `value` inside it), else the URI itself; None outside `root`."""
    path = os.path.normpath(uri)
    if not os.path.isabs(path) or not path.startswith(root.rstrip(os.sep) + os.sep):
        return None
    parts = os.path.relpath(path, root).split(os.sep)
    if len(parts) > 3 and parts[1] != SYSTEM_DIR and parts[2].isdigit():
        return os.path.join(root, *parts[:3])
    return path


def _dirs(path: str, with_files: bool = False) -> List[str]:
    """The names of the directories in `path` (and its files too with `with_files`), sorted; symbolic links
    are never listed, so nothing is removed through one."""
    try:
        names = sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        full = os.path.join(path, name)
        if os.path.islink(full):
            continue
        if os.path.isdir(full) or (with_files and os.path.isfile(full)):
            out.append(name)
    return out
