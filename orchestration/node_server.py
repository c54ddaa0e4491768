"""A fork server that launches TFX nodes for Airflow tasks without paying for the imports each time.

    python -m orchestration.node_server --socket PATH [--grace-seconds 10] [--watch FILE ...]

A node task in a fresh TFX-env interpreter spends about 5 s importing TensorFlow, Beam, TFT, TFMA and TFX's
launcher before it launches its node, which takes 0.2 s when ML Metadata reuses a cached execution. This
server imports all of that once (`PRELOAD`), then serves requests on a Unix socket (mode 600): for each one
it forks a child that runs `orchestration.airflow_tasks.run_node(ir_path, node_id)` exactly as the task
would, in its own process and process group, and streams the child's stdout, stderr and Python logging to
the client as they are written. `orchestration/node_client.py` is the client (standard library only).

Protocol: one JSON object per line (UTF-8) each way. The client sends one request and keeps its end open
until the final message (closing it means "stop the node": its process group gets SIGTERM, then SIGKILL
after `--grace-seconds`):
    -> {"ir_path": "/abs/pipeline.pb", "node_id": "Transform"}     or {"ping": true}
    <- {"started": <child pid>}                   the node was launched; a connection that ends before this
                                                  launched nothing (the client may launch the node itself)
    <- {"stdout": "text"} / {"stderr": "text"}    output as it comes (Python logging goes to stderr)
    <- {"exit": 0, "error": null, "seconds": 1.23}  last: the child's exit code (negative: killed by that
                                                  signal) and "ExceptionType: message" when it failed
    <- {"refused": "reason"}                      instead of "started": bad request, or the server stops
    <- {"pong": {"pid", "uptime", "preloaded", "running", "requests", "stale"}}   the answer to a ping

Fork safety: everything runs on one thread (a selector loop: accepting, reading requests, forking, copying
output, reaping, timeouts); no Python thread exists when the server forks. After the imports the process
still has three native threads (OpenBLAS's pool, jemalloc's background thread, one of TensorFlow's), idle,
whose libraries handle fork themselves; no TensorFlow runtime, gRPC channel, Beam pipeline or ML Metadata
connection exists in the server, so each child creates its own (Beam's multi-processing DirectRunner then
starts its worker processes from the child, as from any process). Signals are blocked across fork until
the child has reset their handlers to the defaults; the child starts a new process group, gets the
server's death as SIGKILL, reseeds NumPy's global random state (`random` reseeds itself at fork), drops
the server's atexit handlers and file descriptors, sets sys.argv to its own name, and logs (root logger,
INFO) to its stderr. The objects the imports made are frozen out of the garbage collector (`gc.freeze`),
so children share those pages rather than copying them.

Stale code: a long-lived server holds the project modules it imported, while each DAG run's IR carries the
hash of the sources on disk (pipeline/pipeline.py `track_sources`), so running the imported code would
record old code's outputs under the new code's cache key. The server therefore notes the project source
files it imported (and `--watch` files); when one has changed, a request runs in a fresh interpreter
(exec, as a task would without the server), and the server restarts itself (exec: same pid, same socket
path; connections still waiting to send a request are closed, which their clients see as no server) as
soon as no node runs.

`<socket>.lock` (flock) is held for the server's life: a second server on the same path is refused before
it imports anything, as is a path where another live server answers; a stale socket file is removed.
One line per request goes to the server's stderr: request number, client pid, node, IR, exit code, seconds,
forked or fresh interpreter, and how many modules the node imported beyond the preloaded ones (`--verbose`
names them). SIGTERM or SIGINT stops the server: no new connections, running nodes get SIGTERM (SIGKILL
after the grace period), their clients get a final message, and the socket file is removed.
"""

from __future__ import annotations

