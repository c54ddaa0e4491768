"""How fast `cvrank run` stops on bad input, and what it says: each bad setting and each kind of bad file
of a dataset, run through the real CLI against a workspace, timed from the command's start to its exit.

For each case a copy of the dataset gets one defect; the figure is the wall time of `cvrank run` (inside
the runtime: Python start, configuration, pipeline compilation, the nodes up to the failing one). The
workspace's pushed versions and ML Metadata executions are compared before and after each case.

    bin/cvrank exec -- python benchmarks/bad_input_latency.py [--data data/onet] [--workspace workspace]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)

from config import PipelineConfig  # noqa: E402


def _append(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _first_csv(data: str, kind: str) -> str:
    return os.path.join(data, kind, sorted(f for f in os.listdir(os.path.join(data, kind)) if f.endswith(".csv"))[0])


def _replace_header(path: str, header: bytes) -> None:
    with open(path, "rb") as f:
        lines = f.read().split(b"\n", 1)
    with open(path, "wb") as f:
        f.write(header + b"\n" + lines[1])


def _keep_header_only(path: str) -> None:
    with open(path, "rb") as f:
        header = f.readline()
    with open(path, "wb") as f:
        f.write(header)


# name -> (edit of the dataset copy, extra CLI arguments)
CASES = {
    "setting: embedding_dim=0": (None, ["--set", "embedding_dim=0"]),
    "setting: doc_weighting=bogus": (None, ["--set", "doc_weighting=bogus"]),
    "cvs: bytes that are not UTF-8": (lambda d: _append(_first_csv(d, "cvs"), b"cv-bad-1,caf\xe9 manager\n"), []),
    "jobs: missing column": (lambda d: _replace_header(_first_csv(d, "jobs"), b"job_id,title,body,major_group,minor_group"), []),
    "judgments: extra column": (lambda d: _replace_header(_first_csv(d, "judgments"), b"job_id,cv_id,relevance,note"), []),
    "cvs: a field over 1 MiB": (lambda d: _append(_first_csv(d, "cvs"), b"cv-long-1," + b"word " * 240_000 + b"\n"), []),
    "judgments: empty file": (lambda d: open(_first_csv(d, "judgments"), "wb").close(), []),
    "jobs: header only": (lambda d: _keep_header_only(_first_csv(d, "jobs")), []),
    "judgments: relevance not an integer": (lambda d: _append(_first_csv(d, "judgments"), b"11-1011.00,cv-000001,high\n"), []),
}


def _snapshot(config: PipelineConfig):
    from metadata import mlmd

    versions = sorted(os.listdir(config.serving_dir)) if os.path.isdir(config.serving_dir) else []
    executions = []
    if os.path.exists(config.metadata_path):
        store = mlmd.sqlite_store(config.metadata_path)
        executions = sorted((e.id, e.last_known_state) for e in store.get_executions())
    return versions, executions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=PipelineConfig().data_dir)
    parser.add_argument("--workspace", default=PipelineConfig().workspace)
    parser.add_argument("--case", action="append", help="run only these cases (repeatable)")
    args = parser.parse_args()
    config = PipelineConfig.create({"data_dir": args.data, "workspace": args.workspace})
    env = {**os.environ, "PYTHONPATH": PROJECT_ROOT}
    print(f"dataset {config.data_dir}; workspace {config.workspace}")
    for name, (edit, extra) in CASES.items():
        if args.case and name not in args.case:
            continue
        with tempfile.TemporaryDirectory(dir=os.path.join(PROJECT_ROOT, ".scratch") if os.path.isdir(
                os.path.join(PROJECT_ROOT, ".scratch")) else None) as tmp:
            data = os.path.join(tmp, "data")
            shutil.copytree(config.data_dir, data)
            if edit:
                edit(data)
            before = _snapshot(config)
            start = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "cvrank.cli", "run", "--data", data,
                                     "--workspace", config.workspace, *extra],
                                    capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
            seconds = time.monotonic() - start
            after = _snapshot(config)
        earlier_kept = after[0][:len(before[0])] == before[0] and after[1][:len(before[1])] == before[1]
        message = [line for line in result.stderr.splitlines() if line.strip()]
        shown = [line.replace(tmp, "<copy>") for line in message[:3]]
        print(f"\n{name}: exit {result.returncode} after {seconds:.1f} s; "
              f"pushed versions and earlier executions unchanged: {'yes' if earlier_kept else 'NO'}")
        for line in shown:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
