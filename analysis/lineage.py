"""`cvrank lineage`: a pushed model traced back through ML Metadata to the executions and artifacts that
produced it, with each execution's parameters, run, cache state and code version.

The lineage of a pushed version is read from one upstream lineage subgraph of its PushedModel artifact
(`metadata.mlmd.lineage_subgraph`). In that subgraph an artifact can have several executions with an
output event to it: the one that produced it (the first COMPLETE one) and the
CACHED executions of later runs that reused it. The lineage keeps the producers only: starting from the
pushed model, each execution is the producer of an artifact, its inputs are the artifacts it consumed,
and so on up to artifacts nothing produced (cvrank's CV files) or that came from outside (the dataset
files an ExampleGen read, shown with their fingerprints).

Each execution is shown with its state relative to the pushing run (the run whose Pusher recorded the
version; for a version pushed by `cvrank index`, the run that pushed the version it started from):

    executed   the pushing run executed it
    cached     the pushing run reused its outputs: that run's own execution of the node was CACHED
    other run  another run executed it and the pushing run did not reuse it (e.g. the baseline model the
               Evaluator compared against)
    outside    it ran outside any pipeline run (`cvrank index`)

and with the git commit of the run that executed it (the "pipeline_run" context's `git_commit` and
`git_dirty`, orchestration.provenance).

Two facts are not in the lineage graph and are added from ML Metadata otherwise:
- FileCheck is a task dependency of the ExampleGens, not an artifact input, so the checked data files
  (path, rows, bytes, SHA-256) of an ExampleGen come from the FileCheck output of the ExampleGen's run.
- No artifact records the Transform vocabulary size; it is counted from the vocabulary files of the
  TransformGraph output (`transformed_metadata/asset_map` names them, one token per line). The
  CooccurrenceMatrix `vocab_size` property and the Model's `vocab_size` are the size of the same `vocab`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Dict, Iterator, List, Optional, Sequence, Tuple


from analysis import reports_dir
from config import PipelineConfig
from evaluation import ranking
from metadata import mlmd
from orchestration import provenance
from serving import base_path, pushes

FORMATS = ("text", "dot", "svg", "png")
PICTURE_FORMATS = ("svg", "png")

EXECUTED, CACHED, OTHER_RUN, OUTSIDE = "executed", "cached", "other run", "outside"

_PRODUCED = (mlmd.Event.OUTPUT, mlmd.Event.DECLARED_OUTPUT)
_CONSUMED = (mlmd.Event.INPUT, mlmd.Event.DECLARED_INPUT)

# How components/file_check records the checked dataset (a task dependency of the ExampleGens).
FILE_CHECK_NODE = "FileCheck"
FILES_JSON = "files.json"  # components/file_check's record of the files (importing it would import TFX)
TRANSFORM_GRAPH_TYPE = "TransformGraph"

_NDCG = ranking.NDCG_NAME
# The properties worth a line, per artifact type; other types show their short scalar properties.
_ARTIFACT_KEYS: Dict[str, Tuple[str, ...]] = {
    "Examples": ("split_names", "num_jobs", "num_cvs", "num_corpus_texts", "num_judgments", "warnings"),
    "CooccurrenceMatrix": ("vocab_size", "nonzeros", "total_weight"),
    "Model": ("vocab_size", "final_loss", "index_size", "fusion_hybrid", "fusion_lexical_weight",
              "fusion_feedback_weight", "fusion_feedback_docs"),
    "ModelBlessing": ("blessed",),
    "ModelEvaluation": (ranking.MAP_NAME, _NDCG, ranking.MAP_NAME + ranking.STRICT_SUFFIX,
                        _NDCG + ranking.STRICT_SUFFIX),
    mlmd.PUSHED_MODEL_TYPE: ("pushed_version", "pushed_destination", pushes.MANIFEST_PROPERTY, "index_size",
                             "cvs_added"),
}
# TFX bookkeeping on every artifact, not what it holds.
_ARTIFACT_NOISE = frozenset({"tfx_version", "is_external", "stats_dashboard_link", "sample_rate_by_split",
                             "payload_format", "file_format", "span", "state"})
# Execution properties that are encodings or switches left at TFX's defaults: shown only when they differ.
_PARAMETER_DEFAULTS = {"span": "0", "disable_statistics": "0", "force_tf_compat_v1": "0",
                       "output_data_format": None, "output_file_format": None}
# Parameters first in this order (the ones a reader compares between runs), then the rest by name.
_PARAMETER_ORDER = ("input_base", "input_config", "output_config", "input_fingerprint", "schema_file",
                    "preprocessing_fn", "custom_config", "splits_config", "vocabulary_size", "token_feature",
                    "window_size", "symmetric", "distance_weighting", "num_shards", "embedding_dim", "epochs",
                    "learning_rate", "x_max", "alpha", "seed", "batch_size", "doc_weighting", "hybrid_ranking",
                    "top_k", "example_splits", "eval_config", "push_destination", "source_version",
                    "pushed_version", "data files")
_LONG = 80  # characters: longer values are summarized or cut


class LineageError(Exception):
    """The lineage cannot be shown; the message names the problem (unknown version, nothing pushed,
    Graphviz missing or failing)."""


@dataclasses.dataclass
class LineageArtifact:
    """An artifact of the lineage: the pushed model or an input of one of its executions."""
    id: int
    type: str
    uri: str
    state: str  # LIVE, DELETED (removed by `cvrank gc`), ...
    properties: List[Tuple[str, str]]  # the key properties, as display text
    producer: Optional[int]  # the id of the execution that produced it; None when none did (e.g. CV files)


@dataclasses.dataclass
class LineageNode:
    """An execution of the lineage: the producer of the pushed model or of an input of another node.

    `node_id` is the pipeline node ("GloveTrainer", "texts_example_gen", ...) or, for an execution outside
    the pipeline's nodes, its execution type (`cvrank.CvIndexUpdate`). `run_id` is the run that executed
    it (None outside a run); `state` is EXECUTED, CACHED, OTHER_RUN or OUTSIDE (module docstring) and
    `cached_by` the pushing run's CACHED execution of the node when CACHED. `git_commit`/`git_dirty` are
    the executing run's recorded properties (None: the run recorded none). `inputs` are the artifacts it
    consumed by input key, `outputs` those of its outputs that are in the lineage, by output key;
    `upstream` the nodes that produced its inputs, the latest first (each node once)."""
    execution_id: int
    node_id: str
    type: str
    run_id: Optional[str]
    state: str
    cached_by: Optional[int]
    git_commit: Optional[str]
    git_dirty: Optional[str]
    parameters: List[Tuple[str, str]]
    inputs: List[Tuple[str, LineageArtifact]]
    outputs: List[Tuple[str, LineageArtifact]]
    upstream: List["LineageNode"] = dataclasses.field(default_factory=list, repr=False)
    data_files: List[Dict[str, object]] = dataclasses.field(default_factory=list)  # FileCheck's, for ExampleGens

    @property
    def commit(self) -> str:
        """The commit as shown: 12 characters, "+dirty" when the tree had uncommitted changes; "not
        recorded" when the run recorded no commit (or ran outside a run), "not a git checkout" when empty."""
        if self.git_commit is None:
            return "not recorded"
        if not self.git_commit:
            return "not a git checkout"
        return self.git_commit[:12] + ("+dirty" if self.git_dirty == "yes" else "")

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1] if self.type.startswith(("tfx.", "components.")) else self.type

    @property
    def state_text(self) -> str:
        if self.state == EXECUTED:
            return "executed in this run"
        if self.state == CACHED:
            return f"cached: reused from run {self.run_id}"
        if self.state == OTHER_RUN:
            return f"executed in run {self.run_id}"
        return "executed outside a pipeline run"


