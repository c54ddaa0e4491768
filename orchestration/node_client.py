"""The client of the node server (orchestration/node_server.py): launches one TFX node through it.

Standard library only: Airflow tasks import this in the Airflow env, which has neither TFX nor TensorFlow
nor cvrank's config package.

    from orchestration import node_client
    try:
        node_client.run_node(socket_path, ir_path, node_id)        # output copied to sys.stdout/stderr
    except node_client.NodeServerUnavailable:
        ...  # nothing was launched: launch the node in a fresh TFX interpreter instead
    # NodeFailed: the node ran and failed (str(exc) is the executor's "ExceptionType: message")
    # NodeServerLost: the server went away while the node ran (it is gone too): fail the task, retry later

The protocol is described in node_server.py's docstring. Closing the connection stops the node, so a task
that is killed or times out takes its node with it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Optional, TextIO

DEFAULT_CONNECT_TIMEOUT = 5.0  # connecting and, for a ping, the answer


class NodeServerError(RuntimeError):
    """Base of the node client's errors."""


class NodeServerUnavailable(NodeServerError, ConnectionError):
    """No node server answers on the socket, or it refused the request: nothing was launched, so the
    caller may launch the node another way."""


class NodeServerLost(NodeServerError, ConnectionError):
    """The connection to the server dropped after the node was launched; the server (with its children)
    is gone or stopped, and the node's outcome is unknown (ML Metadata tells)."""


class NodeFailed(NodeServerError):
    """The node ran and failed. The message is the node's error ("ExceptionType: message"); `exit_code` is
    its process's exit code (negative: killed by that signal)."""

    def __init__(self, message: str, exit_code: int = 1, node_id: Optional[str] = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.node_id = node_id


def _connect(socket_path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, socket.timeout, NotADirectoryError) as exc:
        sock.close()
        raise NodeServerUnavailable(f"no node server on {socket_path}: {exc}") from None
    except OSError as exc:  # e.g. permission denied, a path too long
        sock.close()
        raise NodeServerUnavailable(f"cannot connect to the node server on {socket_path}: {exc}") from None
    return sock


def _messages(sock: socket.socket):
    """Yields each JSON message the server sends; returns at end of stream (a torn last line is dropped)."""
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


class _Std:
    """sys.stdout or sys.stderr as it is when run_node is called (a task runner may have replaced it)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"sys.{self.name}"

    def resolve(self) -> Optional[TextIO]:
        return getattr(sys, self.name)


STDOUT, STDERR = _Std("stdout"), _Std("stderr")


def _write(stream: Optional[TextIO], text: str) -> None:
    if stream is None:
        return
    stream.write(text)
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


def run_node(socket_path: str, ir_path: str, node_id: str, out: Optional[TextIO] = STDOUT,
             err: Optional[TextIO] = STDERR, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
    """Launches node `node_id` of the IR at `ir_path` (written by airflow_tasks.prepare) through the node
    server on `socket_path`, as airflow_tasks.run_node would in this process: the node's stdout and stderr
    (its Python logging included) are copied to `out` and `err` as they are written (default: sys.stdout
    and sys.stderr at the time of the call; None drops them). Returns when the node succeeded (executed or
    reused from cache).

    Raises NodeFailed (the node's error) when it failed, NodeServerUnavailable when nothing was launched
    (no server, or it refused), NodeServerLost when the connection dropped while the node ran."""
    out = out.resolve() if isinstance(out, _Std) else out
    err = err.resolve() if isinstance(err, _Std) else err
    sock = _connect(socket_path, connect_timeout)
    try:
        try:
            sock.sendall(json.dumps({"ir_path": ir_path, "node_id": node_id}).encode() + b"\n")
        except OSError as exc:
            raise NodeServerUnavailable(f"the node server on {socket_path} closed the connection: {exc}") from None
        sock.settimeout(None)  # a node runs as long as it runs; a dead server closes the socket
        started = None
        for message in _messages(sock):
            if "stdout" in message:
                _write(out, message["stdout"])
            elif "stderr" in message:
                _write(err, message["stderr"])
            elif "started" in message:
                started = message["started"]
            elif "exit" in message:
                code = message["exit"]
                if code != 0:
                    raise NodeFailed(message.get("error") or f"node {node_id} exited with code {code}", code, node_id)
                return
            elif "refused" in message:
                raise NodeServerUnavailable(f"the node server on {socket_path} refused to run {node_id}: "
                                            f"{message['refused']}")
        if started is None:  # e.g. a server restarting: nothing ran
            raise NodeServerUnavailable(f"the node server on {socket_path} closed the connection before "
                                        f"launching {node_id}")
        raise NodeServerLost(f"lost the node server on {socket_path} while {node_id} ran (pid {started})")
    finally:
        sock.close()


def launch(socket_path: Optional[str], tfx_python: str, project_root: str, ir_path: str, node_id: str) -> None:
    """What an Airflow node task does: launches the node through the node server on `socket_path` when one
    answers there, else in a new interpreter of `tfx_python` (seconds of TFX, TensorFlow and Beam imports).
    The node's output goes to this process's stdout and stderr. Raises NodeFailed (the node's error) when
    it failed, NodeServerLost when the server went away while it ran."""
    if socket_path:
        try:
            run_node(socket_path, ir_path, node_id)
            return
        except NodeServerUnavailable as err:
            _write(sys.stdout, f"cvrank: {err}; launching {node_id} in a new TFX interpreter\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from orchestration import airflow_tasks; "
            "airflow_tasks.run_node(sys.argv[2], sys.argv[3]); airflow_tasks.skip_interpreter_teardown()")
    launched = subprocess.run([tfx_python, "-c", code, project_root, ir_path, node_id], stderr=subprocess.PIPE,
                              text=True)
    _write(sys.stderr, launched.stderr)
    if launched.returncode != 0:  # the traceback's last line is the node's error
        lines = [line for line in launched.stderr.splitlines() if line.strip()]
        raise NodeFailed(lines[-1] if lines else f"node {node_id} exited with code {launched.returncode}",
                         launched.returncode, node_id)


def ping(socket_path: str, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> dict:
    """The server's status ({"pid", "uptime", "preloaded", "running", "requests", "stale"}); raises
    NodeServerUnavailable when no server answers within `timeout` seconds."""
    sock = _connect(socket_path, timeout)
    try:
        sock.sendall(b'{"ping": true}\n')
        for message in _messages(sock):
            if "pong" in message:
                return message["pong"]
    except (OSError, ValueError) as exc:
        raise NodeServerUnavailable(f"the node server on {socket_path} did not answer: {exc}") from None
    finally:
        sock.close()
    raise NodeServerUnavailable(f"the node server on {socket_path} did not answer")


def server_available(socket_path: str, timeout: float = 2.0) -> bool:
    """Whether a node server answers on `socket_path` (within `timeout` seconds)."""
    try:
        ping(socket_path, timeout)
    except NodeServerUnavailable:
        return False
    return True
