"""The versions of one model under a TF Serving model base path: which exist, which is served, loading and
warm-up, following TF Serving's default version policy.

- The served version is the newest (largest integer) directory under the base path that loads.
- The base path is polled; a new version is loaded only once its files stopped changing between two
  polls, then warmed up (the SavedModel's `assets.extra/tf_serving_warmup_requests`, TF Serving's format,
  or one call of each signature), and only then replaces the served one: the old one answers until the
  switch, and requests already running on it finish on it.
- A version that fails to load or warm up never replaces a working one. It is logged and shown in model
  status as `END` with its error; it is tried again only when its files change.
- When the served version's directory disappears (a rollback removes newer versions), the newest remaining
  version that loads is served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from serving.base_path import versions_on_disk
from serving.batching import Batcher
from serving.errors import ServingError, code_name, invalid_argument, not_found

log = logging.getLogger("cvrank.serving")

# TF Serving's warm-up requests inside a SavedModel (PredictionLog records).
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_MAX_WARMUP_RECORDS = 1000  # TF Serving's limit
# An unloaded version's batchers stop this long after the switch; requests queued on it finish first.
_DRAIN_SECONDS = 30.0


@dataclasses.dataclass
class TensorInfo:
    """A signature's input or output: TF dtype enum and shape (None for an unknown dimension)."""
    name: str
    dtype: int
    shape: Optional[Tuple[Optional[int], ...]]  # None: unknown rank

    @property
    def batched(self) -> bool:
        return self.shape is not None and len(self.shape) >= 1 and self.shape[0] is None


@dataclasses.dataclass
class Signature:
    name: str
    method_name: str
    inputs: Dict[str, TensorInfo]
    outputs: Dict[str, TensorInfo]
    function: Callable
    batcher: Optional[Batcher] = None

    @property
    def batchable(self) -> bool:
        return all(t.batched for t in self.inputs.values()) and all(t.batched for t in self.outputs.values())


def _tensor_info(name: str, proto) -> TensorInfo:
    if proto.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(None if d.size < 0 else int(d.size) for d in proto.tensor_shape.dim)
    return TensorInfo(name, int(proto.dtype), shape)


def read_signature_defs(export_dir: str):
    """The SignatureDefMap (tensorflow.serving proto) of the SavedModel in `export_dir`."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    tagged = [mg for mg in saved.meta_graphs if "serve" in mg.meta_info_def.tags]
    if not tagged:
        raise ValueError(f"{export_dir}/saved_model.pb has no MetaGraph tagged 'serve'")
    result = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in tagged[0].signature_def.items():
        result.signature_def[key].CopyFrom(sig)
    return result


class Servable:
    """One loaded version of a model: its signatures, callable from any thread, and batched calls."""

    def __init__(self, name: str, version: int, path: str):
        import tensorflow as tf

        self.name, self.version, self.path = name, version, path
        self.signature_defs = read_signature_defs(path)
        self._model = tf.saved_model.load(path)
        self.signatures: Dict[str, Signature] = {}
        for key, sig in self.signature_defs.signature_def.items():
            if key not in self._model.signatures:
                continue
            self.signatures[key] = Signature(
                key, sig.method_name,
                {k: _tensor_info(k, v) for k, v in sig.inputs.items()},
                {k: _tensor_info(k, v) for k, v in sig.outputs.items()},
                self._model.signatures[key])

    def signature(self, name: str) -> Signature:
        if name not in self.signatures:
            raise invalid_argument(f"Serving signature name: \"{name}\" not found in signature def")
        return self.signatures[name]

    def call(self, signature: str, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Runs `signature` on numpy inputs (blocking; any thread). Raises ServingError on bad inputs."""
        import tensorflow as tf

        sig = self.signature(signature)
        tensors = {}
        for key, info in sig.inputs.items():
            value = inputs[key]
            try:
                tensors[key] = tf.convert_to_tensor(value, dtype=tf.dtypes.as_dtype(info.dtype))
            except (TypeError, ValueError) as err:
                raise invalid_argument(f"input {key!r}: {err}") from None
        try:
            outputs = sig.function(**tensors)
        except tf.errors.OpError as err:
            raise ServingError(code_name(err.error_code), err.message) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def attach_batchers(self, executor: concurrent.futures.Executor, max_batch_size: int, max_concurrent: int,
                        on_batch: Optional[Callable[[str, int], None]] = None) -> None:
        """Gives every batchable signature a Batcher (call from the event loop)."""
        for sig in self.signatures.values():
            if sig.batchable:
                sig.batcher = Batcher(
                    lambda inputs, _name=sig.name: self.call(_name, inputs), executor,
                    max_batch_size=max_batch_size, max_concurrent=max_concurrent,
                    on_batch=(lambda rows, _name=sig.name: on_batch(_name, rows)) if on_batch else None)

    def close(self) -> None:
        for sig in self.signatures.values():
            if sig.batcher:
                sig.batcher.close()

    def warm_up(self) -> int:
        """Replays the SavedModel's TF Serving warm-up requests, or calls every signature once on a
        one-row default input. Returns the number of calls; raises on any failure."""
        import tensorflow as tf

        path = os.path.join(self.path, WARMUP_FILE)
        calls = 0
        if os.path.exists(path):
            from tensorflow_serving.apis import prediction_log_pb2

            for record in tf.data.TFRecordDataset(path).take(_MAX_WARMUP_RECORDS):
                entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
                if entry.WhichOneof("log_type") != "predict_log":
                    continue
                request = entry.predict_log.request
                inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                self.call(request.model_spec.signature_name or "serving_default", inputs)
                calls += 1
            return calls
        for sig in self.signatures.values():
            inputs = {}
            for key, info in sig.inputs.items():
                dtype = tf.dtypes.as_dtype(info.dtype)
                shape = [1 if d is None else d for d in (info.shape or (1,))]
                inputs[key] = np.full(shape, b"" if dtype == tf.string else 0, dtype=object if dtype == tf.string
                                      else dtype.as_numpy_dtype)
            self.call(sig.name, inputs)
            calls += 1
        return calls


