"""How the pipeline's nodes scale with the data: cold runs on the bundled dataset and on datasets N times
its size (data/scale_dataset.py), per node wall time, CPU time and peak memory, the inputs that drive
each node, and the growth exponents between sizes. Prints figures only; asserts nothing.

    bin/cvrank exec -- python benchmarks/scaling.py                       # sizes 1,4,16 of data/onet
    bin/cvrank exec -- python benchmarks/scaling.py --sizes 1,4,8 --max-minutes 40
    bin/cvrank exec -- python benchmarks/scaling.py --report-only         # redraw from saved results

For each size the scaled dataset is written to `<scratch>/onet-<N>x` (reused when its `scale.json`
matches the source files, the factor, the seed and the generator), then the whole pipeline runs cold
(a fresh `<scratch>/ws-<N>x` workspace, default settings, so the Beam mode is pipeline/beam.py's
choice for that dataset) in a child process of its own: the same pipeline factory and local runner as
`cvrank run` (`orchestration.runner.run_pipeline`), whose node listener marks each node's start and end.

Measured per node, in that child:
- wall s: the listener's node time (what `cvrank run` prints per node).
- CPU s: user + system time of the child process (its threads; Beam worker processes not included).
- peak MB (proc): the child's peak resident set (VmHWM, reset at each node start via
  /proc/self/clear_refs). It starts from what the process still holds when the node starts: memory
  an earlier node freed is not always returned to the system (Python's and TensorFlow's allocators
  keep it), so a node's figure is at most its own need plus what earlier nodes left resident.
- peak MB (tree): the highest sum of resident sets of the child and its descendants (Beam workers in
  multi-process mode), sampled every SAMPLE_SECONDS; shared pages count once per process.
- GloveTrainer phases: the executor's calls (read the matrix, GloVe epochs, read the CVs, build the
  model and its CV index, score the eval jobs, the fusion grid search, save the SavedModel) timed by
  wrapping them in the child; nothing else changes.
Inputs: corpus tokens (every `token_ids` value CooccurrenceGen reads, out-of-vocabulary ones included,
from Transform's post-transform statistics), the co-occurrence matrix's non-zeros and vocabulary size
(its artifact properties in ML Metadata), the dataset's rows and bytes.

The exponent between sizes s1 < s2 is log(t2 / t1) / log(x2 / x1) with x the size factor N (CVs, jobs
and corpus text N times; judgments grow N^2, see data/README.md), and for CooccurrenceGen and the GloVe
phase also x = tokens and x = non-zeros. Results go to `<scratch>/results-<N>x.json`; the table to
stdout and `--markdown` (benchmarks/scaling.md), the plot to `--plot` (benchmarks/scaling.png).
A size that does not finish within `--max-minutes` is stopped; its completed nodes are reported with
the node it was in.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
sys.path.insert(0, os.path.join(PROJECT_ROOT, "data"))

import scale_dataset  # noqa: E402  (data/scale_dataset.py)

SAMPLE_SECONDS = 0.2
DEFAULT_SCRATCH = os.path.join(PROJECT_ROOT, ".scratch", "scaling")
FASTER_THAN_LINEAR = 1.15  # an exponent above this is flagged
GLOVE_PHASES = ("read matrix", "GloVe epochs", "read CVs", "build model + CV index", "score eval jobs",
                "eval job labels", "fusion grid search", "save SavedModel")
# Why a node's time can grow faster than its data, from what its code does; printed beside a node
# whose measured exponent exceeds FASTER_THAN_LINEAR.
COST_NOTES = {
    "FileCheck": "reads every byte of the dataset, and the judgments (most of the bytes from 4x on) grow N^2",
    "judgments_example_gen": "reads the judgments, which grow N^2 (N x the CVs, each judged for N x the jobs "
                             "of its minor group)",
    "judgments_statistics_gen": "statistics of the judgments (N^2 rows)",
    "DataCheck": "joins the judgments (N^2 rows) with the CVs and jobs",
    "GloveTrainer": "scores every eval job against every CV (N x jobs times N x CVs) to fit the fusion "
                    "weights; see its phases",
    "Evaluator": "ranks every eval job against every CV: N x jobs times N x CVs scores per output",
}


# ---- the child: one cold run, measured --------------------------------------------------------------

def vm_kib(field: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """This process's peak resident set over spans of time (VmHWM, which /proc/self/clear_refs resets):
    `start()` opens a span, `peak_mb()` is the peak since then; spans may nest (the highest reading
    seen since the outer span's start is kept for it)."""

    def __init__(self):
        self._spans: List[float] = []

    def _fold(self) -> None:
        now = vm_kib("VmHWM") / 1024
        self._spans = [max(span, now) for span in self._spans]

    def start(self) -> None:
        self._fold()
        self._spans.append(0.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set

    def stop(self) -> float:
        """Closes the innermost span; its peak MB."""
        self._fold()
        return self._spans.pop()


class Sampler(threading.Thread):
    """Samples the resident set of this process and its descendants; keeps the peak per node and
    calls `report(node, peak MB)` about every REPORT_SECONDS while a node runs."""

    REPORT_SECONDS = 2.0

    def __init__(self, report):
        super().__init__(daemon=True)
        import psutil

        self._me = psutil.Process()
        self._report = report
        self.node: Optional[str] = None
        self.peak_kib: Dict[str, int] = {}
        self._stop = threading.Event()

    def run(self):
        last = time.monotonic()
        while not self._stop.wait(SAMPLE_SECONDS):
            node = self.node
            if node is None:
                continue
            self.peak_kib[node] = max(self.peak_kib.get(node, 0), tree_rss_kib(self._me))
            if time.monotonic() - last >= self.REPORT_SECONDS:
                last = time.monotonic()
                self._report(node, self.peak_kib[node] / 1024)

    def stop(self):
        self._stop.set()


def tree_rss_kib(process) -> int:
    """Resident set of a psutil.Process and its descendants, KiB."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss // 1024
        except Exception:  # a worker that just ended
            pass
    return total


class PhaseTimer:
    """Wraps functions so that the seconds spent in each (by phase name) add up, with this process's
    peak resident set during each; `current` is the phase running, if any."""

    def __init__(self, peak: PeakRss):
        self.seconds: Dict[str, float] = {}
        self.peak_mb: Dict[str, float] = {}
        self.current: Optional[str] = None
        self._peak = peak

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            start, outer = time.monotonic(), self.current
            self.current = phase
            self._peak.start()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current = outer
                self.peak_mb[phase] = max(self.peak_mb.get(phase, 0.0), self._peak.stop())
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.monotonic() - start
        return timed


def time_glove_trainer(phases: PhaseTimer) -> None:
    """Times the GloveTrainer executor's phases (GLOVE_PHASES) by wrapping what it calls."""
    from components.glove_trainer import executor as gt
    from serving.model import RankingModel
    from trainer import fusion, glove

    gt.read_cooccurrence_shards = phases.wrap("read matrix", gt.read_cooccurrence_shards)
    glove.train_glove = phases.wrap("GloVe epochs", glove.train_glove)
    gt.read_cvs = phases.wrap("read CVs", gt.read_cvs)
    gt.build_model = phases.wrap("build model + CV index", gt.build_model)
    RankingModel.score_examples = phases.wrap("score eval jobs", RankingModel.score_examples)
    RankingModel.labels_of_examples = phases.wrap("eval job labels", RankingModel.labels_of_examples)
    fusion.fit_fusion = phases.wrap("fusion grid search", fusion.fit_fusion)
    gt.save_model = phases.wrap("save SavedModel", gt.save_model)


def corpus_tokens(transform_outputs) -> Optional[int]:
    """Total `token_ids` values over every split, from Transform's post-transform statistics."""
    import glob

    from tensorflow_metadata.proto.v0 import statistics_pb2
    from transform.contract import TOKEN_IDS_KEY

    artifacts = transform_outputs.get("post_transform_stats") or []
    total, found = 0, False
    for artifact in artifacts:
        for path in (glob.glob(os.path.join(artifact.uri, "FeatureStats.pb"))
                     + glob.glob(os.path.join(artifact.uri, "Split-*", "FeatureStats.pb"))):
            stats = statistics_pb2.DatasetFeatureStatisticsList()
            with open(path, "rb") as f:
                stats.ParseFromString(f.read())
            for dataset in stats.datasets:
                for feature in dataset.features:
                    if feature.path.step and feature.path.step[-1] == TOKEN_IDS_KEY:
                        common = (feature.num_stats.common_stats if feature.HasField("num_stats")
                                  else feature.string_stats.common_stats)
                        total += int(common.tot_num_values)
                        found = True
    return total if found else None


def dataset_facts(data_dir: str) -> dict:
    from dataset.files import dataset_files
    from pipeline import beam

    rows = {}
    for kind, paths in dataset_files(data_dir).items():
        rows[kind] = 0
        for path in paths:
            with open(path, "rb") as f:
                rows[kind] += max(0, sum(1 for _ in f) - 1)
    return {"rows": rows, "bytes": beam.dataset_bytes(data_dir)}


def measure(data_dir: str, workspace: str, result_path: str) -> int:
    """One cold run of the pipeline on `data_dir` in `workspace`; writes the results to `result_path`
    after every node (so a stopped run leaves what it measured). Exit code 1 when a node failed."""
    from config import PipelineConfig
    from orchestration import runner
    from orchestration.console import RunOutput
    from orchestration.pipeline_dirs import write_atomically
    from orchestration.runs import new_run_id, run_log_path
    from pipeline import beam
    from pipeline.pipeline import create_pipeline

    config = PipelineConfig.create({"data_dir": data_dir, "workspace": workspace})
    args = beam.beam_pipeline_args(config)
    run_id = new_run_id()
    result = {
        "data_dir": data_dir, "workspace": workspace, "run_id": run_id, "dataset": dataset_facts(data_dir),
        "beam_mode": "multi-process" if tuple(args) == beam.MULTI_PROCESS else
                     "in-process" if tuple(args) == beam.IN_PROCESS else " ".join(args),
        "nodes": {}, "order": [], "running": None, "finished": False,
    }
    lock = threading.RLock()  # the sampler thread reports while nodes start and end
    peak = PeakRss()
    phases = PhaseTimer(peak)
    time_glove_trainer(phases)

    def save():
        with lock:
            write_atomically(result_path, json.dumps(result, indent=1).encode())

    def running(node, peak_mb):
        with lock:
            if result["running"] and result["running"]["node"] == node:
                result["running"].update({"peak_tree_mb": peak_mb, "phase": phases.current,
                                          "phases": dict(phases.seconds), "phase_peak_mb": dict(phases.peak_mb)})
                save()

    sampler = Sampler(running)
    sampler.start()

    class Listener(runner.NodeListener):
        def node_started(self, node_id, index, total):
            out.progress.started(index, total, node_id)
            peak.start()
            self.cpu = os.times()
            with lock:
                result["running"] = {"node": node_id, "started": time.time()}
                sampler.node = node_id
                save()

        def node_finished(self, node_id, seconds, error):
            cpu = os.times()
            peak_mb = peak.stop()
            sampler.node = None
            out.progress.finished(seconds, "FAILED" if error else "done")
            with lock:
                result["nodes"][node_id] = {
                    "wall_s": seconds,
                    "cpu_s": (cpu.user - self.cpu.user) + (cpu.system - self.cpu.system),
                    "peak_proc_mb": peak_mb,
                    "peak_tree_mb": max(sampler.peak_kib.get(node_id, 0) / 1024, peak_mb),
                    "error": None if error is None else f"{type(error).__name__}: {str(error)[-500:]}",
                    "loadavg_end": os.getloadavg()[0],
                }
                if node_id == "GloveTrainer":
                    result["nodes"][node_id].update(phases=dict(phases.seconds), phase_peak_mb=dict(phases.peak_mb))
                result["order"].append(node_id)
                result["running"] = None
                save()

    started = time.monotonic()
    failed = False
    with RunOutput(run_log_path(config.logs_dir, run_id)) as out:
        out.console.write(f"scaling: {data_dir} ({result['beam_mode']} Beam), log "
                          f"{run_log_path(config.logs_dir, run_id)}\n")
        try:
            runner.run_pipeline(create_pipeline(config), run_id=run_id, listener=Listener(), config=config)
            result["run_wall_s"] = time.monotonic() - started
        except Exception:  # recorded on its node; the inputs measured so far are still read
            logging.exception("scaling: run %s failed", run_id)
            failed = True
        sampler.stop()
        result.update(recorded_inputs(config))
    result["finished"] = not failed
    save()
    return 1 if failed else 0


def recorded_inputs(config) -> dict:
    """Node states, and the inputs ML Metadata recorded (tokens, vocabulary, non-zeros), of the run in
    the workspace of `config` (a fresh one: each node has at most one execution)."""
    from metadata import mlmd

    store = mlmd.open_store(config.metadata_connection(), read_only=True)

    def outputs(node):
        executions = mlmd.node_executions(store, config.pipeline_name, node)
        return mlmd.execution_outputs(store, executions[-1].id) if executions else {}

    found = {}
    matrix = outputs("CooccurrenceGen").get("cooccurrence")
    if matrix:
        found["nonzeros"] = matrix[0].properties["nonzeros"].int_value
        found["vocab_size"] = matrix[0].properties["vocab_size"].int_value
    transform = outputs("Transform")
    if transform:
        found["tokens"] = corpus_tokens(transform)
    return found


# ---- the parent: datasets, runs, report -------------------------------------------------------------

def dataset_for(size: int, source: str, seed: int, scratch: str) -> dict:
    """The dataset directory of `size` (the source itself for 1), written unless a matching one exists."""
    if size == 1:
        return {"dir": os.path.abspath(source), "generated_s": None, "reused": None}
    out = os.path.join(scratch, f"onet-{size}x")
    if dataset_matches(out, size, seed, source):
        return {"dir": out, "generated_s": None, "reused": True}
    os.makedirs(out, exist_ok=True)
    start = time.monotonic()
    print(f"scaling: writing {out} ({size} x {source}, seed {seed})", flush=True)
    scale_dataset.scale(source, out, size, seed)
    return {"dir": out, "generated_s": time.monotonic() - start, "reused": False}


def dataset_matches(out: str, size: int, seed: int, source: str) -> bool:
    try:
        with open(os.path.join(out, scale_dataset.MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    if (manifest.get("factor"), manifest.get("seed")) != (size, seed):
        return False
    if manifest.get("generator_sha256") != scale_dataset.generator_digest():
        return False
    if manifest.get("source", {}).get("files") != scale_dataset.source_files(source):
        return False
    return all(os.path.isfile(os.path.join(out, rel)) and os.path.getsize(os.path.join(out, rel)) == info["bytes"]
               for rel, info in manifest.get("files", {}).items())


def run_size(size: int, data_dir: str, scratch: str, max_minutes: float, max_memory_gb: float) -> dict:
    """Runs `measure` for one size in a child process (its own session), stopped after `max_minutes`
    or when it and its descendants hold more than `max_memory_gb` GiB resident."""
    import shutil

    import psutil

    workspace = os.path.join(scratch, f"ws-{size}x")
    shutil.rmtree(workspace, ignore_errors=True)  # cold: nothing to reuse
    result_path = os.path.join(scratch, f"results-{size}x.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--data", data_dir, "--workspace", workspace,
           "--result", result_path]
    start = time.monotonic()
    child = subprocess.Popen(cmd, start_new_session=True)
    process = psutil.Process(child.pid)
    stopped, peak_gb = None, 0.0
    while child.poll() is None:
        gb = tree_rss_kib(process) / 1024 / 1024
        peak_gb = max(peak_gb, gb)
        if gb > max_memory_gb:
            stopped = f"stopped at {gb:.1f} GiB resident (cap {max_memory_gb:g} GiB)"
        elif time.monotonic() - start > max_minutes * 60:
            stopped = f"stopped after {max_minutes:g} min"
        if stopped:
            os.killpg(child.pid, signal.SIGKILL)  # the child and its Beam workers
            break
        time.sleep(0.25)
    code = child.wait()
    result = load(result_path) or {"nodes": {}, "order": [], "running": None, "finished": False}
    result.update({"size": size, "exit_code": code, "stopped": stopped, "process_wall_s": time.monotonic() - start,
                   "watchdog_peak_gb": peak_gb, "max_memory_gb": max_memory_gb})
    if result.get("running"):
        result["running"]["elapsed_s"] = time.time() - result["running"]["started"]
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def load(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def exponent(t1: Optional[float], t2: Optional[float], x1: Optional[float], x2: Optional[float]) -> Optional[float]:
    if not (t1 and t2 and x1 and x2) or x1 == x2:
        return None
    return math.log(t2 / t1) / math.log(x2 / x1)


def fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def report(results: List[dict], meta: dict) -> str:
    """The markdown report: machine and command, inputs per size, per-node tables, exponents, notes."""
    results = sorted(results, key=lambda r: r["size"])
    sizes = [r["size"] for r in results]
    pairs = list(zip(results, results[1:]))
    order = []
    for r in results:
        order += [n for n in r.get("order", []) + [stopped_node(r)] if n and n not in order]
    lines = [
        "# Scaling of the pipeline with the data",
        "",
        f"Cold runs (fresh workspace, default settings) of `data/onet` at {', '.join(f'{s}x' for s in sizes)} "
        "its size: N x the CVs, jobs and corpus text, judgments by the occupation rule (about N^2 x), from "
        "`data/scale_dataset.py`. Written by `benchmarks/scaling.py`; see its docstring for what is measured.",
        "",
        *(f"- command: `{c}`" for c in meta.get("commands", [])),
        f"- machine: {meta['machine']}",
        f"- software: {meta['software']}",
        f"- code: {meta['code']}; measured {meta['date']}",
        "",
        "## Inputs per size",
        "",
        "| | " + " | ".join(f"{s}x" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    rows_of = [r.get("dataset", {}).get("rows", {}) for r in results]
    for kind in ("cvs", "jobs", "judgments", "corpus"):
        row(f"{kind} rows", [fmt(x.get(kind), ",") for x in rows_of])
    row("dataset MB", [fmt(r.get("dataset", {}).get("bytes", 0) / 1e6, ".1f") for r in results])
    row("Beam mode (pipeline/beam.py)", [r.get("beam_mode", "-") for r in results])
    row("tokens (CooccurrenceGen input)", [fmt(r.get("tokens"), ",") for r in results])
    row("vocabulary", [fmt(r.get("vocab_size"), ",") for r in results])
    row("non-zeros (GloveTrainer input)", [fmt(r.get("nonzeros"), ",") for r in results])
    loads = [[n.get("loadavg_end") for n in r["nodes"].values() if n.get("loadavg_end") is not None]
             for r in results]
    row("1-min load average at node ends (2 = both cores busy)",
        [f"{min(x):.1f}-{max(x):.1f}" if x else "-" for x in loads])
    row("whole run, wall s", [fmt(r.get("run_wall_s")) if r.get("finished") else status(r) for r in results])

    head = ("| node | " + " | ".join(f"{s}x s" for s in sizes) + " | "
            + " | ".join(f"exp {a['size']}→{b['size']}" for a, b in pairs) + " | "
            + " | ".join(f"{s}x CPU s" for s in sizes) + " |")
    lines += ["", "## Wall time per node", "",
              "Exponent: log(t2/t1) / log(N2/N1); 1 is linear in the size factor. "
              f"Flagged (**bold**) above {FASTER_THAN_LINEAR} for nodes over 5 s. CPU s: the run's process "
              "only; in multi-process Beam mode the workers do the work, and their CPU time is not counted.", "",
              head, "|---|" + "---:|" * (len(sizes) * 2 + len(pairs))]
    flagged = {}  # node -> [(a, b, exponent)] of the size pairs it grew faster than linear between
    for node in order:
        walls = [r["nodes"].get(node, {}).get("wall_s") for r in results]
        shown = [fmt(w) if w is not None or stopped_node(r) != node else f"stopped at {r['running']['elapsed_s']:.0f}"
                 for w, r in zip(walls, results)]
        shown = [f"failed at {w:.0f}" if r["nodes"].get(node, {}).get("error") else text
                 for w, r, text in zip(walls, results, shown)]
        exps = [exponent(done_wall(a, node), done_wall(b, node), a["size"], b["size"]) for a, b in pairs]
        cells = []
        for (a, b), e in zip(pairs, exps):
            slow = e is not None and e > FASTER_THAN_LINEAR and (done_wall(b, node) or 0) > 5
            if slow:
                flagged.setdefault(node, []).append((a, b, e))
            cells.append(f"**{e:.2f}**" if slow else fmt(e, ".2f"))
        cpus = [r["nodes"].get(node, {}).get("cpu_s") for r in results]
        lines.append(f"| {node} | " + " | ".join(shown) + " | " + " | ".join(cells) + " | "
                     + " | ".join(fmt(c) for c in cpus) + " |")

    lines += ["", "## Input-driven exponents", "",
              "| what | " + " | ".join(f"{a['size']}→{b['size']}" for a, b in pairs) + " |",
              "|---|" + "---:|" * len(pairs)]

    def phase(r, name, key="phases"):
        done = r["nodes"].get("GloveTrainer", {}).get(key)
        if done is None and stopped_node(r) == "GloveTrainer":
            done = r["running"].get(key, {})
        return (done or {}).get(name)

    def jobs_x_cvs(r):
        rows = r.get("dataset", {}).get("rows", {})
        return (rows.get("jobs") or 0) * (rows.get("cvs") or 0) or None

    for label, t, x in [
        ("CooccurrenceGen time vs tokens", lambda r: done_wall(r, "CooccurrenceGen"), lambda r: r.get("tokens")),
        ("GloveTrainer time vs non-zeros", lambda r: done_wall(r, "GloveTrainer"), lambda r: r.get("nonzeros")),
        ("GloVe epochs (phase) vs non-zeros", lambda r: phase(r, "GloVe epochs"), lambda r: r.get("nonzeros")),
        ("score eval jobs (phase) vs jobs x CVs", lambda r: phase(r, "score eval jobs"), jobs_x_cvs),
        ("fusion grid search (phase) vs jobs x CVs", lambda r: phase(r, "fusion grid search"), jobs_x_cvs),
        ("Evaluator time vs jobs x CVs", lambda r: done_wall(r, "Evaluator"), jobs_x_cvs),
        ("tokens vs size factor", lambda r: r.get("tokens"), lambda r: r["size"]),
        ("non-zeros vs size factor", lambda r: r.get("nonzeros"), lambda r: r["size"]),
        ("judgments vs size factor", lambda r: r.get("dataset", {}).get("rows", {}).get("judgments"),
         lambda r: r["size"]),
    ]:
        row(label, [fmt(exponent(t(a), t(b), x(a), x(b)), ".2f") for a, b in pairs])

    lines += ["", "## GloveTrainer phases", "",
              "Wall s, exponents against the size factor, and the process's peak resident set during the phase "
              "(MB). A phase of a failed or stopped GloveTrainer shows what it had done.", "",
              "| phase | " + " | ".join(f"{s}x s" for s in sizes) + " | "
              + " | ".join(f"exp {a['size']}→{b['size']}" for a, b in pairs) + " | "
              + " | ".join(f"{s}x MB" for s in sizes) + " |",
              "|---|" + "---:|" * (2 * len(sizes) + len(pairs))]
    for name in GLOVE_PHASES:
        row(name, [fmt(phase(r, name)) for r in results]
            + [fmt(exponent(phase(a, name), phase(b, name), a["size"], b["size"]), ".2f") for a, b in pairs]
            + [fmt(phase(r, name, "phase_peak_mb"), ",.0f") for r in results])

    lines += ["", "## Peak memory per node (MB)", "",
              "proc: the run's process (VmHWM, reset at each node start, so it includes what earlier nodes "
              "left resident: the nodes after GloveTrainer mostly show its leftovers); tree: the process and "
              f"its descendants (Beam workers), sampled every {SAMPLE_SECONDS} s.", "",
              "| node | " + " | ".join(f"{s}x proc | {s}x tree" for s in sizes) + " |",
              "|---|" + "---:|" * (2 * len(sizes))]
    for node in order:
        cells = []
        for r in results:
            n = r["nodes"].get(node, {})
            tree = n.get("peak_tree_mb")
            if tree is None and stopped_node(r) == node:
                tree = max(r["running"].get("peak_tree_mb") or 0, 1024 * r.get("watchdog_peak_gb", 0)) or None
            cells += [fmt(n.get("peak_proc_mb"), ",.0f"), fmt(tree, ",.0f")]
        row(node, cells)

    unfinished = [r for r in results if not r.get("finished")]
    if unfinished:
        lines += ["", "## Sizes that did not finish", ""]
        for r in unfinished:
            running = r.get("running") or {}
            failed = [(node, n) for node, n in r["nodes"].items() if n.get("error")]
            if running:
                where = (f"in {running['node']}" + (f" ({running['phase']})" if running.get("phase") else "")
                         + f", {running.get('elapsed_s', 0):.0f} s into it")
            elif failed:
                node, n = failed[-1]
                last = [p for p in GLOVE_PHASES if p in n.get("phases", {})] if node == "GloveTrainer" else []
                where = (f"in {node}" + (f" ({last[-1]})" if last else "") + f" after {n['wall_s']:.0f} s: "
                         f"`{n['error'][:240]}`")
            else:
                where = "between nodes"
            done = [n for n in r["nodes"].values() if not n.get("error")]
            lines.append(f"- {r['size']}x: {status(r)}, {where}; the run's processes peaked at "
                         f"{r.get('watchdog_peak_gb', 0):.1f} GiB resident; {len(done)} nodes had finished "
                         f"in {sum(n['wall_s'] for n in done):.0f} s.")

    if flagged:
        lines += ["", "## Faster than linear", ""]
        for node, pairs in flagged.items():
            lines.append(f"- {node} (exponent up to {max(e for _, _, e in pairs):.2f}): "
                         f"{cost_note(node, [(a, b) for a, b, _ in pairs])}")
    return "\n".join(lines) + "\n"


def cost_note(node: str, pairs: List[tuple]) -> str:
    """Why `node` grew faster than its data between the size `pairs`: COST_NOTES from its code, or, when
    every pair straddles a change of Beam mode, the cost of the multi-process mode's worker processes."""
    mode_changes = [(a, b) for a, b in pairs if a.get("beam_mode") != b.get("beam_mode")]
    if node in COST_NOTES:
        return COST_NOTES[node]
    if pairs and len(mode_changes) == len(pairs):
        spans = ", ".join(f"{a['size']}x→{b['size']}x ({a.get('beam_mode')} → {b.get('beam_mode')})"
                          for a, b in mode_changes)
        return (f"only where the Beam mode changed, {spans}: starting the worker processes and sending "
                "every element to them, a cost of the mode rather than of the node's data")
    return "not explained: no cause recorded for this node in benchmarks/scaling.py's COST_NOTES"


def done_wall(r: dict, node: str) -> Optional[float]:
    """Wall s of `node` in run `r` when it finished without error, else None."""
    n = r["nodes"].get(node, {})
    return None if n.get("error") else n.get("wall_s")


def stopped_node(r: dict) -> Optional[str]:
    """The node a run that did not finish was in, or None."""
    return None if r.get("finished") or not r.get("running") else r["running"]["node"]


def status(r: dict) -> str:
    if r.get("stopped"):
        return r["stopped"]
    failed = [node for node, n in r.get("nodes", {}).items() if n.get("error")]
    return f"failed in {failed[-1]}" if failed else f"failed (exit {r.get('exit_code')})"


def plot(results: List[dict], path: str) -> None:
    """Log-log wall time and peak memory (process tree) per node against the size factor, for nodes
    over 2 s at some size; a node that failed or was stopped is an x at the time it had run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(results, key=lambda r: r["size"])
    sizes = [r["size"] for r in results]
    fig, (ax, ax_mem) = plt.subplots(1, 2, figsize=(15, 6.5))
    order = []
    for r in results:
        order += [n for n in r.get("order", []) + [stopped_node(r)] if n and n not in order]
    colours = plt.get_cmap("tab20").colors
    shown = 0
    for node in order:
        done = [r for r in results if done_wall(r, node) is not None]
        cut = [(r["size"], r["nodes"][node]["wall_s"] if node in r["nodes"] else r["running"]["elapsed_s"])
               for r in results if r["nodes"].get(node, {}).get("error") or stopped_node(r) == node]
        if max([done_wall(r, node) for r in done] + [t for _, t in cut] + [0]) < 2:
            continue
        style = {"color": colours[shown % len(colours)], "linestyle": ("-", "--", "-.")[shown // len(colours) % 3]}
        shown += 1
        ax.plot([r["size"] for r in done], [done_wall(r, node) for r in done], marker="o", label=node, **style)
        if cut:
            ax.plot(*zip(*cut), marker="x", markersize=10, linestyle="none", color=style["color"])
        ax_mem.plot([r["size"] for r in done], [r["nodes"][node]["peak_tree_mb"] for r in done], marker="o", **style)
    finished = [r for r in results if r.get("finished")]
    if finished:
        ax.plot([r["size"] for r in finished], [r["run_wall_s"] for r in finished], "k-", marker="s", linewidth=2,
                label="whole run")
        t0, s0 = finished[0]["run_wall_s"], finished[0]["size"]
        for slope, style in ((1, ":"), (2, "-.")):
            ax.plot(sizes, [t0 * (s / s0) ** slope for s in sizes], style, color="grey",
                    label=f"slope {slope} from the whole run")
    for a, title, ylabel in ((ax, "wall time per node (x: failed or stopped, time so far)", "seconds"),
                             (ax_mem, "peak memory per node (process and Beam workers)", "MB")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xticks(sizes)
        a.set_xticklabels([f"{s}x" for s in sizes])
        a.minorticks_off()
        a.set_xlabel("dataset size (x data/onet)")
        a.set_ylabel(ylabel)
        a.set_title(title)
        a.grid(True, which="both", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="center right", fontsize=8)
    unfinished = [f"{r['size']}x {status(r)}" for r in results if not r.get("finished")]
    if unfinished:
        fig.text(0.01, 0.01, "not finished: " + "; ".join(unfinished), fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 0.86, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = vm_meminfo_gib()
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def vm_meminfo_gib(field: str = "MemTotal") -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def mem_available_gib() -> float:
    return vm_meminfo_gib("MemAvailable")


def code_state() -> str:
    try:
        commit = subprocess.run(["git", "-C", PROJECT_ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", PROJECT_ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"commit {commit}" + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"


def software() -> str:
    from importlib.metadata import version

    parts = [f"Python {platform.python_version()}"]
    for package in ("tfx", "tensorflow", "apache-beam", "tensorflow-model-analysis"):
        try:
            parts.append(f"{package} {version(package)}")
        except Exception:
            pass
    return ", ".join(parts)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,4,16", help="size factors, comma-separated (default 1,4,16)")
    p.add_argument("--source", default=os.path.join(PROJECT_ROOT, "data", "onet"), help="dataset of size 1")
    p.add_argument("--seed", type=int, default=42, help="seed of the scaled datasets (default 42)")
    p.add_argument("--scratch", default=DEFAULT_SCRATCH, help="datasets, workspaces and results (default .scratch/scaling)")
    p.add_argument("--max-minutes", type=float, default=40.0, help="stop a size's run after this long (default 40)")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help="stop a size's run when its processes hold more than this many GiB resident "
                        "(default 90%% of the memory available at the start)")
    p.add_argument("--markdown", default=os.path.join(PROJECT_ROOT, "benchmarks", "scaling.md"))
    p.add_argument("--plot", default=os.path.join(PROJECT_ROOT, "benchmarks", "scaling.png"))
    p.add_argument("--report-only", action="store_true", help="only redraw the report from saved results")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--workspace", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return measure(args.data, args.workspace, args.result)
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    scratch = os.path.abspath(args.scratch)
    os.makedirs(scratch, exist_ok=True)
    meta_path = os.path.join(scratch, "meta.json")
    if args.report_only:
        meta = load(meta_path) or {}
    else:
        earlier = load(meta_path) or {}  # sizes measured by earlier commands stay in the report
        meta = {"commands": earlier.get("commands", []) + [
                    "bin/cvrank exec -- python benchmarks/scaling.py " + " ".join(argv or sys.argv[1:])],
                "machine": machine(), "software": software(), "code": code_state(),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "datasets": {**earlier.get("datasets", {})}}
        for size in sizes:
            info = dataset_for(size, args.source, args.seed, scratch)
            meta["datasets"][str(size)] = info
            print(f"scaling: size {size}x: {info['dir']}"
                  + (f" (written in {info['generated_s']:.1f} s)" if info["generated_s"] else
                     " (reused)" if info["reused"] else ""), flush=True)
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=1)
        cap = args.max_memory_gb or round(0.9 * mem_available_gib(), 1)
        print(f"scaling: each size stops after {args.max_minutes:g} min or at {cap:g} GiB resident", flush=True)
        for size in sizes:
            result = run_size(size, meta["datasets"][str(size)]["dir"], scratch, args.max_minutes, cap)
            print(f"scaling: size {size}x: " + (f"{result['run_wall_s']:.1f} s" if result.get("finished")
                                                 else status(result)), flush=True)
    results = []
    for size in sizes:
        path = os.path.join(scratch, f"results-{size}x.json")
        result = load(path)
        if result and result.get("tokens") is None and os.path.isdir(result.get("workspace", "")):
            from config import PipelineConfig  # results of a run stopped before it read them

            result.update(recorded_inputs(PipelineConfig.create(
                {"data_dir": result["data_dir"], "workspace": result["workspace"]})))
            with open(path, "w") as f:
                json.dump(result, f, indent=1)
        if result:
            results.append(result)
    text = report(results, meta)
    print(text)
    with open(args.markdown, "w") as f:
        f.write(text)
    plot(results, args.plot)
    print(f"scaling: wrote {args.markdown} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
