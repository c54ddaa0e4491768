"""Serving latency and throughput: `cvrank serve` under load, beside the in-process call of the same signature.

Starts a real server process on 127.0.0.1 over a model base path (default: what `make run` pushed), then:
1. the in-process call: `serving_default` of the same SavedModel on one job description, in a loop;
2. single-query `:predict` over REST at each concurrency, from an asyncio load generator holding one
   keep-alive HTTP/1.1 connection per concurrent client;
3. a hot reload under load: a copy of the served model is pushed as a new version (file by file, as TFX's
   Pusher does) while the load runs, and the errors through the switch are counted.
Queries are the job descriptions of the dataset's jobs/*.csv. Prints p50, p99, requests/s and errors.

    bin/cvrank exec -- python benchmarks/serving_latency.py [--model-base-path DIR] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import glob
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)

from config import PipelineConfig  # noqa: E402
from serving.base_path import versions_on_disk  # noqa: E402
from tests.serving_support import ServerProcess  # noqa: E402


def job_texts(data_dir: str, limit: int = 500) -> list:
    texts = []
    for path in sorted(glob.glob(os.path.join(data_dir, "jobs", "*.csv"))):
        with open(path, encoding="utf-8-sig") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    return texts[:limit]


def percentiles(latencies: list) -> tuple:
    if not latencies:
        return float("nan"), float("nan")
    a = np.asarray(latencies) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def in_process(version_dir: str, texts: list, seconds: float) -> dict:
    import tensorflow as tf

    fn = tf.saved_model.load(version_dir).signatures["serving_default"]
    for t in texts[:20]:
        fn(text=tf.constant([t]))
    latencies, k, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        fn(text=tf.constant([texts[k % len(texts)]]))["scores"].numpy()
        latencies.append(time.perf_counter() - start)
        k += 1
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "rps": len(latencies) / seconds, "errors": 0, "requests": len(latencies)}


class _Connection:
    """A keep-alive HTTP/1.1 connection sending pre-built requests: a load generator lean enough that its
    own cost stays out of the server's latency figures (the client shares the machine's 2 cores)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def send(self, request: bytes) -> tuple:
        self.writer.write(request)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


def predict_request(port: int, text: str) -> bytes:
    body = json.dumps({"instances": [text]}).encode()
    return (f"POST /v1/models/cvrank:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def load(port: int, texts: list, concurrency: int, seconds: float, during=None) -> dict:
    """Sends single-query :predict requests over `concurrency` connections for `seconds`. `during`, an async
    callable, runs alongside (the hot reload); the load goes on until both are done."""
    requests = [predict_request(port, t) for t in texts]
    latencies, errors, state = [], [], {"stop": False}
    connections = [_Connection("127.0.0.1", port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    for c in connections:  # warm the connections and the server's code paths
        await c.send(requests[0])

    async def worker(connection, offset):
        k = offset
        while not state["stop"]:
            start = time.perf_counter()
            try:
                status, body = await connection.send(requests[k % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
                errors.append((0, repr(err)))
                await connection.open()
                continue
            k += concurrency
            if status != 200:
                errors.append((status, body[:200]))
                continue
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(worker(c, i)) for i, c in enumerate(connections)]
    extra = await during() if during is not None else None
    remaining = seconds - (time.perf_counter() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
    state["stop"] = True
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for c in connections:
        c.close()
    p50, p99 = percentiles(latencies)
    return {"p50": p50, "p99": p99, "rps": len(latencies) / elapsed, "errors": len(errors),
            "requests": len(latencies) + len(errors), "sample_errors": errors[:3], "extra": extra}


def get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", default=PipelineConfig().serving_dir)
    parser.add_argument("--data", default=PipelineConfig().data_dir, help="dataset whose jobs are the queries")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per row")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--access-log", default="off", help="the server's access log ('off', '-', or a file)")
    parser.add_argument("--batch-threads", type=int)
    parser.add_argument("--max-batch-size", type=int)
    args = parser.parse_args()

    versions = versions_on_disk(args.model_base_path)
    if not versions:
        print(f"no model under {args.model_base_path}: run `make run` first", file=sys.stderr)
        return 2
    texts = job_texts(args.data)
    latest = max(versions)

    # A scratch base path holding a copy of the newest version, so the hot reload touches nothing real.
    scratch = tempfile.mkdtemp(prefix="cvrank-serving-bench-")
    base = os.path.join(scratch, "cvrank")
    shutil.copytree(versions[latest], os.path.join(base, str(latest)))
    extra = ["--access-log", args.access_log]
    if args.batch_threads:
        extra += ["--batch-threads", str(args.batch_threads)]
    if args.max_batch_size:
        extra += ["--max-batch-size", str(args.max_batch_size)]
    server = ServerProcess(base, os.path.join(scratch, "server.log"), *extra, poll_seconds=1.0)
    url, port = server.url, server.port
    rows = []
    try:
        server.wait_ready(timeout=120)
        print(f"model version {latest} from {args.model_base_path}; {len(texts)} job descriptions as queries; "
              f"{os.cpu_count()} cores", flush=True)

        rows.append(("in-process call", 1, in_process(versions[latest], texts, args.seconds)))
        for c in [int(c) for c in args.concurrency.split(",")]:
            rows.append(("REST :predict", c, asyncio.run(load(port, texts, c, args.seconds))))

        async def hot_reload():
            new = latest + 1
            shutil.copytree(os.path.join(base, str(latest)), os.path.join(base, str(new)))
            start = time.perf_counter()
            while True:
                await asyncio.sleep(0.05)
                status = await asyncio.get_running_loop().run_in_executor(
                    None, get_json, f"{url}/v1/models/cvrank")
                newest = status["model_version_status"][0]
                if newest["version"] == str(new) and newest["state"] == "AVAILABLE":
                    return f"switched to version {new} in {time.perf_counter() - start:.1f} s"

        reload_row = asyncio.run(load(port, texts, 16, args.seconds, during=hot_reload))
        rows.append(("REST :predict, hot reload", 16, reload_row))
        metrics = server.get("/monitoring/prometheus/metrics")[1]
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{'what':<28}{'concurrency':>12}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'errors':>8}{'requests':>10}")
    for name, c, r in rows:
        print(f"{name:<28}{c:>12}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['rps']:>10.0f}{r['errors']:>8}{r['requests']:>10}")
    for name, c, r in rows:
        if r.get("sample_errors"):
            print(f"errors of {name} at {c}: {r['sample_errors']}")
    print(f"\nhot reload: {reload_row['extra']}")
    overhead = rows[1][2]["p50"] - rows[0][2]["p50"]
    print(f"server overhead at concurrency 1 (p50, REST minus in-process): {overhead:.2f} ms")
    batch_lines = [line for line in metrics.splitlines()
                   if line.startswith("cvrank_serving_batch_size_sum") or line.startswith("cvrank_serving_batch_size_count")]
    sums = {line.split("{")[0]: float(line.split()[-1]) for line in batch_lines if 'signature="serving_default"' in line}
    if sums.get("cvrank_serving_batch_size_count"):
        print(f"mean batch size over the run: "
              f"{sums['cvrank_serving_batch_size_sum'] / sums['cvrank_serving_batch_size_count']:.1f} rows per TensorFlow call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