@dataclasses.dataclass
class VersionStatus:
    """A version's entry in model status: TF Serving's state name and error."""
    state: str = "START"          # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""


def _fingerprint(path: str) -> Tuple:
    entries = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            entries.append((os.path.relpath(full, path), st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


class ModelManager:
    """Serves the newest loadable version of model `name` under `base_path` (module docstring)."""

    def __init__(self, name: str, base_path: str, *, poll_seconds: float = 1.0,
                 executor: concurrent.futures.Executor, max_batch_size: int = 128, batch_threads: int = 1,
                 on_batch: Optional[Callable[[str, int], None]] = None,
                 on_version: Optional[Callable[[Optional[int]], None]] = None,
                 on_load_failure: Optional[Callable[[int], None]] = None):
        self.name = name
        self.base_path = os.path.abspath(base_path)
        self.poll_seconds = poll_seconds
        self._executor = executor
        self._loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cvrank-loader")
        self._batching = (max_batch_size, batch_threads, on_batch)
        self._on_version = on_version
        self._on_load_failure = on_load_failure
        self.status: Dict[int, VersionStatus] = {}
        self.current: Optional[Servable] = None
        self._failed: Dict[int, Tuple] = {}     # version -> fingerprint that failed to load
        self._seen: Dict[int, Tuple] = {}       # version -> fingerprint at the previous poll
        self._task: Optional[asyncio.Task] = None

    # -- lookups for requests ------------------------------------------------------------------------
    def servable(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> Servable:
        """The servable for a request, or ServingError with TF Serving's message."""
        if name != self.name:
            what = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise not_found(f"Servable not found for request: {what}")
        if label is not None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        current = self.current
        if current is None:
            what = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise not_found(f"Servable not found for request: {what}")
        if version is not None and version != current.version:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return current

    def model_status(self, name: str, version: Optional[int] = None) -> List[Tuple[int, VersionStatus]]:
        """[(version, status)] newest first, as TF Serving's GetModelStatus reports them."""
        if name != self.name or not self.status:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in self.status:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, self.status[version])]
        return sorted(self.status.items(), reverse=True)

    # -- the poll loop -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Loads the newest loadable version now (if any), then keeps polling in the background."""
        await self.poll(settle=False)
        self._task = asyncio.ensure_future(self._poll_forever())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.current:
            self.current.close()
        self._loader.shutdown(wait=False)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll()
            except Exception:  # a poll must never stop the server
                log.exception("polling %s failed", self.base_path)

    async def poll(self, settle: bool = True) -> None:
        """One look at the base path: loads and switches to the version TF Serving's policy aspires to.
        With `settle`, a version is loaded only when its files did not change since the previous poll."""
        on_disk = versions_on_disk(self.base_path)
        prints = {v: _fingerprint(p) for v, p in on_disk.items()}
        seen, self._seen = self._seen, prints
        if self.current is not None and self.current.version not in on_disk:
            log.warning("%s: served version %d was removed from %s", self.name, self.current.version,
                        self.base_path)
        for version in sorted(on_disk, reverse=True):
            if self.current is not None and version == self.current.version:
                return  # the served version is the newest usable one
            if self._failed.get(version) == prints[version]:
                continue  # failed before, unchanged since
            if settle and seen.get(version) != prints[version]:
                return    # still being written (or just appeared): look again at the next poll
            if await self._load(version, on_disk[version], prints[version]):
                return

    async def _load(self, version: int, path: str, fingerprint: Tuple) -> bool:
        self.status[version] = VersionStatus("LOADING")
        log.info("%s: loading version %d from %s", self.name, version, path)
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            servable = await loop.run_in_executor(self._loader, Servable, self.name, version, path)
            calls = await loop.run_in_executor(self._loader, servable.warm_up)
        except Exception as err:  # any failure: keep the served version, show the error
            message = f"{type(err).__name__}: {err}".strip()
            self._failed[version] = fingerprint
            self.status[version] = VersionStatus("END", "UNKNOWN", message[:2000])
            kept = f"version {self.current.version} stays served" if self.current else "no version is served"
            log.error("%s: version %d at %s failed to load; %s. %s", self.name, version, path, kept, message)
            if self._on_load_failure:
                self._on_load_failure(version)
            return False
        max_batch, threads, on_batch = self._batching
        servable.attach_batchers(self._executor, max_batch, threads, on_batch)
        previous, self.current = self.current, servable
        self._failed.pop(version, None)
        self.status[version] = VersionStatus("AVAILABLE")
        if previous is not None:
            # Requests already holding `previous` finish on it; new ones get the new version.
            self.status[previous.version] = VersionStatus("END")
            asyncio.get_running_loop().call_later(_DRAIN_SECONDS, previous.close)
        log.info("%s: serving version %d (loaded and warmed up with %d requests in %.1f s)%s", self.name,
                 version, calls, time.monotonic() - start,
                 f", replacing version {previous.version}" if previous else "")
        if self._on_version:
            self._on_version(version)
        return True
