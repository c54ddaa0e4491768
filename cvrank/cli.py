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

    p = sub.add_parser("smoke", help="run the smoke pipeline (ExampleGen, StatisticsGen, SchemaGen)")
    _add_config_args(p)
    p.set_defaults(func=_cmd_smoke)

    sub.add_parser(
        "runtime",
        help="manage the runtime on the host: build, path, info, clean (handled by bin/cvrank)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "runtime":
        print("cvrank runtime: run it through bin/cvrank on the host (bin/cvrank runtime info)", file=sys.stderr)
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