import argparse
import atexit
import codecs
import ctypes
import fcntl
import gc
import json
import logging
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
import traceback
import warnings
from typing import Callable, Dict, List, Optional, Tuple

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What launching any node of cvrank's pipelines imports (`--verbose` lists what a node imports beyond
# these, so the list can be checked): TFX's launcher and local runner utilities,
# the libraries, the parts of Beam a DirectRunner pipeline loads when it starts, and cvrank's components
# (their executors) through the pipeline definitions.
PRELOAD = (
    "tensorflow",
    "tensorflow.python.data.ops.flat_map_op",
    "tensorboard.summary",  # tf.summary's implementation (GloveTrainer)
    "tf_keras.src.engine.base_layer_v1",
    "apache_beam",
    "apache_beam.runners.portability.portable_runner",
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.portability.fn_api_runner.fn_runner",
    "apache_beam.runners.portability.prism_runner",
    "apache_beam.typehints.opcodes",
    "apache_beam.typehints.intrinsic_one_ops",
    "apache_beam.runners.worker.sdk_worker_main",
    "apache_beam.runners.worker.worker_pool_main",
    "apache_beam.testing.test_stream",
    "grpc._server",
    "grpc._utilities",
    "setuptools",
    "pyarrow.pandas_compat",
    "pyarrow.vendored.version",
    "pandas.core.methods.to_dict",
    "beartype.door._cls.util.doorclsmap",
    "beartype._util.hint.utilhintget",
    "beartype._util.hint.pep.proposal.pep560",
    "ml_metadata",
    "tensorflow_data_validation",
    "tensorflow_transform",
    "tensorflow_transform.beam",
    "tensorflow_model_analysis",
    "tfx.orchestration.portable.launcher",
    "tfx.orchestration.local.runner_utils",
    "tfx.orchestration.metadata",
    "tfx.v1",
    "metadata.mlmd",
    "orchestration.airflow_tasks",
    "orchestration.runner",
    "orchestration.recovery",
    "orchestration.workspace_lock",
    "pipeline.pipeline",
    "pipeline.smoke",
    "pipeline.baseline",
    "components.file_check.executor",
    "components.example_gen.executor",
    "components.data_check.executor",
    "components.cooccurrence.executor",
    "components.glove_trainer.executor",
    "components.evaluator.executor",
    "components.pusher.executor",
    "transform.preprocessing",
)

MAX_REQUEST_BYTES = 64 * 1024
REQUEST_TIMEOUT_SECONDS = 30.0  # a connection that sends no complete request in this time is closed
DRAIN_SECONDS = 2.0  # after the child exits, how long its output pipes may stay open (grandchildren)
FLUSH_SECONDS = 10.0  # on stop, how long final messages may take to reach slow clients
OUTPUT_HIGH_WATER = 1 << 20  # bytes queued for a client before the child's pipes stop being read
STALE_CHECK_SECONDS = 2.0  # how often an idle server looks for changed sources
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as a local run's log (console.py)
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("cvrank.node_server")


class AlreadyServing(RuntimeError):
    """Another live node server answers on the socket path (or is starting on it)."""


