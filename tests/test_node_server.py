"""The node server (orchestration/node_server.py) and its client (orchestration/node_client.py), with real
processes: nodes of the smoke pipeline launched through the server complete and are recorded in ML Metadata,
come back CACHED in the next run, a failing node reports its executor's error while the server keeps serving,
a killed client takes its node with it, and so on. Each test starts its own server and stops it."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from config import PROJECT_ROOT, PipelineConfig
from metadata import mlmd
from orchestration import airflow_tasks, node_client
from pipeline.smoke import smoke_metadata_path, smoke_nodes
from tests.test_smoke_pipeline import _write_rows
from pipeline.beam import IN_PROCESS

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PROJECT_ROOT, os.environ.get("PYTHONPATH")) if p)}
_CLIENT = "import sys\nfrom orchestration import node_client\nnode_client.run_node(*sys.argv[1:4])\n"
_ONE_WORKER = list(IN_PROCESS)


class Server:
    """`python -m orchestration.node_server` on `<directory>/ns.sock`, its stderr in `server.log`."""

    def __init__(self, directory, *args):
        self.socket = str(directory / "ns.sock")
        self.log_path = directory / "server.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "orchestration.node_server", "--socket", self.socket,
                                         "--grace-seconds", "5", *args],
                                        stdout=self._log, stderr=self._log, env=_ENV, cwd=PROJECT_ROOT)
        self.wait_ready()

    def wait_ready(self, timeout=120.0):
        deadline = time.monotonic() + timeout
        while not node_client.server_available(self.socket):
            assert self.process.poll() is None, f"the server exited ({self.process.returncode}):\n{self.log()}"
            assert time.monotonic() < deadline, f"the server is not ready after {timeout} s:\n{self.log()}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def server(tmp_path):
    started = Server(tmp_path)
    try:
        yield started
    finally:
        assert started.stop() == 0, started.log()
    assert not os.path.exists(started.socket)


def _prepare(tmp_path, run: str, data="data", workspace="ws", beam=_ONE_WORKER) -> str:
    conf = {"data_dir": str(tmp_path / data), "workspace": str(tmp_path / workspace), "beam_pipeline_args": beam}
    os.makedirs(tmp_path / workspace / "metadata", exist_ok=True)
    return airflow_tasks.prepare("smoke", json.dumps(conf), run)


def _run_id(ir_path: str) -> str:
    from tfx.proto.orchestration import pipeline_pb2

    bound = pipeline_pb2.Pipeline()
    with open(ir_path, "rb") as f:
        bound.ParseFromString(f.read())
    return bound.runtime_spec.pipeline_run_id.field_value.string_value


def _states(tmp_path, ir_path: str, workspace="ws"):
    config = PipelineConfig(workspace=str(tmp_path / workspace))
    store = mlmd.sqlite_store(smoke_metadata_path(config))
    return mlmd.run_node_states(store, "cvrank-smoke", _run_id(ir_path))


def _processes():
    """(pid, ppid, process group) of every process."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found.append((int(name), int(fields[1]), int(fields[2])))
    return found


def _children(pid: int):
    return [p for p, ppid, _ in _processes() if ppid == pid]


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _blocking_data(tmp_path, data="blocked"):
    """A dataset whose second file is a FIFO: CsvExampleGen's executor blocks reading it."""
    _write_rows(tmp_path / data / "jobs" / "a.csv")
    os.mkfifo(tmp_path / data / "jobs" / "b.csv")


def _start_blocked_client(tmp_path, srv: Server, ir_path: str):
    """A client process (as an Airflow task) running CsvExampleGen, once its executor blocks on the FIFO;
    returns (client process, node process id)."""
    err = open(tmp_path / "client.err", "wb")
    client = subprocess.Popen([sys.executable, "-c", _CLIENT, srv.socket, ir_path, "CsvExampleGen"],
                              stdout=err, stderr=err, env=_ENV, cwd=PROJECT_ROOT)
    err.close()
    _wait_for(lambda: "Processing input csv data" in (tmp_path / "client.err").read_text(errors="replace"), 60,
              "CsvExampleGen's executor to start (its log, streamed to the client)")
    [child] = _children(srv.process.pid)
    return client, child


