"""What is pushed and what is served, kept in step between a model base path and ML Metadata.

A push (the pipeline's Pusher, or `cvrank index`) writes its version under a staging name
(`serving.base_path`) and records a PushedModel artifact whose custom properties say `pushed_version`,
`pushed_destination` and `cvrank_manifest` (each file's size and SHA-256). Only once that record is
committed is the staged directory renamed into place (`reconcile`). So a version directory a server can
see always has a record, and a failure at any point leaves no new version:

- the write fails (full disk): the executor removes the staging directory, the push is FAILED;
- the record fails, or the process dies before or after it: `reconcile` (run after the Pusher and
  at the start of every run, under the workspace lock) publishes staged versions whose producing
  execution is COMPLETE and removes the others.

`verify` compares what is served with its record, `list_versions` joins the directory with ML Metadata
(run, model, MAP, blessing), `rollback` changes which version is served and records that it did.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Dict, List, Mapping, Optional

from metadata import mlmd
from serving import base_path as bp

ROLLBACK_EXECUTION_TYPE = "cvrank.ServingRollback"
MANIFEST_PROPERTY = "cvrank_manifest"
MAP_PROPERTY = "cvrank_map"


class RollbackError(Exception):
    """The rollback cannot be done; nothing was changed. The message says why."""


def push_properties(version: int, destination: str, manifest: bp.Manifest,
                    map_value: Optional[float] = None) -> Dict[str, mlmd.PropertyValue]:
    """The custom properties of a PushedModel artifact recording version `version` at `destination`
    (TFX Pusher's `pushed`, `pushed_version`, `pushed_destination`, plus the file manifest and the
    candidate's overall MAP when known)."""
    props: Dict[str, mlmd.PropertyValue] = {
        "pushed": 1, "pushed_version": str(version), "pushed_destination": os.path.abspath(destination),
        MANIFEST_PROPERTY: bp.manifest_to_json(manifest)}
    if map_value is not None:
        props[MAP_PROPERTY] = float(map_value)
    return props


# -- records ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class PushRecord:
    """One PushedModel artifact of a version, with what produced it."""
    artifact: mlmd.Artifact
    execution: Optional[mlmd.Execution]
    execution_type: str
    run_id: Optional[str]
    model_uri: Optional[str]
    blessed: Optional[bool]

    @property
    def manifest(self) -> Optional[bp.Manifest]:
        props = self.artifact.custom_properties
        return bp.manifest_from_json(props[MANIFEST_PROPERTY].string_value) if MANIFEST_PROPERTY in props else None

    @property
    def map_value(self) -> Optional[float]:
        props = self.artifact.custom_properties
        return props[MAP_PROPERTY].double_value if MAP_PROPERTY in props else None

    @property
    def complete(self) -> bool:
        return self.execution is not None and self.execution.last_known_state in (
            mlmd.Execution.COMPLETE, mlmd.Execution.CACHED)

    @property
    def pushed_at(self) -> str:
        ms = self.artifact.create_time_since_epoch
        return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def push_records(store, base_path: str) -> Dict[int, PushRecord]:
    """{version: record} of every PushedModel (pushed = 1) whose destination is a version directory of
    `base_path`; for a number recorded twice, the newest record."""
    base_path = os.path.abspath(base_path)
    try:
        artifacts = store.get_artifacts_by_type(mlmd.PUSHED_MODEL_TYPE)
    except Exception:  # no PushedModel type yet: nothing was ever pushed
        return {}
    records: Dict[int, PushRecord] = {}
    for artifact in sorted(artifacts, key=lambda a: a.id):
        props = artifact.custom_properties
        destination = props["pushed_destination"].string_value if "pushed_destination" in props else ""
        if props["pushed"].int_value != 1 or os.path.dirname(destination) != base_path:
            continue
        name = os.path.basename(destination)
        if not name.isdigit():
            continue
        found = mlmd.producer(store, artifact.id)
        execution, type_name, inputs = found if found else (None, "", {})
        model = (inputs.get("model") or [None])[0]
        blessing = (inputs.get("model_blessing") or [None])[0]
        blessed = mlmd.blessed(blessing)
        if model is None and "source_model" in inputs:  # an index update: the model of its source version
            model_uri = f"index update of version {inputs['source_model'][0].custom_properties['pushed_version'].string_value}"
        else:
            model_uri = model.uri if model is not None else None
        records[int(name)] = PushRecord(artifact, execution, type_name,
                                        mlmd.execution_run_id(store, execution.id) if execution else None, model_uri, blessed)
    return records


# -- reconciling staged versions --------------------------------------------------------------------


def reconcile(store, base_path: str) -> List[str]:
    """Publishes each staged version of `base_path` whose push is recorded as COMPLETE in ML Metadata, with
    files matching the record, and removes every other staged version (its push failed or its process died). Call it only while
    holding the workspace lock, so no push is in progress. Returns one sentence per action."""
    staged = bp.staged_versions(base_path)
    if not staged:
        return []
    records = push_records(store, base_path)
    notes = []
    for version in sorted(staged):
        record = records.get(version)
        # The files must also be the ones recorded: a number can be recorded twice when the base path was
        # deleted and numbering started again.
        if record is not None and record.complete and record.manifest and not bp.check_files(
                staged[version], record.manifest):
            bp.publish_version(base_path, version)
            notes.append(f"version {version}: its push was recorded, so it is now published")
        else:
            bp.discard_staged(base_path, version)
            notes.append(f"version {version}: its push was never recorded (the push failed or its process "
                         "ended), so the partial copy was removed")
    return notes


# -- verifying --------------------------------------------------------------------------------------


@dataclasses.dataclass
class VersionCheck:
    """The result of checking one version directory: `problems` (empty when intact) and `checked`, how it
    was checked."""
    version: int
    path: str
    record: Optional[PushRecord]
    problems: List[str]
    checked: str  # how: "files match the push record", "saved_model.pb parses", ...

    @property
    def ok(self) -> bool:
        return not self.problems


def check_version(version: int, path: str, record: Optional[PushRecord]) -> VersionCheck:
    """Checks version directory `path` against its push record's manifest; without a manifest, checks
    that saved_model.pb is present and parses."""
    manifest = record.manifest if record is not None else None
    if manifest:
        problems = bp.check_files(path, manifest)
        total = sum(int(f["bytes"]) for f in manifest.values())
        return VersionCheck(version, path, record, problems,
                            f"{len(manifest)} files, {total:,} bytes, match the push record")
    saved_model = os.path.join(path, bp.SAVED_MODEL)
    if not os.path.isfile(saved_model):
        return VersionCheck(version, path, record, [f"{bp.SAVED_MODEL} is missing"], "")
    try:
        from serving.versions import read_signature_defs

        read_signature_defs(path)
    except Exception as err:  # a truncated or foreign file: protobuf's DecodeError, ValueError, ...
        return VersionCheck(version, path, record, [f"{bp.SAVED_MODEL} does not parse: {err}"], "")
    return VersionCheck(version, path, record, [], f"{bp.SAVED_MODEL} parses (no file manifest recorded)")


def verify(store, base_path: str, until_intact: bool = False,
           records: Optional[Dict[int, PushRecord]] = None) -> List[VersionCheck]:
    """Checks the versions present under `base_path`, newest (the served one) first: all of them, or
    with `until_intact` up to the first intact one (what a run summary needs). `records` are
    `push_records(store, base_path)` when the caller already has them."""
    records = push_records(store, base_path) if records is None else records
    present = bp.versions_on_disk(base_path)
    checks = []
    for version in sorted(present, reverse=True):
        checks.append(check_version(version, present[version], records.get(version)))
        if until_intact and checks[-1].ok:
            break
    return checks


def fix_for(checks: List[VersionCheck]) -> str:
    """What to do when the newest version of `checks` (verify's order) is broken."""
    intact = [c.version for c in checks[1:] if c.ok]
    if intact:
        return (f"fix: `bin/cvrank serving rollback {intact[0]}` serves version {intact[0]}, the newest intact "
                f"one (version {checks[0].version} is kept aside and can be restored)")
    return ("fix: no intact version is left to roll back to; `bin/cvrank serving rollback` cannot help. "
            f"Remove {checks[0].path} and re-run the pipeline with a changed setting to push a new model")


def served_line(checks: List[VersionCheck]) -> str:
    """One line for a run summary: which version is served and whether it is intact."""
    if not checks:
        return "served: no version (nothing under the model base path)"
    newest = checks[0]
    origin = ""
    if newest.record is not None and newest.record.run_id:
        origin = f", pushed by run {newest.record.run_id}"
    elif newest.record is None:
        origin = ", not recorded in ML Metadata"
    if newest.ok:
        return f"served: version {newest.version}{origin}: {newest.checked}"
    return (f"served: version {newest.version}{origin} is BROKEN: {'; '.join(newest.problems)}\n"
            f"  {fix_for(checks)}")


# -- listing ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class VersionRow:
    """A version of a model base path, its state and its push record (None when not recorded)."""
    version: int
    state: str  # served, present, retired, deleted
    record: Optional[PushRecord]


def list_versions(store, base_path: str) -> List[VersionRow]:
    """Every version of `base_path`, newest first: present ones (the newest is `served`), retired ones
    (taken out by a rollback), and recorded ones whose directory no longer exists (`deleted`)."""
    records = push_records(store, base_path)
    present = bp.versions_on_disk(base_path)
    retired = bp.retired_versions(base_path)
    served = max(present) if present else None
    rows = []
    for version in sorted(set(present) | set(retired) | set(records), reverse=True):
        if version in present:
            state = "served" if version == served else "present"
        else:
            state = "retired" if version in retired else "deleted"
        rows.append(VersionRow(version, state, records.get(version)))
    return rows


def format_versions(rows: List[VersionRow]) -> str:
    """`rows` as a table for a terminal, one line per version."""
    header = f"{'version':>8}  {'state':<8}  {'pushed at':<19}  {'run':<26}  {'MAP':>7}  {'blessed':<7}  model"
    lines = [header]
    for row in rows:
        r = row.record
        run = (r.run_id or (r.execution_type or "-")) if r else "not recorded"
        map_text = f"{r.map_value:.4f}" if r and r.map_value is not None else "-"
        blessed = "-" if not r or r.blessed is None else ("yes" if r.blessed else "no")
        lines.append(f"{row.version:>8}  {row.state:<8}  {r.pushed_at if r else '-':<19}  {run:<26}  "
                     f"{map_text:>7}  {blessed:<7}  {(r.model_uri if r else None) or '-'}")
    return "\n".join(lines)


# -- rollback ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class RollbackResult:
    """What a rollback did: the served version before and after, versions set aside and brought back."""
    served_before: Optional[int]
    served_after: int
    retired: List[int]
    restored: List[int]
    execution_id: int


def rollback(store, base_path: str, pipeline_name: str, version: int) -> RollbackResult:
    """Makes `version` the served one by TF Serving's rule (the newest present version): every present
    version newer than it is retired, and it is restored if it was retired. Recorded in ML Metadata as a
    `cvrank.ServingRollback` execution with the PushedModel records of the versions it served and
    retired. Reversible: rolling back to a retired version restores it. Raises RollbackError (nothing
    changed) when `version` is neither present nor retired, or its files do not match its record."""
    base_path = os.path.abspath(base_path)
    present, retired = bp.versions_on_disk(base_path), bp.retired_versions(base_path)
    if version not in present and version not in retired:
        known = sorted(set(present) | set(retired))
        raise RollbackError(f"version {version} is not under {base_path} (versions: "
                            f"{', '.join(map(str, known)) or 'none'})")
    records = push_records(store, base_path)
    path = present.get(version) or retired[version]
    check = check_version(version, path, records.get(version))
    if not check.ok:
        raise RollbackError(f"version {version} is broken ({'; '.join(check.problems)}); not serving it")
    served_before = max(present) if present else None
    # Oldest first, and the target restored before any: the newest present version, which a server
    # loads, only ever steps straight from the old served version to `version`.
    to_retire = sorted(v for v in present if v > version)
    to_restore = [version] if version in retired else []
    inputs = [("served", records[version].artifact)] if version in records else []
    inputs += [("retired", records[v].artifact) for v in to_retire if v in records]
    execution_id = mlmd.put_execution_with_lineage(
        store, ROLLBACK_EXECUTION_TYPE, pipeline_name, inputs, [], {
            "base_path": base_path, "served_before": served_before if served_before is not None else -1,
            "served_after": version, "retired": ",".join(map(str, to_retire)),
            "restored": ",".join(map(str, to_restore))})
    done: List[tuple] = []
    try:
        for v in to_restore:
            bp.restore_version(base_path, v)
            done.append((bp.retire_version, v))
        for v in to_retire:
            bp.retire_version(base_path, v)
            done.append((bp.restore_version, v))
    except BaseException:
        for undo, v in reversed(done):
            try:
                undo(base_path, v)
            except OSError:  # keep undoing the rest; the original error is the one to report
                pass
        mlmd.finish_execution(store, execution_id, mlmd.Execution.FAILED)
        raise
    mlmd.finish_execution(store, execution_id, mlmd.Execution.COMPLETE)
    return RollbackResult(served_before, version, to_retire, to_restore, execution_id)


def rollback_history(store, pipeline_name: str) -> List[Mapping[str, str]]:
    """The COMPLETE rollbacks recorded for `pipeline_name`, oldest first, as {property: value}."""
    context = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if context is None:
        return []
    try:
        type_id = store.get_execution_type(ROLLBACK_EXECUTION_TYPE).id
    except Exception:
        return []
    result = []
    for execution in sorted(store.get_executions_by_context(context.id), key=lambda e: e.id):
        if execution.type_id == type_id and execution.last_known_state == mlmd.Execution.COMPLETE:
            props = execution.custom_properties
            result.append({k: str(getattr(props[k], props[k].WhichOneof("value"))) for k in props})
    return result
