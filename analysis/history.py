"""The run history of a pipeline from ML Metadata: one row per pipeline run (`cvrank runs`, the table a
sweep ends with), and the executor time that cached steps saved.

A row is read from the run's "pipeline_run" context (its start time and the properties
orchestration.provenance records: settings, git commit) and from the run's executions: which nodes ran
their executor (COMPLETE), which reused an earlier execution (CACHED), which failed, the Evaluator's
overall metrics (custom properties of its ModelEvaluation output), its blessing and the Pusher's pushed
version.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
from typing import Dict, Iterable, List, Optional, Sequence, TextIO

from ml_metadata.metadata_store import metadata_store

from evaluation import ranking
from metadata import mlmd
from orchestration import provenance

_NDCG = ranking.NDCG_NAME


@dataclasses.dataclass
class RunRow:
    """One pipeline run. Times are UTC; metrics are the served ranking's on the eval jobs (lenient)."""
    run_id: str
    started: datetime.datetime
    wall_seconds: Optional[float]  # from the run's start to its last execution's last update
    settings: Optional[Dict[str, object]]  # the settings that differ from the defaults (None: not recorded)
    executed: List[str]  # nodes whose executor ran (COMPLETE)
    cached: List[str]  # nodes that reused an earlier execution's outputs (CACHED)
    failed: List[str]  # nodes that failed or were cancelled
    map: Optional[float]
    ndcg10: Optional[float]
    blessed: Optional[bool]
    pushed_version: Optional[str]  # the version this run's Pusher pushed (None: it pushed nothing)
    git_commit: str  # "" when not recorded
    git_dirty: str  # "yes", "no", or "" when not known
    evaluation_uri: Optional[str]

    @property
    def commit(self) -> str:
        """The commit's first 12 characters, with "+dirty" when the tree had changes ("" when unknown)."""
        return self.git_commit[:12] + ("+dirty" if self.git_dirty == "yes" else "") if self.git_commit else ""



def _settings_text(settings: Dict[str, object]) -> str:
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in settings.items())


@dataclasses.dataclass
class CacheSavings:
    """The executor time that cached executions did not spend: for each CACHED execution, the recorded
    duration of the execution that produced the outputs it reused."""
    seconds: float
    cached_executions: int
    by_node: Dict[str, float]


def _node_of(store: metadata_store.MetadataStore, pipeline_name: str, execution_id: int) -> Optional[str]:
    return mlmd.execution_node_and_run(store, pipeline_name, execution_id)[0]


def _is_resolver(store: metadata_store.MetadataStore, execution: mlmd.Execution, types: Dict[int, str]) -> bool:
    # A resolver node looks up artifacts every run; it has no executor, so it is neither run nor cached.
    if execution.type_id not in types:
        [execution_type] = store.get_execution_types_by_id([execution.type_id])
        types[execution.type_id] = execution_type.name
    return "resolver" in types[execution.type_id].lower()


def _float(artifact, name: str) -> Optional[float]:
    if artifact is None or name not in artifact.custom_properties:
        return None
    return artifact.custom_properties[name].double_value


def run_rows(store: metadata_store.MetadataStore, pipeline_name: str,
             run_ids: Optional[Iterable[str]] = None) -> List[RunRow]:
    """The runs of `pipeline_name` (those of `run_ids` only, when given), oldest first."""
    wanted = set(run_ids) if run_ids is not None else None
    types: Dict[int, str] = {}
    rows = []
    for context, executions in mlmd.pipeline_runs(store, pipeline_name):
        if wanted is not None and context.name not in wanted:
            continue
        executed, cached, failed = [], [], []
        latest: Dict[str, mlmd.Execution] = {}
        for execution in executions:  # oldest first: a node retried in the run counts once, as it ended
            node = _node_of(store, pipeline_name, execution.id)
            if node is not None and not _is_resolver(store, execution, types):
                latest[node] = execution
        for node, execution in latest.items():
            state = mlmd.state_name(execution.last_known_state)
            {"COMPLETE": executed, "CACHED": cached}.get(state, failed if state in ("FAILED", "CANCELED") else []).append(node)
        outputs = {node: mlmd.execution_outputs(store, latest[node].id) for node in ("Evaluator", "Pusher")
                   if node in latest}
        evaluation = (outputs.get("Evaluator", {}).get("evaluation") or [None])[0]
        blessing = (outputs.get("Evaluator", {}).get("blessing") or [None])[0]
        pushed = (outputs.get("Pusher", {}).get("pushed_model") or [None])[0]
        pushed_version = mlmd.pushed_version(pushed) if "Pusher" in executed else None  # cached: an earlier push
        properties = mlmd.run_properties(store, context.name)
        # A killed run's executions are marked CANCELED when a later run recovers: not when this one ended.
        ended = [e.last_update_time_since_epoch for e in executions if e.last_known_state != mlmd.Execution.CANCELED]

        rows.append(RunRow(
            run_id=context.name,
            started=datetime.datetime.fromtimestamp(context.create_time_since_epoch / 1000, datetime.timezone.utc),
            wall_seconds=max(0.0, (max(ended) - context.create_time_since_epoch) / 1000) if ended else None,
            settings=provenance.settings_of(properties) if provenance.SETTINGS in properties else None,
            executed=executed, cached=cached, failed=failed,
            map=_float(evaluation, ranking.MAP_NAME), ndcg10=_float(evaluation, _NDCG),
            blessed=mlmd.blessed(blessing),
            pushed_version=pushed_version,
            git_commit=str(properties.get(provenance.GIT_COMMIT, "")),
            git_dirty=str(properties.get(provenance.GIT_DIRTY, "")),
            evaluation_uri=evaluation.uri if evaluation is not None else None))
    return rows