# -- the child ------------------------------------------------------------------------------------------


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _reset_process_state() -> None:
    """In a fresh child: default signal handling as in a new interpreter, dies with the server."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # what Python sets at start-up
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _configure_child_output() -> None:
    """fds 1 and 2 are the pipes to the server: line-buffered text streams over them, and Python logging
    (root at INFO, as a local run logs) to stderr."""
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
    log.propagate = True


def _run(ir_path: str, node_id: str, result_fd: int) -> int:
    """Runs the node as the task does, writes {"exit", "error", "modules"} to `result_fd`, returns the code."""
    modules_before = len(sys.modules)
    code, error = 0, None
    try:
        from orchestration import airflow_tasks

        airflow_tasks.run_node(ir_path, node_id)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        error = None if code == 0 else f"SystemExit: {exc.code}"
    except BaseException as exc:  # noqa: BLE001 - the node's failure, whatever it is, is the answer
        traceback.print_exc()
        code, error = 1, f"{type(exc).__name__}: {exc}"
    try:
        atexit._run_exitfuncs()  # the handlers the node registered (the server's were dropped at fork)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    new_modules = sorted(set(sys.modules) - _MODULES_AT_FORK) if _MODULES_AT_FORK else []
    result = {"exit": code, "error": error, "modules": len(sys.modules) - modules_before, "new_modules": new_modules}
    data = json.dumps(result).encode()
    while data:
        data = data[os.write(result_fd, data):]
    return code


_MODULES_AT_FORK: frozenset = frozenset()  # with --verbose: the server's modules, to list what a node adds
_LIST_IMPORTS = False


def _child(ir_path: str, node_id: str, out_fd: int, err_fd: int, result_fd: int, close_server: Callable[[], None],
           fresh_interpreter: bool, server_pid: int) -> None:
    """The forked child. Never returns: whatever happens, it ends with os._exit."""
    code = 70  # EX_SOFTWARE: the child failed before it could run the node
    try:
        os.setpgid(0, 0)
        _reset_process_state()
        if os.getppid() != server_pid:  # the server died before the death signal was set
            return
        close_server()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        if fresh_interpreter:
            os.set_inheritable(result_fd, True)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, env.get("PYTHONPATH")) if p)
            os.execve(sys.executable, [sys.executable, "-m", "orchestration.node_server", "--run-one",
                                       "--ir-path", ir_path, "--node-id", node_id, "--result-fd", str(result_fd)],
                      env)
        atexit._clear()  # the server's handlers are not the node's
        sys.argv = [sys.argv[0]]  # the server's flags are not the node's (Beam reads sys.argv by default)
        _configure_child_output()
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()  # the global RandomState was copied from the server; `random` reseeds itself
        code = _run(ir_path, node_id, result_fd)
    except BaseException:  # noqa: BLE001
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def run_one(ir_path: str, node_id: str, result_fd: int) -> int:
    """`--run-one`: the fresh interpreter a stale server execs for one request (fds 1, 2 are its pipes)."""
    _configure_child_output()
    return _run(ir_path, node_id, result_fd)


# -- the server -----------------------------------------------------------------------------------------


def preload(modules) -> Tuple[int, float, List[str]]:
    """Imports `modules`; returns (modules now loaded, seconds, failures). A module that fails to import is
    left out (a child imports it, or fails on it, by itself)."""
    start = time.monotonic()
    failures = []
    for name in modules:
        try:
            __import__(name)
        except Exception as exc:  # noqa: BLE001 - e.g. a project file mid-edit: the child will say
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    return len(sys.modules), time.monotonic() - start, failures


def project_sources() -> List[str]:
    """The project's source files among the loaded modules (what a child would run without re-reading),
    but this one: the server's own code does not change what a node computes."""
    root = os.path.realpath(PROJECT_ROOT) + os.sep
    this = os.path.realpath(__file__)
    paths = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            path = os.path.realpath(path)
            if path.startswith(root) and path != this and not path.startswith(os.path.join(root, "tests") + os.sep):
                paths.add(path)
    return sorted(paths)


