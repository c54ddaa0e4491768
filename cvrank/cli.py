"""The `cvrank` command line. Runs inside the runtime (bin/cvrank enters it first)."""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_exec(args: argparse.Namespace) -> int:
    """Replaces this process with the given command; its exit code and output pass through."""
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("cvrank exec: no command given (usage: cvrank exec -- CMD ARGS...)", file=sys.stderr)
        return 2
    try:
        os.execvp(cmd[0], cmd)
    except FileNotFoundError:
        print(f"cvrank exec: command not found: {cmd[0]}", file=sys.stderr)
        return 127


def _config_from_args(args: argparse.Namespace):
    from cvrank.config import PipelineConfig, parse_set_args

    overrides = parse_set_args(args.set)
    if args.data:
        overrides["data_dir"] = args.data
    if args.workspace:
        overrides["workspace"] = args.workspace
    return PipelineConfig().with_overrides(overrides).resolved()


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="dataset directory (cvs/, jobs/, judgments/, corpus/)")
    p.add_argument("--workspace", metavar="DIR", help="where artifacts, metadata and served models go (default ./workspace)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help="override a setting (repeatable)")


def _cmd_smoke(args: argparse.Namespace) -> int:
    """Runs the smoke pipeline (CsvExampleGen, StatisticsGen, SchemaGen) on the dataset's jobs."""
    from pipeline import mlmd, runner
    from pipeline.smoke import create_smoke_pipeline, default_smoke_csv_dir, smoke_metadata_path

    config = _config_from_args(args)
    pipeline = create_smoke_pipeline(default_smoke_csv_dir(config), config)
    launched: list[str] = []

    def on_node(node_id: str) -> None:
        launched.append(node_id)
        print(f"cvrank: running {node_id}", flush=True)

    run_id = runner.run_pipeline(pipeline, on_node=on_node)
    states = mlmd.run_node_states(
        mlmd.sqlite_store(smoke_metadata_path(config)), pipeline.pipeline_info.pipeline_name, run_id
    )
    print(f"run {run_id}")
    for node_id in launched:
        print(f"  {node_id:<16} {states.get(node_id, 'NOT RUN')}")
    return 0


def _dataset_problem(data_dir: str) -> str:
    """Why `data_dir` is not a dataset (docs/architecture.md), or '' when its required parts exist."""
    import glob

    if not os.path.isdir(data_dir):
        return f"dataset directory not found: {data_dir}"
    for part in ("cvs", "jobs", "judgments"):
        if not glob.glob(os.path.join(data_dir, part, "*.csv")):
            return f"{data_dir}: no {part}/*.csv (a dataset has cvs/, jobs/, judgments/ and optional corpus/)"
    return ""


def _error_text(err: BaseException) -> str:
    """A failed node's error for a person: data validation reports in full; for other errors (whose
    message may hold a whole Beam worker traceback) the last lines, which name the actual error."""
    text = str(err)
    if type(err).__name__ == "DataValidationError":
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    tail = "\n".join(lines[-3:]) if len(lines) > 3 else text
    return f"{type(err).__name__}: {tail}\n(the full traceback is in the log above)"


def _cmd_run(args: argparse.Namespace) -> int:
    """Runs the cvrank pipeline and prints the run summary. Exit code 1 when a node fails."""
    config = _config_from_args(args)
    problem = _dataset_problem(config.data_dir)
    if problem:
        print(f"cvrank run: {problem}", file=sys.stderr)
        return 2

    import logging

    from pipeline import runner
    from pipeline.pipeline import create_pipeline
    from pipeline.summary import summarize

    logging.getLogger().setLevel(logging.WARNING)
    pipeline = create_pipeline(config)
    order = runner.node_ids(runner.compile_pipeline(pipeline))
    run_id = runner.new_run_id()
    print(f"cvrank: run {run_id} of {config.pipeline_name} on {config.data_dir}", flush=True)
    failed = None
    try:
        runner.run_pipeline(pipeline, run_id=run_id,
                            on_node=lambda n: print(f"cvrank: {n} ...", flush=True))
    except Exception as err:  # the failing node is recorded in ML Metadata; report it and stop
        failed = err
    print(summarize(config.metadata_path, config.pipeline_name, run_id, order).format())
    if failed is not None:
        print(f"\ncvrank: run {run_id} FAILED: {_error_text(failed)}", file=sys.stderr)
        print("cvrank: earlier runs, their artifacts and the pushed model are unchanged.", file=sys.stderr)
        return 1
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serves the pushed models over TF Serving's REST and gRPC APIs until interrupted."""
    import dataclasses

    from cvrank.config import PipelineConfig, ServingConfig

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("grpc_port", args.grpc_port),
                                   ("model_name", args.model_name), ("access_log", args.access_log),
                                   ("max_batch_size", args.max_batch_size),
                                   ("batch_threads", args.batch_threads),
                                   ("poll_seconds", args.poll_seconds),
                                   ("max_body_bytes", args.max_body_bytes)) if v is not None}
    if args.model_base_path:
        overrides["model_base_path"] = os.path.abspath(args.model_base_path)
    elif args.workspace:
        overrides["model_base_path"] = PipelineConfig(workspace=os.path.abspath(args.workspace)).serving_dir
    try:
        config = dataclasses.replace(ServingConfig(), **overrides)
    except ValueError as err:
        print(f"cvrank serve: {err}", file=sys.stderr)
        return 2
    from serving.server import main as serve_main

    return serve_main(config)


