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