@dataclasses.dataclass
class ModelLineage:
    """What produced pushed model `version` of `pipeline_name`: `root` (the execution that pushed it, the
    top of the tree), every node by execution id, every artifact by id. `pushing_run` is the run the
    states are relative to (module docstring); None when no execution of the lineage belongs to a run."""
    pipeline_name: str
    version: str
    pushed_model: LineageArtifact
    pushing_run: Optional[str]
    root: LineageNode
    nodes: Dict[int, LineageNode]
    artifacts: Dict[int, LineageArtifact]

    @property
    def execution_ids(self) -> List[int]:
        return sorted(self.nodes)

    @property
    def artifact_ids(self) -> List[int]:
        return sorted(self.artifacts)

    def walk(self) -> Iterator[LineageNode]:
        """Every node once, depth first from the root in the order of `upstream`."""
        seen = set()
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.execution_id in seen:
                continue
            seen.add(node.execution_id)
            yield node
            stack.extend(reversed(node.upstream))

    def by_node_id(self, node_id: str) -> List[LineageNode]:
        """The nodes of pipeline node `node_id`, oldest execution first (several when, e.g., the baseline
        model's trainer is in the lineage too)."""
        return sorted((n for n in self.nodes.values() if n.node_id == node_id), key=lambda n: n.execution_id)


# -- finding the pushed model -----------------------------------------------------------------------