def _fingerprint(path: str) -> Optional[Tuple[int, int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class _Connection:
    """One client: its request, its child (pid = process group), the child's pipes, output to send."""

    def __init__(self, server: "NodeServer", sock: socket.socket, number: int):
        self.server = server
        self.sock = sock
        self.number = number
        self.client_pid = _peer_pid(sock)
        self.accepted = time.monotonic()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.state = "request"  # request -> running -> draining -> done (-> closed)
        self.ir_path = self.node_id = None
        self.pid: Optional[int] = None
        self.started = 0.0
        self.pipes: Dict[int, str] = {}  # read fd -> "stdout" / "stderr" / "result"
        self.paused = False
        self.decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")}
        self.result = bytearray()
        self.status: Optional[int] = None  # waitpid status once reaped
        self.client_gone = False
        self.kill_deadline: Optional[float] = None  # SIGKILL the group then, if the child still runs
        self.drain_deadline: Optional[float] = None
        self.stop_reason: Optional[str] = None  # why the server killed the node (stopping)
        self.close_after_flush = False
        self.fresh_interpreter = False

    # -- socket side
    def on_socket(self, events: int) -> None:
        if self.sock is None:  # closed by an earlier event of the same batch
            return
        if events & selectors.EVENT_READ:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except BlockingIOError:
                data = None
            if data == b"":
                self.lost_client()
                return
            if data and self.state == "request":
                self.inbuf += data
                if b"\n" in self.inbuf:
                    line = bytes(self.inbuf.split(b"\n", 1)[0])
                    self.inbuf.clear()
                    self.server.handle_request(self, line)
                elif len(self.inbuf) > MAX_REQUEST_BYTES:
                    self.refuse("request too long")
            # Anything the client sends after its request is ignored.
        if events & selectors.EVENT_WRITE and self.sock is not None:
            self.flush()

    def send(self, message: dict) -> None:
        if self.client_gone or self.sock is None:
            return
        self.outbuf += json.dumps(message).encode("ascii") + b"\n"
        self.flush()

    def flush(self) -> None:
        if self.sock is None:
            return
        while self.outbuf and not self.client_gone:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except (BrokenPipeError, ConnectionResetError):
                self.lost_client()
                return
            del self.outbuf[:sent]
        self.server.update_socket_events(self)
        if self.paused and len(self.outbuf) < OUTPUT_HIGH_WATER // 2:
            self.server.resume_output(self)
        if not self.outbuf and self.close_after_flush:
            self.server.close_connection(self)

    def refuse(self, reason: str) -> None:
        self.send({"refused": reason})
        self.state = "done"
        self.close_after_flush = True
        self.flush()

    def lost_client(self) -> None:
        """The client closed its end (the task was killed or timed out): the node must stop."""
        if self.client_gone:
            return
        self.client_gone = True
        self.outbuf.clear()
        self.server.resume_output(self)  # its output is now read and dropped
        if self.state == "running":
            log.info("request %d: client (pid %s) gone while %s ran: SIGTERM to its process group %d",
                     self.number, self.client_pid, self.node_id, self.pid)
            self.server.terminate(self)
        self.server.close_connection(self)

    # -- child side
    def on_pipe(self, fd: int) -> None:
        if fd not in self.pipes:  # closed by an earlier event of the same batch
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        kind = self.pipes[fd]
        if not data:
            self.server.close_pipe(self, fd)
            if kind in self.decoders:
                self.emit(kind, self.decoders[kind].decode(b"", final=True))
            self.server.maybe_finish(self)
            return
        if kind == "result":
            self.result += data
        else:
            self.emit(kind, self.decoders[kind].decode(data))

    def emit(self, stream: str, text: str) -> None:
        if text and not self.client_gone:
            self.send({stream: text})
            if len(self.outbuf) > OUTPUT_HIGH_WATER:
                self.server.pause_output(self)


def _peer_pid(sock: socket.socket) -> Optional[int]:
    try:
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return pid
    except OSError:
        return None


class NodeServer:
    def __init__(self, socket_path: str, grace_seconds: float = 10.0, watch: Tuple[str, ...] = ()):
        self.socket_path = os.path.abspath(socket_path)
        self.grace_seconds = grace_seconds
        self.watch = tuple(os.path.abspath(p) for p in watch)
        self.selector = selectors.DefaultSelector()
        self.listener: Optional[socket.socket] = None
        self.socket_inode: Optional[int] = None
        self.lock_fd: Optional[int] = None
        self.wakeup: Tuple[int, int] = (-1, -1)
        self.connections: Dict[int, _Connection] = {}  # by id()
        self.requests = 0
        self.stopping = False
        self.stop_deadline: Optional[float] = None
        self.signals: List[int] = []
        self.sources: Dict[str, Optional[Tuple[int, int, int]]] = {}
        self.stale: List[str] = []
        self.last_stale_check = 0.0
        self.preload_started = time.time()
        self.sources_noted = self.preload_started
        self.started = time.monotonic()
        self.preloaded = 0

    # -- start
    def claim_socket(self) -> None:
        """Takes `<socket>.lock` for the server's life and removes a stale socket file; refuses when another
        live server answers (or is starting) on the path."""
        directory = os.path.dirname(self.socket_path)
        os.makedirs(directory, exist_ok=True)
        if len(os.fsencode(self.socket_path)) > 107:
            raise ValueError(f"socket path {self.socket_path} is longer than a Unix socket address allows (107 bytes)")
        self.lock_fd = os.open(self.socket_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.lock_fd)
            self.lock_fd = None
            raise AlreadyServing(f"another node server holds {self.socket_path}.lock (running or starting)")
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ValueError(f"{self.socket_path} exists and is not a socket: not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(self.socket_path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.socket_path)  # stale: its server is gone
            log.info("removed the stale socket %s", self.socket_path)
            return
        except OSError:
            pass
        finally:
            probe.close()
        raise AlreadyServing(f"another node server answers on {self.socket_path}")

    def listen(self) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self.listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        self.socket_inode = os.stat(self.socket_path).st_ino
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, (None, self._accept))
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (read_fd, write_fd)
        self.selector.register(read_fd, selectors.EVENT_READ, (None, self._on_wakeup))
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, self._on_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def note_sources(self) -> None:
        """Notes the project's loaded source files (and --watch files) as they are now."""
        self.sources = {path: _fingerprint(path) for path in (*project_sources(), *self.watch)}
        self.sources_noted = time.time()

    def stale_sources(self) -> List[str]:
        """Noted files changed since, or changed while the server imported them (modified between the start
        of the imports and the note: the imported code may be older than the noted file). A modification
        time in the future does not count as the latter, so a skewed clock cannot make a restart loop."""
        changed = []
        during = (int(self.preload_started * 1e9), int(self.sources_noted * 1e9))
        for path, before in self.sources.items():
            now = _fingerprint(path)
            if now != before or (now is not None and during[0] < now[0] <= during[1]):
                changed.append(path)
        return changed

    # -- the loop
    def _on_signal(self, number, frame) -> None:
        self.signals.append(number)

    def _on_wakeup(self, fd: int, events: int) -> None:
        try:
            while os.read(self.wakeup[0], 4096):
                pass
        except BlockingIOError:
            pass

    def serve_forever(self) -> None:
        log.info("ready on %s (pid %d, %d modules preloaded)", self.socket_path, os.getpid(), self.preloaded)
        while True:
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            self._check_deadlines(now)
            if self.stopping and not self.connections:
                break
            if not self.stopping and not self._busy() and now - self.last_stale_check >= STALE_CHECK_SECONDS:
                self.last_stale_check = now
                self.stale = self.stale_sources()
            if self.stale and not self.stopping and not self._busy():
                self._restart()
            for key, events in self.selector.select(self._timeout(now)):
                conn, handler = key.data
                try:
                    handler(key.fd, events)
                except Exception:  # noqa: BLE001 - a bug with one client must not end the others' nodes
                    log.exception("internal error%s", f" on request {conn.number}" if conn else "")
                    if conn is not None:
                        self._abort(conn)
        self._cleanup()

    def _busy(self) -> bool:
        """Whether a node runs, or a client still gets its node's output (a restart waits until neither)."""
        return any(c.state != "request" for c in self.connections.values())

    def _timeout(self, now: float) -> float:
        deadlines = [now + STALE_CHECK_SECONDS]
        for conn in self.connections.values():
            if conn.state == "request":
                deadlines.append(conn.accepted + REQUEST_TIMEOUT_SECONDS)
            for deadline in (conn.kill_deadline, conn.drain_deadline):
                if deadline is not None:
                    deadlines.append(deadline)
        if self.stop_deadline is not None:
            deadlines.append(self.stop_deadline)
        return max(0.0, min(deadlines) - now)

    def _handle_signals(self) -> None:
        while self.signals:
            number = self.signals.pop(0)
            if number in (signal.SIGTERM, signal.SIGINT):
                if self.stopping:  # a second one: no more grace
                    for conn in self.connections.values():
                        if conn.state == "running":
                            self._kill(conn, signal.SIGKILL)
                else:
                    self.stop(f"node server stopped ({_signal_name(number)})")

    def _accept(self, fd: int, events: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: leave it in the backlog for now
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            self.requests += 1
            conn = _Connection(self, sock, self.requests)
            self.connections[id(conn)] = conn
            self.selector.register(sock, selectors.EVENT_READ, (conn, lambda fd, events, c=conn: c.on_socket(events)))

    def handle_request(self, conn: _Connection, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError as exc:
            conn.refuse(f"bad request: not JSON ({exc})")
            return
        if not isinstance(request, dict):
            conn.refuse("bad request: not a JSON object")
            return
        if request.get("ping"):
            conn.send({"pong": {"pid": os.getpid(), "uptime": round(time.monotonic() - self.started, 3),
                                "preloaded": self.preloaded, "running": sum(c.state == "running" for c in
                                                                             self.connections.values()),
                                "requests": self.requests, "stale": self.stale}})
            conn.state = "done"
            conn.close_after_flush = True
            conn.flush()
            return
        ir_path, node_id = request.get("ir_path"), request.get("node_id")
        if not (isinstance(ir_path, str) and ir_path and isinstance(node_id, str) and node_id):
            conn.refuse('bad request: needs "ir_path" and "node_id" (non-empty strings)')
            return
        if self.stopping:
            conn.refuse("node server is stopping")
            return
        conn.ir_path, conn.node_id = ir_path, node_id
        self.stale = self.stale_sources()
        self.last_stale_check = time.monotonic()
        conn.fresh_interpreter = bool(self.stale)
        if self.stale:
            log.info("request %d: project sources changed since the server started (%s): %s runs in a fresh "
                     "interpreter; the server restarts once no node runs", conn.number,
                     ", ".join(os.path.relpath(p, PROJECT_ROOT) for p in self.stale[:3]), node_id)
        try:
            self._spawn(conn)
        except OSError as exc:  # no pipes or no process (EMFILE, EAGAIN): nothing ran
            log.warning("request %d: cannot start a process for %s: %s", conn.number, node_id, exc)
            conn.refuse(f"node server cannot start a process: {exc}")

    def _spawn(self, conn: _Connection) -> None:
        global _MODULES_AT_FORK
        fds: List[int] = []
        try:
            for _ in range(3):
                fds.extend(os.pipe())
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        out_r, out_w, err_r, err_w, res_r, res_w = fds
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        if _LIST_IMPORTS:
            _MODULES_AT_FORK = frozenset(sys.modules)
        conn.started = time.monotonic()
        server_pid = os.getpid()
        # Signals stay blocked across fork until the child has reset their handlers: a SIGTERM for the node
        # must not run the server's handler in the child.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        pid = -1  # until fork returns: a failed fork restores the mask too
        try:
            with warnings.catch_warnings():
                # Python warns because the process has threads; they are native and idle (module docstring).
                warnings.filterwarnings("ignore", message=".*multi-threaded, use of fork", category=DeprecationWarning)
                pid = os.fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if pid == 0:
            _child(conn.ir_path, conn.node_id, out_w, err_w, res_w, lambda: self._close_in_child((out_r, err_r, res_r)),
                   conn.fresh_interpreter, server_pid)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first, killpg works at once
        except OSError:
            pass
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        conn.pid = pid
        conn.state = "running"
        for fd, kind in ((out_r, "stdout"), (err_r, "stderr"), (res_r, "result")):
            os.set_blocking(fd, False)
            conn.pipes[fd] = kind
            self.selector.register(fd, selectors.EVENT_READ, (conn, lambda fd, events, c=conn: c.on_pipe(fd)))
        conn.send({"started": pid})

    def _close_in_child(self, read_ends) -> None:
        """In a child: close what belongs to the server (the child keeps only its own pipes' write ends)."""
        for conn in list(self.connections.values()):
            if conn.sock is not None:
                conn.sock.close()  # close(), never shutdown(): the server's connection stays up
            for fd in conn.pipes:
                os.close(fd)
        if self.listener is not None:
            self.listener.close()
        for fd in self.wakeup:
            if fd >= 0:
                os.close(fd)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
        self.selector.close()
        for fd in read_ends:
            os.close(fd)

    def pause_output(self, conn: _Connection) -> None:
        if not conn.paused:
            conn.paused = True
            for fd, kind in conn.pipes.items():
                if kind != "result":
                    self.selector.unregister(fd)

    def resume_output(self, conn: _Connection) -> None:
        if conn.paused:
            conn.paused = False
            for fd, kind in conn.pipes.items():
                if kind != "result":
                    self.selector.register(fd, selectors.EVENT_READ, (conn, lambda fd, events, c=conn: c.on_pipe(fd)))

    def update_socket_events(self, conn: _Connection) -> None:
        if conn.sock is None or conn.sock.fileno() < 0:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        key = self.selector.get_key(conn.sock)
        if key.events != events:
            self.selector.modify(conn.sock, events, key.data)

    def close_pipe(self, conn: _Connection, fd: int) -> None:
        if fd in conn.pipes:
            if not (conn.paused and conn.pipes[fd] != "result"):
                self.selector.unregister(fd)
            os.close(fd)
            del conn.pipes[fd]

    def close_connection(self, conn: _Connection) -> None:
        if conn.sock is not None:
            self.selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        if conn.state not in ("running", "draining"):
            for fd in list(conn.pipes):
                self.close_pipe(conn, fd)
            self.connections.pop(id(conn), None)

    def _abort(self, conn: _Connection) -> None:
        """After an internal error with `conn`: its node is killed and reaped, its client disconnected."""
        if conn.state == "running":
            self._kill(conn, signal.SIGKILL)
            try:
                os.waitpid(conn.pid, 0)
            except ChildProcessError:
                pass
        conn.state = "done"
        conn.client_gone = True
        for fd in list(conn.pipes):
            try:
                self.close_pipe(conn, fd)
            except (KeyError, ValueError, OSError):
                conn.pipes.pop(fd, None)
        try:
            self.close_connection(conn)
        except (KeyError, ValueError, OSError):
            pass
        self.connections.pop(id(conn), None)

    def terminate(self, conn: _Connection) -> None:
        """SIGTERM to the node's process group; SIGKILL after the grace period."""
        if conn.kill_deadline is None:
            self._kill(conn, signal.SIGTERM)
            conn.kill_deadline = time.monotonic() + self.grace_seconds

    def _kill(self, conn: _Connection, sig: int) -> None:
        try:
            os.killpg(conn.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        for conn in list(self.connections.values()):
            if conn.state != "running":
                continue
            try:
                pid, status = os.waitpid(conn.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = conn.pid, 255 << 8
            if pid == 0:
                continue
            conn.status = status
            conn.state = "draining"
            conn.drain_deadline = time.monotonic() + DRAIN_SECONDS
            self.maybe_finish(conn)

    def maybe_finish(self, conn: _Connection) -> None:
        """Once the child is reaped and its pipes are closed (or the drain time is over), the final message."""
        if conn.state != "draining":
            return
        if conn.pipes and (conn.paused or time.monotonic() < conn.drain_deadline):
            return
        if conn.pipes:  # something the node started still holds its output (so the group exists): it goes
            log.info("request %d: processes of %s still hold its output %.0f s after it ended: SIGKILL to its "
                     "process group", conn.number, conn.node_id, DRAIN_SECONDS)
            self._kill(conn, signal.SIGKILL)
            for fd in list(conn.pipes):
                if conn.pipes[fd] == "result":
                    try:
                        conn.result += os.read(fd, 65536)
                    except OSError:
                        pass
                self.close_pipe(conn, fd)
        seconds = time.monotonic() - conn.started
        code, error = self._outcome(conn)
        conn.state = "done"
        extra = ""
        try:
            result = json.loads(conn.result) if conn.result else {}
            extra = f", {result.get('modules', 0)} modules imported" if result else ""
            if result.get("new_modules"):
                extra += ": " + " ".join(result["new_modules"])
        except (ValueError, AttributeError):
            pass
        how = "fresh interpreter" if conn.fresh_interpreter else "forked"
        gone = ", client gone" if conn.client_gone else ""
        # Logged before the client hears of it: whoever reads the log after the node returned finds its line.
        log.info("request %d (client pid %s): node %s of %s: exit %d in %.2f s (%s pid %d%s%s)%s",
                 conn.number, conn.client_pid, conn.node_id, conn.ir_path, code, seconds, how, conn.pid, gone,
                 extra, f": {error}" if error else "")
        for name, decoder in conn.decoders.items():
            conn.emit(name, decoder.decode(b"", final=True))
        conn.send({"exit": code, "error": error, "seconds": round(seconds, 3)})
        if conn.client_gone or conn.sock is None:
            self.close_connection(conn)
        else:
            conn.close_after_flush = True
            conn.flush()

    def _outcome(self, conn: _Connection) -> Tuple[int, Optional[str]]:
        status = conn.status
        try:
            result = json.loads(conn.result) if conn.result else None
        except ValueError:
            result = None
        if os.WIFSIGNALED(status):
            code = -os.WTERMSIG(status)
            error = f"node process killed by {_signal_name(-code)}"
        else:
            code = os.WEXITSTATUS(status)
            if result is not None:
                error = result.get("error") if code else None
            else:
                error = f"node process exited with code {code} without a result" if code else None
        if conn.stop_reason and code:
            error = f"{conn.stop_reason}: {error}"
        return code, error

    def _check_deadlines(self, now: float) -> None:
        for conn in list(self.connections.values()):
            if conn.state == "request" and now - conn.accepted > REQUEST_TIMEOUT_SECONDS:
                conn.refuse("no request within %d s" % REQUEST_TIMEOUT_SECONDS)
            if conn.state == "running" and conn.kill_deadline is not None and now >= conn.kill_deadline:
                log.info("request %d: %s still runs %.0f s after SIGTERM: SIGKILL", conn.number, conn.node_id,
                         self.grace_seconds)
                self._kill(conn, signal.SIGKILL)
                conn.kill_deadline = None
            if conn.state == "draining":
                if conn.paused:  # the client reads slowly: the drain time starts when it catches up
                    conn.drain_deadline = now + DRAIN_SECONDS
                elif now >= conn.drain_deadline:
                    self.maybe_finish(conn)
        if self.stop_deadline is not None and now >= self.stop_deadline:
            for conn in list(self.connections.values()):
                if conn.state == "done":
                    conn.client_gone = True
                    self.close_connection(conn)

    # -- stop and restart
    def _release_socket(self) -> None:
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None
            try:
                if os.stat(self.socket_path).st_ino == self.socket_inode:
                    os.unlink(self.socket_path)
            except FileNotFoundError:
                pass

    def stop(self, reason: str) -> None:
        """Stops accepting, then SIGTERM to every running node (SIGKILL after the grace period)."""
        log.info("%s: stopping (%d nodes running)", reason, sum(c.state == "running" for c in self.connections.values()))
        self.stopping = True
        self._release_socket()
        for conn in list(self.connections.values()):
            if conn.state == "request":
                conn.refuse("node server is stopping")
            elif conn.state == "running":
                conn.stop_reason = reason
                self.terminate(conn)
        self.stop_deadline = time.monotonic() + self.grace_seconds + DRAIN_SECONDS + FLUSH_SECONDS

    def _cleanup(self) -> None:
        self._release_socket()
        signal.set_wakeup_fd(-1)
        for fd in self.wakeup:
            if fd >= 0:
                os.close(fd)
        self.wakeup = (-1, -1)
        self.selector.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    def _restart(self) -> None:
        log.info("project sources changed (%s): restarting to import them again",
                 ", ".join(os.path.relpath(p, PROJECT_ROOT) for p in self.stale[:3]))
        for conn in list(self.connections.values()):  # waiting for a request, or flushing a final message
            conn.flush()
            conn.client_gone = True
            self.close_connection(conn)
        self._cleanup()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        try:
            os.execve(sys.executable, list(sys.orig_argv), env)
        except OSError as exc:
            log.error("cannot restart (%s %s): %s; stopping", sys.executable, " ".join(sys.orig_argv[1:]), exc)
            os._exit(1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.node_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", help="the Unix socket to listen on (created mode 600)")
    parser.add_argument("--grace-seconds", type=float, default=10.0,
                        help="after SIGTERM, how long a node may take to end before SIGKILL (default 10)")
    parser.add_argument("--watch", action="append", default=[], metavar="FILE",
                        help="another file whose change restarts the server, as a changed project source does")
    parser.add_argument("--verbose", action="store_true",
                        help="log the modules each node imported beyond the preloaded ones")
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ir-path", help=argparse.SUPPRESS)
    parser.add_argument("--node-id", help=argparse.SUPPRESS)
    parser.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        if PROJECT_ROOT not in sys.path:
            sys.path.insert(0, PROJECT_ROOT)
        return run_one(args.ir_path, args.node_id, args.result_fd)
    if not args.socket:
        parser.error("--socket is required")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s node_server: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    if args.verbose:
        global _LIST_IMPORTS
        _LIST_IMPORTS = True
    if PROJECT_ROOT not in sys.path:
        sys.path.insert(0, PROJECT_ROOT)

    server = NodeServer(args.socket, grace_seconds=args.grace_seconds, watch=tuple(args.watch))
    try:
        server.claim_socket()  # before the imports: a second server is refused at once
    except (AlreadyServing, ValueError) as exc:
        print(f"node_server: {exc}", file=sys.stderr)
        return 1
    modules, seconds, failures = preload(PRELOAD)
    for failure in failures:
        log.warning("preload: %s", failure)
    server.preloaded = modules
    server.note_sources()
    # What the imports made stays where it is: a child's garbage collections then leave those pages shared.
    gc.collect()
    gc.freeze()
    log.info("preloaded %d modules in %.1f s", modules, seconds)
    server.listen()
    server.serve_forever()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    code = main()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)  # the interpreter's teardown of TensorFlow and Beam takes seconds and keeps nothing
