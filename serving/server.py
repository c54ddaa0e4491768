"""`cvrank serve`: a model server with TF Serving's REST and gRPC APIs over a TF Serving model base path.

One asyncio process: aiohttp answers REST, grpc.aio answers gRPC, a ModelManager polls the base path and
swaps versions, and TensorFlow calls run in a thread pool (TensorFlow releases the GIL), batched per
signature.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import sys
from typing import Optional

from aiohttp import web

from config import ServingConfig
from serving.grpc_api import create_server
from serving.metrics import ServingMetrics
from serving.rest import create_app
from serving.service import PredictionService
from serving.base_path import versions_on_disk
from serving.versions import ModelManager

log = logging.getLogger("cvrank.serving")
_ACCESS_FORMAT = '%a "%r" %s %b %Tfs'


def _access_logger(target: str) -> Optional[logging.Logger]:
    if target == "off":
        return None
    logger = logging.getLogger("cvrank.serving.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.handlers[:] = [handler]
    return logger


async def serve(config: ServingConfig, stop: Optional[asyncio.Event] = None) -> None:
    """Serves until `stop` is set (or SIGINT/SIGTERM when `stop` is None)."""
    metrics = ServingMetrics()
    executor = concurrent.futures.ThreadPoolExecutor(config.batch_threads, thread_name_prefix="cvrank-tf")
    manager = ModelManager(
        config.model_name, config.model_base_path, poll_seconds=config.poll_seconds, executor=executor,
        max_batch_size=config.max_batch_size, batch_threads=config.batch_threads,
        on_batch=lambda sig, rows: metrics.batch_size.labels(sig).observe(rows),
        on_version=lambda v: metrics.set_version(config.model_name, v),
        on_load_failure=lambda v: metrics.load_failures.labels(config.model_name).inc())
    metrics.set_version(config.model_name, None)
    if not versions_on_disk(config.model_base_path):
        log.warning("no versions of %s under %s yet; serving them as soon as one is pushed",
                    config.model_name, config.model_base_path)
    await manager.start()
    service = PredictionService(manager, executor)

    access = _access_logger(config.access_log)
    runner = web.AppRunner(create_app(service, metrics, config.max_body_bytes),
                           access_log=access, access_log_format=_ACCESS_FORMAT, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    grpc_server = None
    try:
        await site.start()
        if config.grpc_port:
            grpc_server = create_server(service, metrics, f"{config.host}:{config.grpc_port}")
            await grpc_server.start()
        log.info("serving model %s from %s: REST on http://%s:%d%s", config.model_name, config.model_base_path,
                 config.host, config.port,
                 f", gRPC on {config.host}:{config.grpc_port}" if config.grpc_port else "")
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=2)
        await runner.cleanup()
        await manager.stop()
        executor.shutdown(wait=False, cancel_futures=True)


def main(config: ServingConfig) -> int:
    """Runs the server in this process until interrupted. Returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        asyncio.run(serve(config))
    except OSError as err:  # a port in use, typically
        log.error("cannot serve: %s", err)
        return 1
    return 0