def _pushed_model(store, config: PipelineConfig, version: str) -> Tuple[str, mlmd.Artifact]:
    """(version, PushedModel artifact) of `version` ("latest": the most recent push record, digits or
    "v<digits>") among the push records of the model base path of `config` (serving.pushes)."""
    records = pushes.push_records(store, config.serving_dir)
    if not records:
        raise LineageError(f"no pushed model: nothing was pushed to {config.serving_dir} (ML Metadata holds no "
                           "push record of it); run `cvrank run` first")
    if version == "latest":
        newest = max(records, key=lambda v: records[v].artifact.id)  # the most recent push record
        return str(newest), records[newest].artifact
    wanted = version[1:] if version[:1] in ("v", "V") else version
    if not wanted.isdigit():
        raise LineageError(f"version {version!r} is not a version number or 'latest'")
    if int(wanted) not in records:
        known = ", ".join(str(v) for v in sorted(records))
        raise LineageError(f"no pushed model version {int(wanted)} in {config.serving_dir} (pushed versions: {known})")
    return str(int(wanted)), records[int(wanted)].artifact


# -- building the lineage ---------------------------------------------------------------------------


def model_lineage(store, config: PipelineConfig, version: str = "latest") -> ModelLineage:
    """The lineage of pushed model `version` ("latest": the most recently pushed) of the pipeline and
    model base path of `config`, read from ML Metadata `store` (module docstring). Raises LineageError
    when nothing was pushed, when `version` was not pushed or is not a number."""
    pipeline_name = config.pipeline_name
    version, pushed = _pushed_model(store, config, version)
    graph = mlmd.lineage_subgraph(store, [pushed.id], mlmd.UPSTREAM)
    raw_artifacts = {a.id: a for a in graph.artifacts}
    executions = {e.id: e for e in graph.executions}
    writers: Dict[int, List[int]] = {}  # artifact -> executions with an output event to it
    output_key: Dict[Tuple[int, int], str] = {}
    consumed: Dict[int, List[Tuple[str, int, int]]] = {}  # execution -> (key, index, artifact)
    for ev in graph.events:
        key = ev.path.steps[0].key if ev.path.steps else ""
        if ev.type in _PRODUCED:
            writers.setdefault(ev.artifact_id, []).append(ev.execution_id)
            output_key[(ev.execution_id, ev.artifact_id)] = key
        elif ev.type in _CONSUMED:
            index = ev.path.steps[1].index if len(ev.path.steps) > 1 else 0
            consumed.setdefault(ev.execution_id, []).append((key, index, ev.artifact_id))

    def producer_of(artifact_id: int) -> Optional[int]:
        ids = sorted(set(writers.get(artifact_id, [])))
        complete = [i for i in ids if executions[i].last_known_state == mlmd.Execution.COMPLETE]
        return (complete or ids or [None])[0]

    # The producers, from the pushed model up: the executions and artifacts of the lineage.
    producers: Dict[int, Optional[int]] = {}
    lineage_executions: List[int] = []
    frontier = [pushed.id]
    while frontier:
        artifact_id = frontier.pop()
        if artifact_id in producers:
            continue
        producers[artifact_id] = producer_of(artifact_id)
        execution_id = producers[artifact_id]
        if execution_id is not None and execution_id not in lineage_executions:
            lineage_executions.append(execution_id)
            frontier.extend(a for _, _, a in consumed.get(execution_id, []))

    types = _names(store.get_execution_types_by_id(sorted({executions[i].type_id for i in lineage_executions})))
    artifact_types = _names(store.get_artifact_types_by_id(sorted({raw_artifacts[a].type_id for a in producers})))
    artifacts = {a: _artifact(raw_artifacts[a], artifact_types[raw_artifacts[a].type_id], producers[a])
                 for a in sorted(producers)}

    placed = {e: mlmd.execution_node_and_run(store, pipeline_name, e) for e in lineage_executions}
    # The run of the pushing execution; for a push outside a run (`cvrank index`), the run of the nearest
    # execution below it that has one (the Pusher of the version the index update started from).
    root_id = producers[pushed.id]
    pushing_run = next((placed[e][1] for e in [root_id] + sorted(lineage_executions, reverse=True)
                        if placed[e][1]), None)
    # The pushing run's CACHED executions that output an artifact of the lineage: what that run reused.
    run_context = store.get_context_by_type_and_name("pipeline_run", pushing_run) if pushing_run else None
    in_pushing_run = {e.id for e in store.get_executions_by_context(run_context.id)} if run_context else set()
    reused: Dict[int, List[int]] = {}  # artifact -> the pushing run's CACHED executions that output it
    for artifact_id in producers:
        for e in writers.get(artifact_id, []):
            if e in in_pushing_run and e != producers[artifact_id] and \
                    executions[e].last_known_state == mlmd.Execution.CACHED:
                reused.setdefault(artifact_id, []).append(e)

    run_props: Dict[str, Dict[str, mlmd.PropertyValue]] = {}
    nodes: Dict[int, LineageNode] = {}
    for execution_id in lineage_executions:
        execution = executions[execution_id]
        node_id, run_id = placed[execution_id]
        outputs = sorted(((output_key[(execution_id, a)], artifacts[a]) for a in producers
                          if producers[a] == execution_id), key=lambda item: (item[0], item[1].id))
        cached_by = next((e for _, art in outputs for e in reused.get(art.id, [])
                          if mlmd.execution_node_and_run(store, pipeline_name, e)[0] == node_id), None)
        if run_id is None:
            state = OUTSIDE
        elif run_id == pushing_run:
            state = EXECUTED
        else:
            state = CACHED if cached_by is not None else OTHER_RUN
        if run_id is not None and run_id not in run_props:
            run_props[run_id] = mlmd.run_properties(store, run_id)
        props = run_props.get(run_id, {}) if run_id else {}
        inputs = [(key, artifacts[a]) for key, _, a in sorted(consumed.get(execution_id, []))]
        node = LineageNode(
            execution_id=execution_id, node_id=node_id or types[execution.type_id], type=types[execution.type_id],
            run_id=run_id, state=state, cached_by=cached_by,
            git_commit=str(props[provenance.GIT_COMMIT]) if provenance.GIT_COMMIT in props else None,
            git_dirty=str(props.get(provenance.GIT_DIRTY, "")) if provenance.GIT_COMMIT in props else None,
            parameters=[], inputs=inputs, outputs=outputs)
        node.parameters = _parameters(store, pipeline_name, execution, node)
        nodes[execution_id] = node
    for node in nodes.values():
        # The latest producer first: it is the most downstream one, so the longest chain unfolds first.
        ids = sorted({art.producer for _, art in node.inputs if art.producer is not None}, reverse=True)
        node.upstream = [nodes[i] for i in ids]
    return ModelLineage(pipeline_name, version, artifacts[pushed.id], pushing_run, nodes[root_id], nodes, artifacts)


