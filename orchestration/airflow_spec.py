"""The Airflow DAG spec: what cvrank's DAG files are built from, written in the TFX env.

The DAG files (dags/, run by Airflow in its own env, which has neither TFX nor cvrank's packages) read a
JSON document at the path in env `CVRANK_AIRFLOW_SPEC` and build their tasks, edges and params from it:
the edges come from the compiled pipeline IR, the params from `PipelineConfig`. `write_spec` writes it
(`bin/cvrank airflow up` and `bin/cvrank airflow compile` call it), or by hand:

    python -m orchestration.airflow_spec --output PATH [--set key=value ...]

The document (format 1):

    {
      "format": 1,
      "compiled_at": "2026-12-07T10:00:00Z",          # UTC
      "project_root": "/work/main",                  # the cvrank code the tasks run
      "code_version": {"git_commit": "8e53773...", "sources_sha256": "..."},  # commit: null without .git
      "tfx_version": "1.21.0",
      "pool": "cvrank_tfx",                          # the Airflow pool of every node task
      "settings": {"workspace": "/w"},               # the deployment settings it was compiled with (typed)
      "params": {                                    # one per PipelineConfig field, in its order
        "embedding_dim": {"type": "integer", "default": 100, "description": "...", "minimum": 1,
                          "maximum": 4096},
        "doc_weighting": {"type": "string", "default": "sif", "description": "...",
                          "enum": ["mean", "idf", "sif"]},
        "beam_pipeline_args": {"type": "array", "items": {"type": "string"}, "default": [...], ...},
        ...                                          # JSON-schema keywords: type (a list with "null"
      },                                             # when nullable), enum, minimum, maximum,
      "dags": {                                      # exclusiveMinimum, exclusiveMaximum, pattern, items
        "cvrank": {"kind": "cvrank", "pipeline_name": "cvrank",
                   "nodes": [{"id": "FileCheck", "upstream": []},
                             {"id": "texts_example_gen", "upstream": ["FileCheck"]}, ...]},
        "cvrank_smoke": {"kind": "smoke", "pipeline_name": "cvrank-smoke", "nodes": [...]}
      }
    }

`nodes` lists every node of the compiled pipeline in topological order (the compiler's order) with its
upstream node ids (`upstream_nodes` in the IR, sorted). A param's default is the deployment's value:
PipelineConfig's default with `settings` applied (paths made absolute, as PipelineConfig does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from config import PROJECT_ROOT, ConfigError, PipelineConfig, parse_set_args

SPEC_FORMAT = 1
SPEC_ENV = "CVRANK_AIRFLOW_SPEC"
# DAG id -> pipeline kind (what `airflow_tasks.prepare` compiles).
DAG_KINDS = {"cvrank": "cvrank", "cvrank_smoke": "smoke"}
DEFAULT_POOL = "cvrank_tfx"  # used when orchestration.airflow_env defines no TFX_POOL
# JSON-schema keywords kept from pydantic's schema of a field.
_SCHEMA_KEYWORDS = ("type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern",
                    "items", "minLength", "maxLength", "minItems", "maxItems")


def tfx_pool() -> str:
    """The Airflow pool of the TFX node tasks: `orchestration.airflow_env.TFX_POOL`, else 'cvrank_tfx'."""
    from orchestration import airflow_env

    return getattr(airflow_env, "TFX_POOL", DEFAULT_POOL)


def create_kind_pipeline(kind: str, config: PipelineConfig):
    """The TFX pipeline of `kind` ('cvrank' or 'smoke') for `config`."""
    if kind == "smoke":
        from pipeline.smoke import create_smoke_pipeline, default_smoke_csv_dir

        return create_smoke_pipeline(default_smoke_csv_dir(config), config)
    if kind == "cvrank":
        from pipeline.pipeline import create_pipeline

        return create_pipeline(config)
    raise ValueError(f"unknown pipeline kind {kind!r} (cvrank or smoke)")


def node_graph(pipeline_ir) -> List[Dict[str, Any]]:
    """[{"id": node id, "upstream": [upstream node ids, sorted]}, ...] of a compiled pipeline, in the
    compiler's (topological) order."""
    return [{"id": n.pipeline_node.node_info.id, "upstream": sorted(n.pipeline_node.upstream_nodes)}
            for n in pipeline_ir.nodes]