def _group_alive(pgid: int) -> bool:
    return any(g == pgid for _, _, g in _processes())


# A server whose "nodes" are stand-ins (no TFX imported): what the server does around a node, quickly.
_FAKE_SERVER = """
import logging, os, signal, subprocess, sys, time
from orchestration import airflow_tasks, node_server

def fake_run_node(ir_path, node_id):
    if node_id == "chatty":  # much output, both streams, multibyte text, logging
        for i in range(30000):
            print(f"line {i} \u00e9\u00e8\u4e2d " + "x" * 80)
            if i % 1000 == 0:
                print(f"err {i}", file=sys.stderr)
        logging.info("logged at INFO")
    elif node_id == "tick":
        print("tick", flush=True)
        time.sleep(1.5)
        print("tock")
    elif node_id == "sleep":
        time.sleep(float(ir_path))
    elif node_id == "stubborn":  # ignores SIGTERM
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(600)
    elif node_id == "spawn":  # leaves a process holding its output
        leftover = subprocess.Popen(["sleep", "600"])
        print(f"spawned {leftover.pid}", flush=True)
    elif node_id == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif node_id == "exit3":
        sys.exit(3)
    else:
        raise ValueError(f"no node {node_id!r} in {ir_path}")

airflow_tasks.run_node = fake_run_node
node_server.PRELOAD = ()
sys.exit(node_server.main(sys.argv[1:]))
"""


def _start_fake_server(sock: str, log_path):
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", _FAKE_SERVER, "--socket", sock, "--grace-seconds", "1"],
                                   stdout=log, stderr=log, env=_ENV, cwd=PROJECT_ROOT)
    _wait_for(lambda: node_client.server_available(sock) or process.poll() is not None, 60, "the server")
    assert process.poll() is None, log_path.read_text()
    return process