def _names(types) -> Dict[int, str]:
    return {t.id: t.name for t in types}


def _value(value) -> object:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("struct_value", "proto_value"):
        return _STRUCTURED
    return getattr(value, kind)


_STRUCTURED = object()  # a struct or proto property: not shown


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if value.is_integer() and abs(value) < 1e6 else f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def _cut(text: str) -> str:
    return text if len(text) <= _LONG else f"{text[:_LONG - 20]}... ({len(text):,} characters)"


def _artifact(artifact: mlmd.Artifact, type_name: str, producer: Optional[int]) -> LineageArtifact:
    values = {}
    for source in (artifact.properties, artifact.custom_properties):
        for name, value in source.items():
            values[name] = _value(value)
    keys = _ARTIFACT_KEYS.get(type_name)
    shown: List[Tuple[str, str]] = []
    for name in keys if keys is not None else sorted(values):
        value = values.get(name)
        if value is None or value is _STRUCTURED or (keys is None and name in _ARTIFACT_NOISE):
            continue
        if name == pushes.MANIFEST_PROPERTY:
            manifest = base_path.manifest_from_json(str(value))
            shown.append(("manifest", f"{len(manifest)} files, {sum(int(f['bytes']) for f in manifest.values()):,} bytes"))
        elif name == mlmd.WARNINGS_PROPERTY:
            warnings = json.loads(str(value) or "[]")
            if warnings:
                shown.append((name, "; ".join(warnings)))
        elif name == "split_names":
            shown.append(("splits", ", ".join(json.loads(str(value)))))
        elif keys is not None or len(str(value)) <= _LONG:
            shown.append((name, _number(value)))
    return LineageArtifact(artifact.id, type_name, artifact.uri, mlmd.Artifact.State.Name(artifact.state), shown,
                           producer)


# -- parameters -------------------------------------------------------------------------------------