def cache_savings(store: metadata_store.MetadataStore, pipeline_name: str, run_ids: Iterable[str]) -> CacheSavings:
    """What the CACHED executions of runs `run_ids` saved: per node, the summed duration (creation to last
    update, as ML Metadata recorded them) of the executions whose outputs they reused."""
    wanted = set(run_ids)
    by_node: Dict[str, float] = {}
    count = 0
    for context, executions in mlmd.pipeline_runs(store, pipeline_name):
        if context.name not in wanted:
            continue
        for execution in executions:
            if execution.last_known_state != mlmd.Execution.CACHED:
                continue
            original = _original_execution(store, execution.id)
            if original is None:
                continue
            node = _node_of(store, pipeline_name, execution.id) or "?"
            seconds = (original.last_update_time_since_epoch - original.create_time_since_epoch) / 1000
            by_node[node] = by_node.get(node, 0.0) + max(0.0, seconds)
            count += 1
    return CacheSavings(sum(by_node.values()), count, by_node)


def _original_execution(store: metadata_store.MetadataStore, cached_execution_id: int) -> Optional[mlmd.Execution]:
    """The execution that produced the outputs a CACHED execution reused: their first producer."""
    outputs = [a for artifacts in mlmd.execution_outputs(store, cached_execution_id).values() for a in artifacts]
    if not outputs:
        return None
    found = mlmd.producer(store, outputs[0].id)
    if found is None or found[0].id == cached_execution_id:
        return None
    return found[0]


# -- formatting -------------------------------------------------------------------------------------

COLUMNS = ("run", "started (UTC)", "settings", "executed", "cached", "failed", "MAP", "NDCG@10", "blessed",
           "pushed", "wall s", "commit")


def by_map(rows: Sequence[RunRow]) -> List[RunRow]:
    """`rows` best MAP first; runs without a MAP last, in their order."""
    return sorted(rows, key=lambda r: (r.map is None, -(r.map or 0.0)))


def common_settings(rows: Sequence[RunRow]) -> Dict[str, object]:
    """The settings (name: value) that every row with recorded settings has, when there are two or more
    such rows ({} otherwise)."""
    recorded = [r.settings for r in rows if r.settings is not None]
    if len(recorded) < 2:
        return {}
    return {k: v for k, v in recorded[0].items() if all(k in s and s[k] == v for s in recorded[1:])}


def yes_no(value: Optional[bool]) -> str:
    """A blessing (or any known-or-not flag) as the runs table shows it: yes, no, or - when unknown."""
    return {True: "yes", False: "no", None: "-"}[value]


def _cells(row: RunRow, common: Dict[str, object]) -> List[str]:
    def number(value: Optional[float], digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    if row.settings is None:
        settings = "(not recorded)"
    else:
        settings = _settings_text({k: v for k, v in row.settings.items() if k not in common}) or (
            "(defaults)" if not row.settings else "(common)")
    return [row.run_id, row.started.strftime("%Y-%m-%d %H:%M:%S"), settings,
            str(len(row.executed)), str(len(row.cached)), ",".join(row.failed) or "-", number(row.map, 4),
            number(row.ndcg10, 4),
            yes_no(row.blessed), row.pushed_version or "-",
            number(row.wall_seconds, 1), row.commit or "-"]


def format_table(rows: Sequence[RunRow]) -> str:
    """`rows` as an aligned text table with a heading line (columns: COLUMNS). Settings that all rows
    share (`common_settings`) are said once, on a line before the table, not in each row."""
    common = common_settings(rows)
    table = [list(COLUMNS)] + [_cells(r, common) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {3, 4, 6, 7, 10}
    before = f"settings shared by the runs below (that recorded theirs): {_settings_text(common)}\n" if common else ""
    return before + "\n".join("  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in table)


CSV_FIELDS = ("run_id", "started", "wall_seconds", "settings", "executed", "cached", "failed", "map", "ndcg10",
              "blessed", "pushed_version", "git_commit", "git_dirty", "evaluation_uri")


def write_csv(rows: Sequence[RunRow], out: TextIO) -> None:
    """`rows` as CSV with a header (CSV_FIELDS): settings as a JSON object ("" when not recorded), node
    lists space-separated,
    times in ISO 8601, numbers in full."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow([r.run_id, r.started.isoformat(), "" if r.wall_seconds is None else f"{r.wall_seconds:.3f}",
                         "" if r.settings is None else json.dumps(r.settings), " ".join(r.executed), " ".join(r.cached), " ".join(r.failed),
                         "" if r.map is None else repr(r.map), "" if r.ndcg10 is None else repr(r.ndcg10),
                         "" if r.blessed is None else str(r.blessed).lower(), r.pushed_version or "",
                         r.git_commit, r.git_dirty, r.evaluation_uri or ""])