def _cmd_query(args: argparse.Namespace) -> int:
    """Ranks the CVs for a job description through a TF Serving REST endpoint and prints them."""
    import json

    from serving.client import QueryError, format_matches, rank_cvs

    text = args.text if args.text != "-" else sys.stdin.read()
    try:
        matches = rank_cvs(text, url=args.url, model=args.model_name, top_k=args.top_k)
    except QueryError as err:
        print(f"cvrank query: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([m.__dict__ for m in matches], indent=2, ensure_ascii=False))
    else:
        print(format_matches(matches))
        if len(matches) < args.top_k:
            print(f"({len(matches)} CVs returned: the model returns at most its top_k setting)")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    """Adds CVs to the index of the newest pushed model and pushes the result as a new version."""
    from cvrank.config import PipelineConfig
    from serving.cv_files import CvFileError
    from serving.index import IndexUpdateError, update_index

    config = PipelineConfig(workspace=os.path.abspath(args.workspace or PipelineConfig().workspace))
    base = os.path.abspath(args.model_base_path) if args.model_base_path else config.serving_dir
    try:
        result = update_index(args.cvs, base, config.metadata_path, config.pipeline_name)
    except (CvFileError, IndexUpdateError) as err:
        print(f"cvrank index: {err}", file=sys.stderr)
        print("cvrank index: nothing was pushed; the served model is unchanged.", file=sys.stderr)
        return 2
    print(f"cvrank index: pushed version {result.version} ({result.path}): version {result.source_version} "
          f"plus {result.added} new CVs, {result.replaced} replaced; {result.index_size} CVs in the index "
          f"(ML Metadata execution {result.execution_id})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvrank",
        description="cvrank: a TFX pipeline that ranks CVs against job descriptions with GloVe embeddings.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("exec", help="run any command inside the runtime (python, pytest, airflow, ...)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=_cmd_exec)

    p = sub.add_parser("run", help="run the cvrank pipeline and print a summary")
    _add_config_args(p)
    p.add_argument("--runner", choices=["local"], default="local",
                   help="orchestrator: local (TFX nodes in this process, in topological order)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("smoke", help="run the smoke pipeline (ExampleGen, StatisticsGen, SchemaGen)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_smoke)

    p = sub.add_parser("serve", help="serve the pushed models over TF Serving's REST and gRPC APIs")
    p.add_argument("--port", type=int, help="REST port (default 8501)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 8500; 0 turns gRPC off)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--model-base-path", metavar="DIR",
                   help="TF Serving model base path (default <workspace>/serving/cvrank)")
    p.add_argument("--workspace", metavar="DIR", help="serve the models pushed into this workspace")
    p.add_argument("--model-name", help="model name in URLs (default cvrank)")
    p.add_argument("--access-log", metavar="FILE", help="access log: '-' for stderr (default), a file, or 'off'")
    p.add_argument("--max-batch-size", type=int, help="rows merged into one TensorFlow call (default 64)")
    p.add_argument("--batch-threads", type=int, help="TensorFlow calls running at once (default 2)")
    p.add_argument("--poll-seconds", type=float, help="how often to look for new versions (default 1)")
    p.add_argument("--max-body-bytes", type=int, help="largest request body accepted (default 16 MiB)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("query", help="rank CVs for a job description through a TF Serving REST endpoint")
    p.add_argument("text", help="the job description ('-' reads it from standard input)")
    p.add_argument("--top-k", type=int, default=10, help="how many CVs to print (default 10)")
    p.add_argument("--url", default="http://127.0.0.1:8501", help="the server (default http://127.0.0.1:8501)")
    p.add_argument("--model-name", default="cvrank", help="model name (default cvrank)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("index", help="add CVs to the served model's index without retraining (pushes a new version)")
    p.add_argument("--cvs", metavar="FILE_OR_DIR", action="append", required=True,
                   help="a cv_id,text CSV file or a directory of them (repeatable)")
    p.add_argument("--workspace", metavar="DIR", help="the workspace (default ./workspace)")
    p.add_argument("--model-base-path", metavar="DIR", help="model base path (default <workspace>/serving/cvrank)")
    p.set_defaults(func=_cmd_index)

    sub.add_parser(
        "runtime",
        help="manage the runtime on the host: build, path, info, clean (handled by bin/cvrank)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up notices (no GPU, CPU instructions) are noise in a CLI.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if args.command == "runtime":
        print("cvrank runtime: run it through bin/cvrank on the host (bin/cvrank runtime info)", file=sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