def _parameters(store, pipeline_name: str, execution: mlmd.Execution, node: LineageNode) -> List[Tuple[str, str]]:
    """The execution's recorded parameters (execution properties and custom properties) as (name, text),
    long JSON values summarized, plus the computed facts of the module docstring."""
    raw: Dict[str, object] = {}
    for source in (execution.properties, execution.custom_properties):
        for name, value in source.items():
            raw[name] = _value(value)
    params: Dict[str, str] = {}
    for name, value in raw.items():
        if value is None or value is _STRUCTURED or name.startswith("__"):
            continue
        text = _parameter_text(name, value)
        if text is None or (name in _PARAMETER_DEFAULTS and _PARAMETER_DEFAULTS[name] in (None, text)):
            continue
        params[name] = text
    if "input_base" in raw and "input_fingerprint" in raw and node.run_id:
        node.data_files = _checked_files(store, pipeline_name, node.run_id, str(raw["input_base"]),
                                         str(raw.get("input_config") or ""))
        if node.data_files:
            params["data files"] = "\n".join(
                f"{os.path.relpath(str(f['path']), str(raw['input_base']))}: {f['rows']:,} rows, "
                f"{f['bytes']:,} bytes, sha256 {str(f['sha256'])[:16]}" for f in node.data_files)
    outputs = [a for artifacts in mlmd.execution_outputs(store, execution.id).values() for a in artifacts]
    vocabulary = _vocabulary_sizes(store, outputs)
    if vocabulary:
        params["vocabulary_size"] = (", ".join(f"{name} {size:,}" for name, size in vocabulary.items())
                                     + " (counted in the transform graph's vocabulary files)")
    order = {name: i for i, name in enumerate(_PARAMETER_ORDER)}
    return sorted(params.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def _parameter_text(name: str, value: object) -> Optional[str]:
    if not isinstance(value, str):
        return _number(value)
    text = value.strip()
    if not text:
        return None
    if name == "input_fingerprint":  # TFX's: one "split:...,num_files:...,total_bytes:..." line per split
        return text
    try:
        data = json.loads(text) if text[0] in "[{" or text == "null" else None
    except ValueError:
        data = None
    if data is None:
        return None if text == "null" else _cut(text)
    if not data:
        return None
    summarize = _SUMMARIES.get(name)
    if summarize is not None:
        try:
            return summarize(data)
        except (KeyError, TypeError, AttributeError):  # an unexpected shape: fall back to the JSON
            pass
    if isinstance(data, list) and all(isinstance(v, (str, int, float)) for v in data):
        return _cut(", ".join(map(str, data)))
    return _cut(json.dumps(data))


def _input_config(data) -> str:
    return ", ".join(f"{s['name']} from {s['pattern']}" for s in data["splits"])


def _output_config(data) -> str:
    config = data["split_config"]
    splits = ", ".join(f"{s['name']} {s.get('hash_buckets', 1)}" for s in config["splits"])
    by = f", by {config['partition_feature_name']}" if config.get("partition_feature_name") else ""
    return f"{splits} (hash buckets{by})"


def _splits_config(data) -> str:
    return "; ".join(f"{k} {', '.join(v)}" for k, v in data.items())


def _push_destination(data) -> str:
    return data["filesystem"]["base_directory"]


def _eval_config(data) -> str:
    """The slices and the blessing thresholds of a TFMA EvalConfig (JSON)."""
    def metric_name(class_name: str) -> str:
        # evaluation.tfma_metrics names its metric classes "Fixed_" + the metric name, "@" as "_at_".
        return class_name[len("Fixed_"):].replace("_at_", "@") if class_name.startswith("Fixed_") else class_name

    def describe(name: str, threshold) -> List[str]:
        found = []
        bounds = threshold.get("value_threshold", {})
        if "lower_bound" in bounds:
            found.append(f"{name} >= {bounds['lower_bound']}")
        if "upper_bound" in bounds:
            found.append(f"{name} <= {bounds['upper_bound']}")
        change = threshold.get("change_threshold")
        if change:
            sign = ">=" if change.get("direction", "HIGHER_IS_BETTER") == "HIGHER_IS_BETTER" else "<="
            if "absolute" in change:
                found.append(f"{name} - baseline {sign} {change['absolute']}")
            if "relative" in change:
                found.append(f"{name} / baseline - 1 {sign} {change['relative']}")
        return found

    thresholds: List[str] = []
    for spec in data.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            name = metric_name(metric.get("class_name", ""))
            for item in [metric.get("threshold")] + [t.get("threshold") for t in metric.get("per_slice_thresholds", [])]:
                if item:
                    thresholds += describe(name, item)
        for name, item in spec.get("thresholds", {}).items():
            thresholds += describe(name, item)
    slices = [", ".join(s["feature_keys"]) if s.get("feature_keys") else "overall"
              for s in data.get("slicing_specs", [])]
    parts = []
    if slices:
        parts.append("slices: " + ", ".join(slices))
    parts.append("blessed when " + " and ".join(dict.fromkeys(thresholds)) if thresholds else "blessed always")
    return "; ".join(parts)


_SUMMARIES = {"input_config": _input_config, "output_config": _output_config, "splits_config": _splits_config,
              "push_destination": _push_destination, "eval_config": _eval_config}


def _checked_files(store, pipeline_name: str, run_id: str, input_base: str, input_config: str) -> List[Dict[str, object]]:
    """The files FileCheck checked in run `run_id` under `input_base` that the ExampleGen's splits read
    (by file kind, the first directory of each split pattern); [] when not recorded or unreadable."""
    outputs = mlmd.run_node_outputs(store, pipeline_name, run_id, FILE_CHECK_NODE)
    checked = [a for artifacts in outputs.values() for a in artifacts
               if a.custom_properties["input_base"].string_value == input_base]
    if not checked:
        return []
    try:
        kinds = {s["pattern"].split("/", 1)[0] for s in json.loads(input_config)["splits"]}
        with open(os.path.join(checked[0].uri, FILES_JSON)) as f:
            files = json.load(f)
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f for f in files if f.get("kind") in kinds]


