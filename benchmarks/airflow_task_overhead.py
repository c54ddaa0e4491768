"""What an Airflow node task costs beyond its node: a fresh TFX interpreter per task (what a task pays
without the node server) against the node server (orchestration/node_server.py), per node.

For each node, the wall time of
  (a) fresh: a new TFX-env interpreter that runs `airflow_tasks.run_node(ir_path, node_id)` and exits
      (imports of TensorFlow, Beam, TFX's launcher, ...; the node; the interpreter's teardown);
  (b) server: a new interpreter that runs `node_client.run_node(socket, ir_path, node_id)` against a node
      server started beforehand (its start-up, printed once, is not in the per-node figures).
Both are what a task's process does, without Airflow's own part (scheduling, the task runner, the venv
script's argument files), which is the same either way.

    bin/cvrank exec -- python benchmarks/airflow_task_overhead.py                  # smoke pipeline only
    bin/cvrank exec -- python benchmarks/airflow_task_overhead.py --data data/onet --workspace workspace
    bin/cvrank exec -- python benchmarks/airflow_task_overhead.py --data data/onet --cold-pipeline

- Smoke pipeline (always): CsvExampleGen, StatisticsGen, SchemaGen over `<--data>/jobs` (default
  data/onet) in new workspaces under a scratch directory: each node cold (executed, one new workspace per
  method and repetition), then cached (a new run of the same workspace; `--repeat` times, median).
- `--data DIR --workspace DIR`: every node of the cvrank pipeline, cached: run `bin/cvrank run --data DIR
  --workspace DIR` first (same settings: `--conf` takes the JSON settings the run had, if not the
  defaults). Each method runs one new pipeline run there (runs `bench-fresh-...`, `bench-server-...`,
  recorded in its ML Metadata like any cached run), plus, for reference, one local run of the CLI's
  runner (`python -m cvrank.cli run`).
- `--cold-pipeline` (with `--data`): the whole cvrank pipeline cold, node by node, through each method and
  through the local runner, each in a new workspace under the scratch directory (about 5 min each).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)

from orchestration import node_client  # noqa: E402

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PROJECT_ROOT, os.environ.get("PYTHONPATH")) if p)}
_FRESH = ("import sys\nfrom orchestration import airflow_tasks\nairflow_tasks.run_node(sys.argv[1], sys.argv[2])\n")
_CLIENT = ("import sys\nfrom orchestration import node_client\n"
           "try:\n"
           "    node_client.run_node(sys.argv[1], sys.argv[2], sys.argv[3])\n"
           "except node_client.NodeServerUnavailable as exc:\n"
           "    print(exc, file=sys.stderr)\n"
           "    sys.exit(75)\n")
_UNAVAILABLE = 75  # the client found no server: it was restarting (project sources changed), try again


class NodeServer:
    """A node server process on a socket in `directory`, its log in `directory/node_server.log`."""

    def __init__(self, directory: str):
        self.socket = os.path.join(directory, "node.sock")
        self.log_path = os.path.join(directory, "node_server.log")
        self.log = open(self.log_path, "ab")
        start = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "orchestration.node_server", "--socket", self.socket],
                                        stdout=self.log, stderr=self.log, env=_ENV, cwd=PROJECT_ROOT)
        self.restarts_seen = 0
        self.wait_ready()
        self.ready_seconds = time.monotonic() - start

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while not node_client.server_available(self.socket):
            if self.process.poll() is not None:
                raise RuntimeError(f"the node server exited with code {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node server is not ready after {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.05)

    def request_lines(self) -> List[str]:
        with open(self.log_path, errors="replace") as f:
            return [line for line in f if ": exit " in line]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


def _run(argv: List[str], log_path: str, retry_code: Optional[int] = None) -> Optional[float]:
    with open(log_path, "ab") as log:
        start = time.monotonic()
        code = subprocess.call(argv, stdout=log, stderr=log, env=_ENV, cwd=PROJECT_ROOT)
        seconds = time.monotonic() - start
    if code == retry_code:
        return None
    if code != 0:
        raise RuntimeError(f"{argv[0]} -c ... {' '.join(argv[3:])} exited with code {code}; see {log_path}")
    return seconds


def fresh(ir_path: str, node_id: str, log_path: str) -> float:
    return _run([sys.executable, "-c", _FRESH, ir_path, node_id], log_path)


def via_server(server: NodeServer, ir_path: str, node_id: str, log_path: str) -> float:
    for _ in range(10):
        server.wait_ready()  # a server restarting because project sources changed is waited for, not timed
        seconds = _run([sys.executable, "-c", _CLIENT, server.socket, ir_path, node_id], log_path, _UNAVAILABLE)
        if seconds is not None:
            return seconds
        server.restarts_seen += 1
    raise RuntimeError(f"the node server on {server.socket} keeps restarting; see {server.log_path}")


def _prepare(kind: str, conf: dict, run_id: str) -> str:
    from orchestration import airflow_tasks

    os.makedirs(os.path.join(conf["workspace"], "metadata"), exist_ok=True)
    return airflow_tasks.prepare(kind, json.dumps(conf), run_id)


def _ir(ir_path: str):
    from tfx.proto.orchestration import pipeline_pb2

    bound = pipeline_pb2.Pipeline()
    with open(ir_path, "rb") as f:
        bound.ParseFromString(f.read())
    return bound


def _states(ir_path: str) -> Dict[str, str]:
    from metadata import mlmd
    from tfx.orchestration.local import runner_utils

    bound = _ir(ir_path)
    wrapper = runner_utils.extract_local_deployment_config(bound).metadata_connection_config
    connection = getattr(wrapper, wrapper.WhichOneof("connection_config"))
    store = mlmd.open_store(connection, read_only=True)
    return mlmd.run_node_states(store, bound.pipeline_info.id, bound.runtime_spec.pipeline_run_id.field_value.string_value)


def _node_ids(ir_path: str) -> List[str]:
    return [n.pipeline_node.node_info.id for n in _ir(ir_path).nodes]


def run_nodes(method: str, server: NodeServer, ir_path: str, log_path: str) -> Dict[str, float]:
    """Every node of the IR in order through `method`; seconds per node (each printed to stderr as it ends)."""
    times = {}
    for node_id in _node_ids(ir_path):
        times[node_id] = _timed(method, server, ir_path, node_id, log_path)
        print(f"  [{method}] {node_id}: {times[node_id]:.2f} s", file=sys.stderr, flush=True)
    return times


def _table(title: str, rows: List[tuple]) -> None:
    print(f"\n{title}")
    print(f"  {'node':<32} {'state':<15} {'fresh interpreter':>18} {'node server':>12} {'saved':>9}")
    for node, state, a, b in rows:
        print(f"  {node:<32} {state:<15} {a:>16.2f} s {b:>10.2f} s {a - b:>7.2f} s")


def _totals(rows: List[tuple]) -> tuple:
    return sum(r[2] for r in rows), sum(r[3] for r in rows)


def _timed(method: str, server: NodeServer, ir_path: str, node_id: str, log_path: str) -> float:
    if method == "fresh":
        return fresh(ir_path, node_id, log_path)
    return via_server(server, ir_path, node_id, log_path)


def smoke(args, scratch: str, server: NodeServer) -> None:
    """Each smoke node cold (new workspaces, `--cold-repeat` times), then cached (new runs of the first
    repetition's workspaces, `--repeat` times); the two methods interleaved node by node."""
    data = os.path.abspath(args.data or os.path.join(PROJECT_ROOT, "data", "onet"))
    log_path = os.path.join(scratch, "smoke.log")
    methods = ("fresh", "server")
    figures: Dict[tuple, List[float]] = {}  # (label, node, method) -> seconds
    states: Dict[tuple, set] = {}  # (label, node) -> states recorded in ML Metadata
    runs = [("cold", rep, f"smoke-%s-{rep}", f"bench-cold-{rep}") for rep in range(args.cold_repeat)]
    runs += [("cached", rep, "smoke-%s-0", f"bench-cached-{rep}") for rep in range(args.repeat)]
    for label, rep, workspace, run_id in runs:
        irs = {m: _prepare("smoke", {"data_dir": data, "workspace": os.path.join(scratch, workspace % m)}, run_id)
               for m in methods}
        for node_id in _node_ids(irs["fresh"]):
            for method in methods:
                seconds = _timed(method, server, irs[method], node_id, log_path)
                figures.setdefault((label, node_id, method), []).append(seconds)
        for method in methods:
            for node_id, state in _states(irs[method]).items():
                states.setdefault((label, node_id), set()).add(state)
    rows = [(f"{node} ({label})", "/".join(sorted(states.get((label, node), {"?"}))),
             statistics.median(figures[(label, node, "fresh")]), statistics.median(figures[(label, node, "server")]))
            for label, node, method in figures if method == "fresh"]
    _table(f"smoke pipeline over {data}/jobs: median of {args.cold_repeat} cold and {args.repeat} cached runs per node",
           rows)


def _local_run(data: str, workspace: str, conf: dict, log_path: str) -> float:
    argv = [sys.executable, "-m", "cvrank.cli", "run", "--data", data, "--workspace", workspace]
    for key, value in conf.items():
        if key not in ("data_dir", "workspace"):
            argv += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return _run(argv, log_path)


def cvrank_pipeline(args, scratch: str, server: NodeServer, workspace: str, label: str, local: bool) -> None:
    data = os.path.abspath(args.data)
    conf = {**json.loads(args.conf or "{}"), "data_dir": data, "workspace": workspace}
    log_path = os.path.join(scratch, f"cvrank-{label}.log")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results = {}
    irs = {}
    for method in ("fresh", "server"):
        method_conf = conf
        if label == "cold":  # a new workspace per method
            method_conf = {**conf, "workspace": os.path.join(workspace, method)}
        irs[method] = _prepare("cvrank", method_conf, f"bench-{method}-{label}-{stamp}")
        start = time.monotonic()
        results[method] = run_nodes(method, server, irs[method], log_path)
        results[method + " total"] = time.monotonic() - start
    states = {m: _states(irs[m]) for m in ("fresh", "server")}
    rows = [(n, "/".join(sorted({states["fresh"].get(n, "?"), states["server"].get(n, "?")})), results["fresh"][n],
             results["server"][n]) for n in results["fresh"]]
    _table(f"cvrank pipeline ({label}) on {data}, workspace {workspace if label != 'cold' else '(new)'}", rows)
    a, b = _totals(rows)
    print(f"  {'sum of the nodes':<48} {a:>16.2f} s {b:>10.2f} s {a - b:>7.2f} s")
    if local:
        local_ws = workspace if label != "cold" else os.path.join(workspace, "local")
        seconds = _local_run(data, local_ws, conf, log_path)
        print(f"  local runner, whole pipeline (python -m cvrank.cli run, one process): {seconds:.2f} s; "
              f"node server / local: {b / seconds:.2f}x, fresh interpreters / local: {a / seconds:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset directory (smoke: its jobs/; cvrank pipeline: all of it)")
    parser.add_argument("--workspace", help="a workspace with a finished `bin/cvrank run --data DATA` (cached figures)")
    parser.add_argument("--conf", help="JSON settings of that run, if not the defaults")
    parser.add_argument("--cold-pipeline", action="store_true", help="also the whole cvrank pipeline cold (slow)")
    parser.add_argument("--repeat", type=int, default=3, help="cached smoke runs per method (default 3)")
    parser.add_argument("--cold-repeat", type=int, default=1, help="cold smoke runs per method (default 1)")
    parser.add_argument("--skip-smoke", action="store_true", help="only the cvrank pipeline's figures")
    parser.add_argument("--scratch", help="directory for workspaces and logs (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    if args.cold_pipeline and not args.data:
        parser.error("--cold-pipeline needs --data")
    if args.workspace and not args.data:
        parser.error("--workspace needs --data")
    if args.cold_repeat < 1 or args.repeat < 1:
        parser.error("--repeat and --cold-repeat must be at least 1")

    scratch = os.path.abspath(args.scratch) if args.scratch else tempfile.mkdtemp(prefix="task-overhead-")
    os.makedirs(scratch, exist_ok=True)
    print(f"{os.cpu_count()} cores; python {sys.version.split()[0]}; scratch {scratch}", flush=True)
    server = NodeServer(scratch)
    with open(server.log_path) as f:
        preload = re.search(r"preloaded (\d+) modules in ([0-9.]+) s", f.read())
    print(f"node server ready in {server.ready_seconds:.1f} s"
          + (f" ({preload.group(1)} modules preloaded in {preload.group(2)} s)" if preload else ""), flush=True)
    try:
        if not args.skip_smoke:
            smoke(args, scratch, server)
        if args.workspace:
            cvrank_pipeline(args, scratch, server, os.path.abspath(args.workspace), "cached", local=True)
        if args.cold_pipeline:
            cvrank_pipeline(args, scratch, server, os.path.join(scratch, "cvrank-cold"), "cold", local=True)
    finally:
        lines = server.request_lines()
        server.stop()
    fresh_runs = [line for line in lines if "(fresh interpreter pid" in line]
    print(f"\nnode server: {len(lines)} requests, {server.restarts_seen} retried while it restarted, "
          f"{len(fresh_runs)} run in a fresh interpreter because project sources had changed"
          + (" (their figures include the imports)" if fresh_runs else ""))
    if not args.keep and not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\nfresh interpreter: `python -c 'airflow_tasks.run_node(ir, node)'`; node server: `python -c "
          "'node_client.run_node(socket, ir, node)'` against `python -m orchestration.node_server`")


if __name__ == "__main__":
    main()
