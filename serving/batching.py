"""Server-side batching of concurrent requests (what TF Serving's `--enable_batching` does).

Requests for one signature of one model version queue up; a worker takes every queued request that fits
in `max_batch_size` rows, runs them as one TensorFlow call, and splits the outputs back. The batch is
formed greedily: a worker never waits for more requests, so a lone request runs at once (no added
latency at low load), while under load each call serves everything that arrived during the previous one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Callable, Dict, List, Optional

import numpy as np

Tensors = Dict[str, np.ndarray]


@dataclasses.dataclass
class _Pending:
    inputs: Tensors
    rows: int
    future: asyncio.Future


def _trailing_shapes(inputs: Tensors) -> tuple:
    return tuple(sorted((name, value.shape[1:]) for name, value in inputs.items()))


class Batcher:
    """Runs `run_fn(inputs) -> outputs` for queued requests in merged batches.

    `run_fn` is called in `executor` with inputs whose arrays share their first (batch) dimension and
    must return outputs with the same first dimension. Requests whose inputs differ in their other
    dimensions are never merged. At most `max_concurrent` calls run at once. `on_batch(rows)` is called
    with the size of each batch run (for metrics).
    """

    def __init__(self, run_fn: Callable[[Tensors], Tensors], executor: concurrent.futures.Executor,
                 max_batch_size: int = 128, max_concurrent: int = 1,
                 on_batch: Optional[Callable[[int], None]] = None):
        if max_batch_size < 1 or max_concurrent < 1:
            raise ValueError("max_batch_size and max_concurrent must be >= 1")
        self._run_fn = run_fn
        self._executor = executor
        self._max_rows = max_batch_size
        self._on_batch = on_batch
        self._queue: List[_Pending] = []
        self._wakeup = asyncio.Event()
        self._workers = [asyncio.ensure_future(self._work()) for _ in range(max_concurrent)]

    async def submit(self, inputs: Tensors) -> Tensors:
        """Runs one request (arrays with a common first dimension) and returns its outputs."""
        rows = {value.shape[0] if value.ndim else -1 for value in inputs.values()}
        if len(rows) != 1 or -1 in rows:
            raise ValueError("batched inputs need one common first dimension")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(inputs, rows.pop(), future))
        self._wakeup.set()
        return await future

    def close(self) -> None:
        """Stops the workers; requests still queued fail with CancelledError."""
        for worker in self._workers:
            worker.cancel()
        for pending in self._queue:
            if not pending.future.done():
                pending.future.cancel()
        self._queue.clear()

    def _take_batch(self) -> List[_Pending]:
        first = self._queue[0]
        shapes = _trailing_shapes(first.inputs)
        batch, rows, rest = [first], first.rows, []
        for pending in self._queue[1:]:
            if rows + pending.rows <= self._max_rows and _trailing_shapes(pending.inputs) == shapes:
                batch.append(pending)
                rows += pending.rows
            else:
                rest.append(pending)
        self._queue = rest
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = [p for p in self._take_batch() if not p.future.done()]
            if not batch:
                continue
            single = len(batch) == 1   # runs on its own inputs, gets its outputs whole
            merged = batch[0].inputs if single else {
                name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}
            total = sum(p.rows for p in batch)
            if self._on_batch:
                self._on_batch(total)
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_fn, merged)
                for name, value in outputs.items():
                    if not single and (value.ndim == 0 or value.shape[0] != total):
                        raise RuntimeError(f"output {name!r} has shape {value.shape}, not a batch of {total}")
            except BaseException as err:  # every waiting request gets the error
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            start = 0
            for p in batch:
                part = outputs if single else {name: value[start:start + p.rows] for name, value in outputs.items()}
                start += p.rows
                if not p.future.done():
                    p.future.set_result(part)