def _vocabulary_sizes(store, artifacts: Sequence[mlmd.Artifact]) -> Dict[str, int]:
    """{vocabulary name: tokens} of the TransformGraph among `artifacts`, counted in its vocabulary files
    ({} when there is none or its files cannot be read)."""
    if not artifacts:
        return {}
    types = _names(store.get_artifact_types_by_id(sorted({a.type_id for a in artifacts})))
    graphs = [a for a in artifacts if types[a.type_id] == TRANSFORM_GRAPH_TYPE]
    if not graphs:
        return {}
    uri = graphs[0].uri
    try:
        with open(os.path.join(uri, "transformed_metadata", "asset_map")) as f:
            asset_map = json.load(f)
        sizes = {}
        for name, filename in asset_map.items():
            with open(os.path.join(uri, "transform_fn", "assets", filename), "rb") as f:
                sizes[name] = sum(1 for _ in f)  # one token per line
        return sizes
    except (OSError, ValueError, AttributeError):
        return {}


# -- text -------------------------------------------------------------------------------------------


def _artifact_title(key: str, artifact: LineageArtifact) -> str:
    gone = "" if artifact.state == "LIVE" else f" [{artifact.state}]"
    return f"{key}: {artifact.type} {artifact.id}{gone}"


def _wrap(items: List[str], width: int, separator: str = ", ") -> List[str]:
    """`items` joined by `separator` into lines of at most `width` characters (an item is never split)."""
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(separator) + len(item) > width:
            lines.append(line + separator.rstrip())
            line = item
        else:
            line = f"{line}{separator}{item}" if line else item
    return lines + ([line] if line else [])


def _properties_lines(artifact: LineageArtifact, width: int) -> List[str]:
    # "; " apart: values may hold commas (split lists).
    return _wrap([f"{k} {v}" for k, v in artifact.properties], width, "; ")


def _shown_uri(uri: str, root: Optional[str]) -> str:
    return os.path.relpath(uri, root) if root and uri.startswith(root + os.sep) else uri


def _artifact_root(lineage: "ModelLineage") -> Optional[str]:
    """The directory holding every produced artifact of the lineage (URIs are shown relative to it), or
    None when they share none below the file system root."""
    uris = [a.uri for a in lineage.artifacts.values() if a.producer is not None and a.uri.startswith("/")]
    try:
        root = os.path.commonpath(uris) if uris else ""
    except ValueError:
        return None
    return root if root.count(os.sep) > 1 else None


def _node_lines(node: LineageNode, width: int, root: Optional[str]) -> List[str]:
    """The lines under a node's title: state, commit, parameters, the node's outputs in the lineage."""
    state = node.state_text
    if node.cached_by is not None:
        state += f" (execution {node.cached_by} of this run)"
    lines = [f"{state}, commit {node.commit}"]
    short, long = [], []
    for name, text in node.parameters:
        if " " in text or "\n" in text or len(name) + len(text) > 60:  # a phrase or a list: a line of its own
            long.append((name, text))
        else:
            short.append(f"{name}={text}")
    lines += _wrap(short, width)
    for name, text in long:
        first, *rest = text.split("\n")
        lines.append(f"{name}: {first}")
        lines += [f"  {line}" for line in rest]
    for key, artifact in node.outputs:
        lines.append(f"-> {_artifact_title(key, artifact)} {_shown_uri(artifact.uri, root)}")
        lines += [f"     {line}" for line in _properties_lines(artifact, width - 5)]
    return lines