def _stop(process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@pytest.fixture
def fake_server(tmp_path):
    sock = str(tmp_path / "fake.sock")
    process = _start_fake_server(sock, tmp_path / "server.log")
    try:
        yield sock, process, tmp_path / "server.log"
    finally:
        assert _stop(process) == 0, (tmp_path / "server.log").read_text()
    assert not os.path.exists(sock)


class _SlowWriter(io.StringIO):
    """A client's output that takes its time at first: the server has to hold the node back."""

    def write(self, text):
        if not self.tell():
            time.sleep(1.0)
        return super().write(text)


def test_output_is_streamed_whole_in_order_and_as_it_is_written(fake_server):
    sock, _, _ = fake_server
    out, err = _SlowWriter(), io.StringIO()
    node_client.run_node(sock, "ir", "chatty", out=out, err=err)
    expected = "".join(f"line {i} \u00e9\u00e8\u4e2d " + "x" * 80 + "\n" for i in range(30000))
    assert out.getvalue() == expected  # 2.7 MB, more than the server buffers for a client
    assert [x for x in err.getvalue().splitlines() if x.startswith("err ")] == [f"err {i}" for i in range(0, 30000, 1000)]
    assert err.getvalue().rstrip().endswith("INFO root: logged at INFO")

    seen = []

    class Clock(io.StringIO):
        def write(self, text):
            seen.append((time.monotonic(), text))
            return super().write(text)

    start = time.monotonic()
    node_client.run_node(sock, "ir", "tick", out=Clock(), err=None)
    assert seen[0][1] == "tick\n" and seen[0][0] - start < 1.0 and seen[-1][1] == "tock\n"


def test_failures_crashes_and_concurrent_nodes(fake_server):
    sock, process, _ = fake_server
    with pytest.raises(node_client.NodeFailed, match=r"^ValueError: no node 'nope' in ir$") as failed:
        node_client.run_node(sock, "ir", "nope", out=None, err=io.StringIO())
    assert failed.value.exit_code == 1
    with pytest.raises(node_client.NodeFailed, match=r"^node process killed by SIGSEGV$") as crashed:
        node_client.run_node(sock, "ir", "crash", out=None, err=None)
    assert crashed.value.exit_code == -signal.SIGSEGV
    with pytest.raises(node_client.NodeFailed, match=r"^SystemExit: 3$") as exited:
        node_client.run_node(sock, "ir", "exit3", out=None, err=None)
    assert exited.value.exit_code == 3

    # Requests are served side by side.
    start = time.monotonic()
    threads = [threading.Thread(target=node_client.run_node, args=(sock, "1.5", "sleep", None, None)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - start < 4.0
    assert node_client.ping(sock)["pid"] == process.pid
    assert _children(process.pid) == []


def test_a_node_that_ignores_sigterm_is_killed_and_leftover_processes_go(fake_server, tmp_path):
    sock, process, log_path = fake_server
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(sock)
        raw.sendall(b'{"ir_path": "ir", "node_id": "stubborn"}\n')
        reader = raw.makefile("rb")
        child = json.loads(reader.readline())["started"]
        assert json.loads(reader.readline()) == {"stdout": "ignoring SIGTERM\n"}
        reader.close()  # with the socket: the client is gone
    # The client is gone: SIGTERM (ignored), then SIGKILL after the grace period (1 s here).
    _wait_for(lambda: not _group_alive(child), 10, "the node to be killed")
    _wait_for(lambda: "exit -9" in log_path.read_text(), 5, "the request's line")
    assert "still runs 1 s after SIGTERM: SIGKILL" in log_path.read_text()

    out = io.StringIO()
    node_client.run_node(sock, "ir", "spawn", out=out, err=None)  # returns once the leftover is killed
    leftover = int(out.getvalue().split()[1])
    assert "still hold its output 2 s after it ended: SIGKILL to its process group" in log_path.read_text()
    _wait_for(lambda: _state(leftover) in (None, "Z"), 5, "the leftover process to be killed")


def _state(pid: int):
    """A process's state letter, None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.slow  # real TFX nodes, Beam with worker processes
def test_nodes_run_through_the_server_then_come_back_cached(tmp_path, server):
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    default_beam = list(PipelineConfig().beam_pipeline_args)  # worker processes started by a forked child
    first = _prepare(tmp_path, "manual__1", beam=default_beam)
    logs = {}
    for node in smoke_nodes():
        out, err = io.StringIO(), io.StringIO()
        node_client.run_node(server.socket, first, node, out=out, err=err)
        logs[node] = err.getvalue()
    assert _states(tmp_path, first) == {n: "COMPLETE" for n in smoke_nodes()}
    # The node's Python logging (absl's INFO records included) was streamed to the client.
    assert "INFO absl: Running launcher for node_info" in logs["CsvExampleGen"]

    second = _prepare(tmp_path, "manual__2", beam=default_beam)
    for node in smoke_nodes():
        node_client.run_node(server.socket, second, node, out=None, err=None)
    assert _states(tmp_path, second) == {n: "CACHED" for n in smoke_nodes()}

    lines = [line for line in server.log().splitlines() if " of " + first in line or " of " + second in line]
    assert len(lines) == 6 and all(": exit 0 in " in line for line in lines), server.log()
    assert _children(server.process.pid) == []  # every child reaped


@pytest.mark.slow
def test_a_failing_node_raises_its_executor_error_and_the_server_keeps_serving(tmp_path, server):
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    with open(tmp_path / "data" / "jobs" / "rows.csv", "a") as f:
        f.write("j99,title,text,an extra field\n")
    ir_path = _prepare(tmp_path, "manual__1")
    with pytest.raises(node_client.NodeFailed) as failed:
        node_client.run_node(server.socket, ir_path, "CsvExampleGen", out=None, err=None)
    assert failed.value.exit_code == 1
    assert _states(tmp_path, ir_path) == {"CsvExampleGen": "FAILED"}

    # The same error as the task's own process would raise.
    with pytest.raises(Exception) as in_process:
        airflow_tasks.run_node(_prepare(tmp_path, "manual__2"), "CsvExampleGen")
    assert str(failed.value) == f"{type(in_process.value).__name__}: {in_process.value}"
    assert str(failed.value).startswith("ValueError: Columns do not match specified csv headers")
    # A missing IR is the node's failure too, as in the task's own process.
    with pytest.raises(node_client.NodeFailed, match=r"^FileNotFoundError: .*nowhere/pipeline.pb"):
        node_client.run_node(server.socket, str(tmp_path / "nowhere" / "pipeline.pb"), "CsvExampleGen", out=None,
                             err=None)

    pid = node_client.ping(server.socket)["pid"]
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")  # fixed
    fixed = _prepare(tmp_path, "manual__3")
    node_client.run_node(server.socket, fixed, "CsvExampleGen", out=None, err=None)
    assert _states(tmp_path, fixed) == {"CsvExampleGen": "COMPLETE"}
    assert node_client.ping(server.socket)["pid"] == pid == server.process.pid


@pytest.mark.slow
def test_a_killed_client_takes_its_node_with_it_and_a_retry_completes(tmp_path, server):
    _blocking_data(tmp_path, "data")
    ir_path = _prepare(tmp_path, "manual__1")
    client, child = _start_blocked_client(tmp_path, server, ir_path)
    assert os.getpgid(child) == child  # its own process group

    client.kill()  # as Airflow kills a task that timed out
    client.wait()
    _wait_for(lambda: not _group_alive(child), 15, "the node's process group to end")
    _wait_for(lambda: "client gone" in server.log(), 5, "the server's request line")
    assert f"client (pid {client.pid}) gone while CsvExampleGen ran: SIGTERM to its process group {child}" in server.log()
    assert _states(tmp_path, ir_path) == {"CsvExampleGen": "RUNNING"}  # as a killed task leaves it

    os.remove(tmp_path / "data" / "jobs" / "b.csv")  # the retry of the task, with readable input
    node_client.run_node(server.socket, ir_path, "CsvExampleGen", out=None, err=None)
    assert _states(tmp_path, ir_path) == {"CsvExampleGen": "COMPLETE"}


@pytest.mark.slow
def test_sigterm_stops_the_server_and_its_running_nodes(tmp_path):
    _blocking_data(tmp_path, "data")
    srv = Server(tmp_path)
    try:
        ir_path = _prepare(tmp_path, "manual__1")
        outcome = []

        def task():
            try:
                node_client.run_node(srv.socket, ir_path, "CsvExampleGen", out=None, err=io.StringIO())
            except Exception as exc:  # noqa: BLE001
                outcome.append(exc)

        thread = threading.Thread(target=task)
        thread.start()
        [child] = _wait_for(lambda: _children(srv.process.pid), 60, "the node's process")
        time.sleep(1)
        srv.process.send_signal(signal.SIGTERM)
        thread.join(30)
        assert srv.process.wait(30) == 0
    finally:
        srv.stop()
    [error] = outcome
    assert isinstance(error, node_client.NodeFailed) and error.exit_code == -signal.SIGTERM
    assert str(error) == "node server stopped (SIGTERM): node process killed by SIGTERM"
    assert not _group_alive(child)
    assert not os.path.exists(srv.socket)


def test_no_server_stale_socket_second_server_and_bad_requests(tmp_path):
    path = str(tmp_path / "ns.sock")
    with pytest.raises(node_client.NodeServerUnavailable):
        node_client.run_node(path, "/nowhere/pipeline.pb", "CsvExampleGen")
    assert not node_client.server_available(path)

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket file whose server died
    stale.bind(path)
    stale.close()
    with pytest.raises(node_client.NodeServerUnavailable):
        node_client.run_node(path, "/nowhere/pipeline.pb", "CsvExampleGen")

    srv = _start_fake_server(path, tmp_path / "server.log")  # takes over the stale socket file
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        second = subprocess.run([sys.executable, "-m", "orchestration.node_server", "--socket", path],
                                capture_output=True, text=True, env=_ENV, cwd=PROJECT_ROOT, timeout=60)
        assert second.returncode == 1 and "another node server" in second.stderr
        assert node_client.server_available(path)

        for request, reason in ((b"not json\n", "bad request: not JSON"), (b'{"ir_path": "/x"}\n', "bad request: needs")):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
                raw.connect(path)
                raw.sendall(request)
                with raw.makefile("rb") as reader:
                    answer = json.loads(reader.readline())
            assert answer["refused"].startswith(reason)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:  # a client that leaves before asking
            raw.connect(path)
        assert node_client.ping(path)["pid"] == srv.pid
    finally:
        assert _stop(srv) == 0, (tmp_path / "server.log").read_text()
    assert not os.path.exists(path)
    with pytest.raises(node_client.NodeServerUnavailable):
        node_client.run_node(path, "/nowhere/pipeline.pb", "CsvExampleGen")


@pytest.mark.slow
def test_changed_sources_run_in_a_fresh_interpreter_then_the_server_restarts(tmp_path):
    watched = tmp_path / "watched.py"
    watched.write_text("x = 1\n")
    _blocking_data(tmp_path, "blocked")
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    srv = Server(tmp_path, "--watch", str(watched))
    try:
        before = node_client.ping(srv.socket)
        # A node runs (blocked on its input), so the server cannot restart yet.
        blocked_ir = _prepare(tmp_path, "manual__1", data="blocked", workspace="ws-blocked")
        client, child = _start_blocked_client(tmp_path, srv, blocked_ir)
        watched.write_text("x = 2\n")
        ir_path = _prepare(tmp_path, "manual__1")
        node_client.run_node(srv.socket, ir_path, "CsvExampleGen", out=None, err=None)
        assert _states(tmp_path, ir_path) == {"CsvExampleGen": "COMPLETE"}
        [line] = [x for x in srv.log().splitlines() if f"node CsvExampleGen of {ir_path}: exit 0" in x]
        assert "(fresh interpreter pid" in line

        client.kill()
        client.wait()
        _wait_for(lambda: "restarting to import them again" in srv.log(), 30, "the restart")
        srv.wait_ready()
        after = node_client.ping(srv.socket)
        assert after["pid"] == before["pid"] == srv.process.pid and after["stale"] == []
        assert srv.log().count("node_server: ready on") == 2

        second = _prepare(tmp_path, "manual__2")
        node_client.run_node(srv.socket, second, "CsvExampleGen", out=None, err=None)
        [line] = [x for x in srv.log().splitlines() if f"node CsvExampleGen of {second}: exit 0" in x]
        assert "(forked pid" in line
        assert not _group_alive(child)
    finally:
        assert srv.stop() == 0, srv.log()


@pytest.mark.slow
def test_without_a_server_a_task_launches_its_node_in_a_new_interpreter(tmp_path):
    """What a node task does when no node server answers: the node runs in a new TFX interpreter, and its
    failure carries the executor's error."""
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")
    with open(tmp_path / "data" / "jobs" / "rows.csv", "a") as f:
        f.write("j99,title,text,an extra field\n")
    failing = _prepare(tmp_path, "manual__1")
    nowhere = str(tmp_path / "no-server.sock")
    with pytest.raises(node_client.NodeFailed, match="Columns do not match specified csv headers"):
        node_client.launch(nowhere, sys.executable, PROJECT_ROOT, failing, "CsvExampleGen")
    _write_rows(tmp_path / "data" / "jobs" / "rows.csv")  # fixed
    fixed = _prepare(tmp_path, "manual__2")
    node_client.launch(nowhere, sys.executable, PROJECT_ROOT, fixed, "CsvExampleGen")
    assert _states(tmp_path, fixed) == {"CsvExampleGen": "COMPLETE"}