def graph_differences(expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]]) -> List[str]:
    """What differs between two node graphs (as `node_graph` gives them): one phrase per kind of
    difference, [] when they have the same nodes and edges."""
    def parts(graph) -> Tuple[set, set]:
        nodes = {n["id"] for n in graph}
        edges = {(u, n["id"]) for n in graph for u in n["upstream"]}
        return nodes, edges

    (want_nodes, want_edges), (have_nodes, have_edges) = parts(expected), parts(actual)
    found = []
    for label, items in (("nodes the DAG lacks", have_nodes - want_nodes),
                         ("DAG tasks for nodes the pipeline no longer has", want_nodes - have_nodes)):
        if items:
            found.append(f"{label}: {', '.join(sorted(items))}")
    for label, items in (("edges the DAG lacks", have_edges - want_edges),
                         ("DAG edges the pipeline no longer has", want_edges - have_edges)):
        if items:
            found.append(f"{label}: {', '.join(f'{u} -> {d}' for u, d in sorted(items))}")
    return found


def params_schema(config: PipelineConfig) -> Dict[str, Dict[str, Any]]:
    """One JSON-schema property per PipelineConfig field, in field order: its type (a list including "null"
    for an Optional field), `default` (the value in `config`), `description` and constraints (enum of a
    Literal, minimum/maximum from ge/le, exclusiveMinimum/exclusiveMaximum from gt/lt, pattern, items)."""
    properties = PipelineConfig.model_json_schema()["properties"]
    values = config.to_dict()
    params = {}
    for name in PipelineConfig.model_fields:
        prop = _nullable(properties[name])
        param = {k: prop[k] for k in _SCHEMA_KEYWORDS if k in prop}
        if "type" not in param and "enum" in param:
            param["type"] = _json_type(param["enum"][0])
        param["default"] = values[name]
        param["description"] = prop.get("description", PipelineConfig.model_fields[name].description or "")
        params[name] = param
    return params


def _nullable(prop: Mapping[str, Any]) -> Dict[str, Any]:
    # pydantic writes Optional[X] as anyOf [X, null]: fold it into X with "null" added to its type.
    if "anyOf" not in prop:
        return dict(prop)
    choices = [c for c in prop["anyOf"] if c.get("type") != "null"]
    nullable = len(choices) < len(prop["anyOf"])
    merged = {k: v for k, v in prop.items() if k != "anyOf"}
    if len(choices) == 1:
        merged.update(choices[0])
    else:
        merged["type"] = sorted({t for c in choices for t in _as_list(c.get("type"))})
    if nullable:
        merged["type"] = [*_as_list(merged.get("type")), "null"]
    return merged


def _as_list(value) -> List[Any]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def build_spec(settings: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The spec document (module docstring) for the deployment `settings` (PipelineConfig overrides).
    Compiles both pipelines; raises ConfigError for bad settings."""
    settings = dict(settings or {})
    config = PipelineConfig.create(settings)
    from tfx import version as tfx_version

    from orchestration import runner
    from orchestration.provenance import code_version

    dags = {}
    for dag_id, kind in DAG_KINDS.items():
        pipeline = create_kind_pipeline(kind, config)
        dags[dag_id] = {"kind": kind, "pipeline_name": pipeline.pipeline_info.pipeline_name,
                        "nodes": node_graph(runner.compile_pipeline(pipeline))}
    return {
        "format": SPEC_FORMAT,
        "compiled_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "project_root": PROJECT_ROOT,
        "code_version": code_version(PROJECT_ROOT),
        "tfx_version": tfx_version.__version__,
        "pool": tfx_pool(),
        "settings": {k: config.to_dict()[k] for k in settings},
        "params": params_schema(config),
        "dags": dags,
    }


def write_spec(path: str, settings: Optional[Mapping[str, Any]] = None) -> None:
    """Compiles the `cvrank` and `smoke` pipelines with `PipelineConfig.create(settings)` and writes the
    spec (module docstring) to `path` atomically: a temporary file in the same directory, renamed over
    `path`, so a DAG file parsed meanwhile reads the old document or the new one, whole. Creates the
    directory. Raises ConfigError for bad settings (nothing is written)."""
    from orchestration.pipeline_dirs import write_atomically

    document = build_spec(settings)
    write_atomically(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestration.airflow_spec",
        description="Writes the spec cvrank's Airflow DAG files are built from (nodes and edges of the compiled "
                    "pipelines, params mirroring the pipeline settings).")
    parser.add_argument("--output", default=os.environ.get(SPEC_ENV),
                        help=f"where to write it (default: ${SPEC_ENV})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a deployment setting: the default of that param in the DAGs (repeatable)")
    args = parser.parse_args(argv)
    if not args.output:
        parser.error(f"--output is required when {SPEC_ENV} is not set")
    try:
        write_spec(args.output, parse_set_args(args.set))
    except ConfigError as err:
        print(f"cvrank: {err}", file=sys.stderr)
        return 2
    with open(args.output) as f:
        spec = json.load(f)
    for dag_id, dag in spec["dags"].items():
        print(f"{dag_id}: {len(dag['nodes'])} nodes, {sum(len(n['upstream']) for n in dag['nodes'])} edges")
    print(f"wrote {os.path.abspath(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