def format_text(lineage: ModelLineage, width: int = 100) -> str:
    """The lineage as a tree for a terminal: the pushing execution at the top, under each node the
    artifacts it consumed and, under each of those, the node that produced it. A node reached again is
    named, not repeated ("shown above"). Artifact paths are shown relative to the directory holding all
    produced artifacts, named in the heading. `width` is where parameter lists wrap."""
    pushed = lineage.pushed_model
    destination = dict(pushed.properties).get("pushed_destination", pushed.uri)
    missing = "" if os.path.isdir(destination) else " (the directory no longer exists)"
    root = _artifact_root(lineage)
    lines = [f"model version {lineage.version} of {lineage.pipeline_name}: PushedModel {pushed.id} at {destination}{missing}"]
    if lineage.root.run_id is None:
        lines.append(f"pushed by {lineage.root.node_id} (execution {lineage.root.execution_id}) outside a pipeline run")
        if lineage.pushing_run:
            lines.append(f"\"this run\" below: run {lineage.pushing_run}, which pushed the model it started from")
    else:
        lines.append(f"pushed by run {lineage.pushing_run} (\"this run\" below)")
    lines.append(f"{len(lineage.nodes)} executions, {len(lineage.artifacts)} artifacts"
                 + (f"; artifact paths relative to {root}" if root else ""))
    lines.append("")
    shown = set()

    def title(node: LineageNode) -> str:
        return f"{node.node_id} (execution {node.execution_id})"

    def block(node: LineageNode, rest: str) -> None:
        shown.add(node.execution_id)
        edges = sorted(node.inputs, key=lambda item: (-(item[1].producer or 0), item[0], item[1].id))
        bar = "│   " if edges else "    "
        lines.extend(rest + bar + line for line in _node_lines(node, width, root))
        for i, (key, artifact) in enumerate(edges):
            last = i == len(edges) - 1
            branch, cont = ("└── ", "    ") if last else ("├── ", "│   ")
            if artifact.producer is None:
                lines.append(rest + branch + f"{_artifact_title(key, artifact)} {_shown_uri(artifact.uri, root)}")
                lines.extend(rest + cont + "    " + line for line in _properties_lines(artifact, width))
                continue
            producer = lineage.nodes[artifact.producer]
            if producer.execution_id in shown:
                lines.append(rest + branch + f"{_artifact_title(key, artifact)} <- {title(producer)}, shown above")
                continue
            lines.append(rest + branch + f"{_artifact_title(key, artifact)} <- {title(producer)}")
            block(producer, rest + cont)

    lines.append(title(lineage.root))
    block(lineage.root, "")
    return "\n".join(lines) + "\n"


# -- Graphviz ---------------------------------------------------------------------------------------

_FILL = {EXECUTED: "#cfe2f3", CACHED: "#e6e6e6", OTHER_RUN: "#ffffff", OUTSIDE: "#fff2cc"}
_LEGEND = ("executions (boxes): blue = executed in this run, grey = cached (reused from an earlier run),\n"
           "white dashed = executed in another run, yellow = outside a pipeline run; artifacts: ellipses\n")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\l") + '"'


def _dot_lines(text: str, width: int = 72) -> List[str]:
    # Long values wrap at spaces; a long word (a fingerprint) stays whole.
    return textwrap.wrap(text, width, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False) or [""]


def _short_uri(uri: str) -> str:
    parts = uri.rstrip("/").split("/")
    return "/".join(parts[-3:]) if len(parts) > 3 else uri


def to_dot(lineage: ModelLineage) -> str:
    """The lineage as a Graphviz DOT digraph: executions as boxes (filled by state: executed in the pushing
    run, cached, another run, outside a run), artifacts as ellipses, edges from each input artifact to the
    execution that consumed it and from each execution to its outputs in the lineage, labelled with their
    keys. The pushed model is at the top. Artifact nodes carry their full URI as tooltip."""
    pushed = lineage.pushed_model
    out = ["digraph lineage {",
           "  rankdir=BT;",
           f"  label={_quote(f'lineage of model version {lineage.version} of {lineage.pipeline_name}' + (f', pushed by run {lineage.pushing_run}' if lineage.pushing_run else ''))};",
           "  labelloc=t; fontname=Helvetica;",
           "  node [fontname=Helvetica, fontsize=10]; edge [fontname=Helvetica, fontsize=9];",
           f"  legend [shape=plaintext, label={_quote(_LEGEND)}];"]
    for node in lineage.walk():
        kind = "" if node.short_type == node.node_id else f" ({node.short_type})"
        label = [node.node_id, f"execution {node.execution_id}{kind}", node.state_text]
        if node.state == EXECUTED:
            label.append(f"run {node.run_id}")
        label.append(f"commit {node.commit}")
        for name, text in node.parameters:
            first, *rest = text.split("\n")
            label += _dot_lines(f"{name}: {first}") + [line for more in rest for line in _dot_lines("  " + more)]
        style = "filled,dashed" if node.state == OTHER_RUN else "filled"
        out.append(f"  e{node.execution_id} [shape=box, style={_quote(style)}, fillcolor={_quote(_FILL[node.state])}, "
                   f"label={_quote(chr(10).join(label) + chr(10))}];")
    for artifact in lineage.artifacts.values():
        label = [f"{artifact.type} {artifact.id}" + ("" if artifact.state == "LIVE" else f" [{artifact.state}]"),
                 _short_uri(artifact.uri)] + [line for k, v in artifact.properties for line in _dot_lines(f"{k}: {v}")]
        extra = ", penwidth=2" if artifact.id == pushed.id else ""
        out.append(f"  a{artifact.id} [shape=ellipse, label={_quote(chr(10).join(label) + chr(10))}, "
                   f"tooltip={_quote(artifact.uri)}{extra}];")
    for node in lineage.walk():
        for key, artifact in node.inputs:
            out.append(f"  a{artifact.id} -> e{node.execution_id} [label={_quote(key)}];")
        for key, artifact in node.outputs:
            out.append(f"  e{node.execution_id} -> a{artifact.id} [label={_quote(key)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(dot_text: str, fmt: str, path: str) -> str:
    """Writes `dot_text` as a picture of format `fmt` ("svg" or "png") to `path` with Graphviz's `dot`
    (its directory created). Returns the absolute path. Raises LineageError when `dot` is not installed
    or fails, or `fmt` is not a picture format."""
    if fmt not in PICTURE_FORMATS:
        raise LineageError(f"format {fmt!r} is not a picture format ({', '.join(PICTURE_FORMATS)})")
    dot = shutil.which("dot")
    if dot is None:
        raise LineageError(f"Graphviz's `dot` is not installed (not on PATH), so no {fmt} can be drawn; "
                           "install graphviz, or use --format dot to print the graph as DOT text")
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    done = subprocess.run([dot, f"-T{fmt}", "-o", path], input=dot_text.encode("utf-8"), capture_output=True,
                          timeout=300)
    if done.returncode != 0:
        raise LineageError(f"Graphviz's dot failed (exit {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace').strip()}")
    return path


# -- the command ------------------------------------------------------------------------------------


def default_picture_path(workspace: str, version: str, fmt: str) -> str:
    """Where `cvrank lineage --format svg|png` writes without --output: <workspace>/reports/lineage-v<version>.<fmt>."""
    return os.path.join(reports_dir(workspace), f"lineage-v{version}.{fmt}")


def cli_lineage(args: argparse.Namespace, config: PipelineConfig) -> int:
    """`cvrank lineage [VERSION|latest] [--format text|dot|svg|png] [--output PATH] [--workspace DIR]`:
    prints the text tree or the DOT text (to `--output` instead when given, printing its path), or writes
    an SVG/PNG (default `default_picture_path`) and prints its path. Returns 0, or 2 with a message on
    stderr when the workspace has no pushed model, the version is unknown or Graphviz is missing."""
    fmt = getattr(args, "format", None) or "text"
    version = getattr(args, "version", None) or "latest"
    output = getattr(args, "output", None)
    connection = config.metadata_connection()
    try:
        if fmt not in FORMATS:
            raise LineageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
        if not mlmd.has_store(connection):
            raise LineageError(f"no pushed model: workspace {config.workspace} has no ML Metadata store "
                               f"({mlmd.describe(connection)}); run `cvrank run` first")
        store = mlmd.open_store(connection, read_only=True)
        try:
            lineage = model_lineage(store, config, version)
        except LineageError as err:
            raise LineageError(f"workspace {config.workspace}: {err}") from None
        if fmt in PICTURE_FORMATS:
            print(render(to_dot(lineage), fmt, output or default_picture_path(config.workspace, lineage.version, fmt)))
            return 0
        text = format_text(lineage) if fmt == "text" else to_dot(lineage)
        if output:
            path = os.path.abspath(output)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print(path)
        else:
            sys.stdout.write(text)
    except LineageError as err:
        print(f"cvrank lineage: {err}", file=sys.stderr)
        return 2
    return 0
