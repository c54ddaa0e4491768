"""Airflow's processes for a workspace: the supervisor that starts, watches and stops them, and what other
commands read of it (`cvrank airflow up|down|status`, `cvrank run --runner airflow`).

Every `bin/cvrank` command runs in its own PID namespace that ends with it, so long-lived services cannot
be started by a command that then exits. `bin/cvrank airflow up` therefore launches, detached on the host,
a runtime namespace whose command is the supervisor:

    python -m orchestration.airflow_services supervise --workspace W [--cluster] [--port N]

and then runs `cvrank airflow up` inside the runtime, which only waits for it (`wait_until_started`). In
a test, which already runs inside the runtime, start the supervisor as a subprocess with that command line
and stop it with `request_stop` + `wait_until_stopped` (or SIGTERM).

The supervisor, with AIRFLOW_HOME = `<workspace>/airflow` (files below are relative to it):
- holds an `fcntl.flock` on `supervisor.lock` for its whole life (the kernel frees it however the process
  ends; flock works across mount namespaces on the bind-mounted workspace): a second supervisor for the
  workspace exits at once, and `supervisor_alive` is the truth about whether one runs;
- records in `services.json` its state (`starting`, `running`, `stopping`, `stopped`, `failed`), the
  current start-up phase, each service with its pid (inside the supervisor's PID namespace), port, start
  time, log file and state, the API URL, and the deployment settings (`settings`: workspace and, in the
  cluster, `metadata_uri`) that the DAG spec was written with;
- runs `airflow db migrate`, `airflow pools set cvrank_tfx ...` and `write_spec` (the DAG spec at
  $CVRANK_AIRFLOW_SPEC), then the node server (orchestration/node_server.py, on $CVRANK_NODE_SERVER), the
  API server (UI and REST API, on 127.0.0.1), scheduler, DAG processor and triggerer; with `--cluster`
  first PostgreSQL and Redis, and two Celery workers after. Logs go to
  `logs/<service>.log`. It is `running` once the API server's health check reports every component healthy
  and the DAG `cvrank` is registered (or a warning says why not);
- restarts a service that dies while running (with a growing delay; it gives up after 5 deaths in
  10 minutes), and stops everything (SIGTERM, SIGKILL after a grace period, then any process left below
  it) when `down` creates `supervisor.stop`, or on SIGTERM/SIGINT. Then it exits, freeing the lock.

Only the host side can start the supervisor's namespace, so inside the runtime `ensure_up` can only check
and wait for a supervisor that is starting; it raises AirflowNotRunning when none runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import fcntl
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from orchestration import airflow_env

FORMAT = 1
LOCK_FILE = "supervisor.lock"
SERVICES_FILE = "services.json"
STOP_FILE = "supervisor.stop"
HOST_PID_FILE = "supervisor.pid"  # "<host pid> <launch id>", written by bin/cvrank when it launches one
DEPLOYMENT_FILE = "deployment.json"  # the mode this AIRFLOW_HOME was set up for, and the cluster's ports
LOG_DIR = "logs"
SUPERVISOR_LOG = "supervisor.log"
POSTGRES_DIR = "postgres"
POSTGRES_PASSWORD_FILE = "postgres-superuser-password"
REDIS_DIR = "redis"
CELERY_WORKERS = ("worker1", "worker2")
CELERY_CONCURRENCY = 4
DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_START_TIMEOUT = 900.0
DAG_WAIT_SECONDS = 300.0
RESTART_LIMIT = 5  # deaths within RESTART_WINDOW after which a service is left failed
RESTART_WINDOW = 600.0
RUNNING, STARTING, STOPPING, STOPPED, FAILED = "running", "starting", "stopping", "stopped", "failed"


class AirflowNotRunning(RuntimeError):
    """No Airflow supervisor runs for the workspace (or it failed); the message says how to start it."""


class StartFailed(RuntimeError):
    """The supervisor of this launch failed or exited before Airflow was up; the message says why."""


# ---------------------------------------------------------------------------------------------------------
# Files and what other commands read.

def home(workspace: str) -> str:
    return airflow_env.airflow_home(workspace)


def _path(workspace: str, name: str) -> str:
    return os.path.join(home(workspace), name)


def log_dir(workspace: str) -> str:
    return _path(workspace, LOG_DIR)


def supervisor_alive(workspace: str) -> bool:
    """Whether a supervisor holds the workspace's lock (probed with a shared lock, released at once)."""
    try:
        fd = os.open(_path(workspace, LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases a lock the probe got
    return False


def read_services(workspace: str) -> Optional[Dict[str, Any]]:
    """services.json as the supervisor last wrote it, or None. It may describe a supervisor that has since
    died: check `supervisor_alive`."""
    try:
        with open(_path(workspace, SERVICES_FILE)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def running_services(workspace: str) -> Optional[Dict[str, Any]]:
    """The services document of the live supervisor, or None when none runs."""
    doc = read_services(workspace)
    if doc is None or not supervisor_alive(workspace):
        return None
    return doc


def is_up(workspace: str) -> bool:
    """A live supervisor whose Airflow is up (`running`)."""
    doc = running_services(workspace)
    return doc is not None and doc.get("state") == RUNNING


def _not_running_message(workspace: str) -> str:
    return (f"Airflow is not running for workspace {os.path.abspath(workspace)}; start it on the host with "
            f"`bin/cvrank airflow up --workspace {os.path.abspath(workspace)}`")


def ensure_up(workspace: str, timeout: float = DEFAULT_START_TIMEOUT,
              on_phase: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """The services document once the workspace's Airflow is up, waiting (up to `timeout` seconds) for a
    supervisor that is still starting. Inside the runtime nothing can start the supervisor (a process
    started here would end with this command's PID namespace): raises AirflowNotRunning when no supervisor
    runs, when it failed or when it is stopping; `bin/cvrank airflow up` starts one on the host."""
    deadline = time.monotonic() + timeout
    phase = None
    while True:
        doc = running_services(workspace)
        if doc is None:
            last = read_services(workspace)
            detail = f" (its last start failed: {last['error']})" if last and last.get("state") == FAILED and last.get("error") else ""
            raise AirflowNotRunning(_not_running_message(workspace) + detail)
        state = doc.get("state")
        if state == RUNNING:
            return doc
        if state in (FAILED, STOPPING, STOPPED):
            raise AirflowNotRunning(f"Airflow for workspace {workspace} is {state}"
                                    + (f": {doc['error']}" if doc.get("error") else ""))
        if on_phase and doc.get("phase") != phase:
            phase = doc.get("phase")
            on_phase(phase or state)
        if time.monotonic() > deadline:
            raise AirflowNotRunning(f"Airflow for workspace {workspace} is still starting ({doc.get('phase')}) "
                                    f"after {timeout:.0f} s; see {os.path.join(log_dir(workspace), SUPERVISOR_LOG)}")
        time.sleep(0.5)


def _services_or_raise(workspace: str) -> Dict[str, Any]:
    doc = running_services(workspace)
    if doc is None:
        raise AirflowNotRunning(_not_running_message(workspace))
    return doc


def api_url(workspace: str) -> str:
    """The running API server's base URL, e.g. http://127.0.0.1:8080 (the UI is there too)."""
    return _services_or_raise(workspace)["api_url"]


def credentials(workspace: str) -> Tuple[str, str]:
    """(user, password) of Airflow's admin user (Simple auth manager) for this workspace."""
    return airflow_env.ADMIN_USER, airflow_env.admin_password(workspace)


def access_token(workspace: str, url: Optional[str] = None) -> str:
    """A JWT for the REST API (`Authorization: Bearer <token>`): Airflow 3's POST /auth/token with the
    admin's user name and password as JSON. Tokens expire (24 h by default): fetch another on a 401."""
    user, password = credentials(workspace)
    return _token(url or api_url(workspace), user, password)


def _token(url: str, user: str, password: str) -> str:
    request = urllib.request.Request(
        url.rstrip("/") + "/auth/token", method="POST",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["access_token"]


def deployment_settings(workspace: str) -> Dict[str, Any]:
    """The pipeline settings of the running deployment, which its DAG spec was written with:
    {"workspace": W} and, in the cluster, "metadata_uri" (ML Metadata in its PostgreSQL)."""
    return dict(_services_or_raise(workspace)["settings"])


def deployment_config(workspace: str):
    """PipelineConfig of the running deployment's settings (`deployment_settings`)."""
    from config import PipelineConfig

    return PipelineConfig.create(deployment_settings(workspace))


def environ(workspace: str) -> Dict[str, str]:
    """The environment of an `airflow` command against the running deployment (its database, broker, API
    port), e.g. `airflow dags list-runs cvrank`."""
    doc = _services_or_raise(workspace)
    return airflow_env.airflow_environ(workspace, cluster=doc["mode"] == "cluster", api_port=doc["api_port"],
                                       postgres_port=doc.get("postgres_port"), redis_port=doc.get("redis_port"))


def request_stop(workspace: str) -> bool:
    """Asks the workspace's supervisor to stop everything it started (it polls for `supervisor.stop`).
    False when none runs."""
    if not supervisor_alive(workspace):
        return False
    with open(_path(workspace, STOP_FILE), "w") as f:
        f.write(f"{os.getpid()} {_now()}\n")
    return True


def wait_until_stopped(workspace: str, timeout: float = DEFAULT_GRACE_SECONDS + 90) -> bool:
    """Waits until no supervisor holds the workspace's lock; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while supervisor_alive(workspace):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def signal_supervisor(workspace: str, sig: int = signal.SIGTERM) -> bool:
    """Sends `sig` to the supervisor when it runs in this process's PID namespace (a test's subprocess,
    `up --foreground`); False otherwise (bin/cvrank signals the namespace from the host)."""
    doc = running_services(workspace)
    if not doc or doc.get("pid_namespace") != _pid_namespace():
        return False
    try:
        os.kill(doc["supervisor_pid"], sig)
    except ProcessLookupError:
        return False
    return True


def wait_until_started(workspace: str, launch_id: Optional[str], timeout: float = DEFAULT_START_TIMEOUT,
                       on_phase: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Follows the supervisor of launch `launch_id` (bin/cvrank passes the id it launched one with) until
    Airflow is up; returns the services document. Raises StartFailed when that supervisor fails or exits
    first, or after `timeout` seconds. Without a launch id, follows whichever supervisor runs."""
    deadline = time.monotonic() + timeout
    phase = None
    gone_since = None
    while True:
        doc = read_services(workspace)
        alive = supervisor_alive(workspace)
        ours = doc is not None and (launch_id is None or doc.get("launch_id") == launch_id)
        if ours:
            state = doc.get("state")
            if state == RUNNING and alive:
                return doc
            if state in (FAILED, STOPPED, STOPPING):
                raise StartFailed(doc.get("error") or f"the supervisor is {state}")
            if on_phase and doc.get("phase") != phase:
                phase = doc.get("phase")
                on_phase(phase or state)
        if not alive:  # give a supervisor that is just starting (or just writing its last state) a moment
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > (2.0 if ours else 30.0):
                raise StartFailed("the supervisor exited before Airflow was up")
        else:
            gone_since = None
        if time.monotonic() > deadline:
            raise StartFailed(f"Airflow is not up after {timeout:.0f} s (phase: {phase})")
        time.sleep(0.3)


def log_tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def host_pid(workspace: str, doc: Optional[Dict[str, Any]] = None) -> Optional[int]:
    """The host pid of the supervisor's namespace (bin/cvrank's record), when it belongs to this launch."""
    try:
        with open(_path(workspace, HOST_PID_FILE)) as f:
            pid, _, launch = f.read().strip().partition(" ")
        if doc is None or doc.get("launch_id") == launch:
            return int(pid)
    except (FileNotFoundError, ValueError):
        pass
    return None


def status_lines(workspace: str) -> List[str]:
    """What `cvrank airflow status` prints."""
    doc = running_services(workspace)
    if doc is None:
        lines = [f"Airflow is not running for workspace {os.path.abspath(workspace)}."]
        last = read_services(workspace)
        if last and last.get("state") == FAILED and last.get("error"):
            lines.append(f"Its last start failed: {last['error']}")
        return lines
    started = doc.get("started", "?")
    mode = ("cluster: CeleryExecutor, 2 Celery workers, PostgreSQL, Redis" if doc["mode"] == "cluster"
            else "local: LocalExecutor, SQLite")
    pid = host_pid(workspace, doc)
    lines = [f"Airflow for workspace {doc['workspace']}: {doc['state']}"
             + (f" ({doc['phase']})" if doc["state"] == STARTING and doc.get("phase") else "")
             + f", {mode}",
             f"  UI and REST API: {doc['api_url']}  (user {airflow_env.ADMIN_USER}, password: "
             f"{airflow_env.admin_password(workspace)})",
             f"  supervisor: pid {doc['supervisor_pid']} in its PID namespace"
             + (f", {pid} on the host" if pid else "") + f", started {started}",
             f"  logs: {doc['log_dir']}"]
    if doc.get("metadata_uri"):
        lines.append(f"  ML Metadata: {doc['metadata_uri']}")
    lines.append(f"  {'service':<15} {'pid':>6}  {'state':<10} {'port':>5}  since")
    for name, svc in doc["services"].items():
        lines.append(f"  {name:<15} {svc.get('pid') or '-':>6}  {svc['state']:<10} {svc.get('port') or '':>5}  "
                     f"{svc.get('started') or ''}" + (f"  (restarted {svc['restarts']}x)" if svc.get("restarts") else ""))
    for warning in doc.get("warnings", []):
        lines.append(f"  warning: {warning}")
    return lines


# ---------------------------------------------------------------------------------------------------------
# The supervisor.

def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_namespace() -> Optional[int]:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def free_port(preferred: Optional[int] = None) -> int:
    """`preferred` when it is free on 127.0.0.1, else a free port the kernel picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _http_json(url: str, token: Optional[str] = None, timeout: float = 5.0) -> Tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


class Stopped(Exception):
    """A stop was requested during start-up."""


class Service:
    """One long-lived process the supervisor runs, in its own process group, output to its log file."""

    def __init__(self, name: str, command: Sequence[str], env: Dict[str, str], log_path: str,
                 port: Optional[int] = None, stop_signal: int = signal.SIGTERM, infrastructure: bool = False,
                 optional: bool = False):
        self.name, self.command, self.env, self.log_path = name, list(command), env, log_path
        self.port, self.stop_signal, self.infrastructure = port, stop_signal, infrastructure
        self.optional = optional  # its death does not fail the start (it is restarted like any other)
        self.proc: Optional[subprocess.Popen] = None
        self.started: Optional[str] = None
        self.state = "not started"
        self.exit_code: Optional[int] = None
        self.deaths: List[float] = []
        self.restart_at: Optional[float] = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {_now()} cvrank supervisor starts: {' '.join(self.command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.started, self.state, self.exit_code, self.restart_at = _now(), RUNNING, None, None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Sends `sig` to the service's process group (the process and what it started)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def record(self) -> Dict[str, Any]:
        return {"pid": self.proc.pid if self.proc else None, "state": self.state, "port": self.port,
                "started": self.started, "log": self.log_path, "command": self.command,
                "exit_code": self.exit_code, "restarts": max(0, len(self.deaths))}


def _die_with_parent() -> None:  # in the child, before exec: SIGKILL when the supervisor dies
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


class Supervisor:
    def __init__(self, workspace: str, cluster: bool = False, port: int = airflow_env.DEFAULT_API_PORT,
                 launch_id: Optional[str] = None, grace: float = DEFAULT_GRACE_SECONDS,
                 start_timeout: float = DEFAULT_START_TIMEOUT):
        self.workspace = os.path.abspath(workspace)
        self.home = home(self.workspace)
        self.logs = os.path.join(self.home, LOG_DIR)
        self.cluster, self.requested_port, self.grace = cluster, port, grace
        self.start_timeout = start_timeout
        self.launch_id = launch_id or f"{datetime.datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}"
        self.services: Dict[str, Service] = {}
        self.state, self.phase, self.error = STARTING, "starting", None
        self.warnings: List[str] = []
        self.api_port: Optional[int] = None
        self.postgres_port: Optional[int] = None
        self.redis_port: Optional[int] = None
        self.settings: Dict[str, Any] = {"workspace": self.workspace}
        self.env: Dict[str, str] = dict(os.environ)
        self.stop_requested = False
        self.started = _now()
        self._lock_fd: Optional[int] = None

    # -- bookkeeping

    def log(self, message: str) -> None:
        print(f"{_now()} cvrank supervisor: {message}", flush=True)

    def write(self) -> None:
        doc = {
            "format": FORMAT, "launch_id": self.launch_id, "state": self.state, "phase": self.phase,
            "error": self.error, "warnings": self.warnings,
            "mode": "cluster" if self.cluster else "local", "workspace": self.workspace,
            "airflow_home": self.home, "log_dir": self.logs,
            "supervisor_pid": os.getpid(), "pid_namespace": _pid_namespace(),
            "started": self.started, "updated": _now(),
            "api_port": self.api_port, "api_url": f"http://127.0.0.1:{self.api_port}" if self.api_port else None,
            "postgres_port": self.postgres_port, "redis_port": self.redis_port,
            "metadata_uri": self.settings.get("metadata_uri", ""),
            "settings": self.settings,
            "services": {name: svc.record() for name, svc in self.services.items()},
        }
        path = os.path.join(self.home, SERVICES_FILE)
        temp = f"{path}.{os.getpid()}.tmp"
        with open(temp, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(temp, path)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.log(phase)
        self.write()

    def check_stop(self) -> None:
        if not self.stop_requested and os.path.exists(os.path.join(self.home, STOP_FILE)):
            self.log("stop requested (supervisor.stop)")
            self.stop_requested = True
        if self.stop_requested:
            raise Stopped()

    def sleep(self, seconds: float) -> None:
        """Sleeps, but raises Stopped as soon as a stop is requested."""
        end = time.monotonic() + seconds
        while True:
            self.check_stop()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.25, left))

    # -- life cycle

    def run(self) -> int:
        os.makedirs(self.logs, exist_ok=True)
        if not self._take_lock():
            self.log(f"another supervisor already runs for {self.workspace}; nothing started")
            return 3
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of our services come to us
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.home, STOP_FILE))  # addressed to an earlier supervisor
        code = 0
        try:
            self.write()
            self.log(f"launch {self.launch_id}: Airflow for {self.workspace} "
                     f"({'cluster' if self.cluster else 'local'} mode)")
            self._start()
            self.state, self.phase = RUNNING, "running"
            self.write()
            self.log(f"running: http://127.0.0.1:{self.api_port}")
            self._watch()
        except Stopped:
            pass
        except Exception as err:  # noqa: BLE001 - recorded for `up` and `status`, then everything stops
            code = 1
            self.state, self.error = FAILED, str(err) or type(err).__name__
            self.log(f"FAILED: {self.error}")
            self.write()
        finally:
            if self.state != FAILED:
                self.state = STOPPING
            self.phase = "stopping"
            with contextlib.suppress(Exception):
                self.write()
            self._stop_all()
            if self.state != FAILED:
                self.state = STOPPED
            self.phase = "stopped"
            self.write()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.home, STOP_FILE))
            self.log(f"{self.state}; every process it started has ended")
        return code

    def _on_signal(self, signum, frame) -> None:
        self.log(f"signal {signal.Signals(signum).name}: stopping")
        self.stop_requested = True

    def _take_lock(self) -> bool:
        fd = os.open(os.path.join(self.home, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 3.0  # `status` probes hold the lock for microseconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return False
                time.sleep(0.1)
        self._lock_fd = fd  # held until the process ends
        return True

    def _check_mode(self) -> Dict[str, Any]:
        """deployment.json: the mode AIRFLOW_HOME was set up for. Switching is refused: the two modes have
        different Airflow databases and ML Metadata stores, and TFX names output directories by execution
        id, so two stores writing one workspace's pipelines/ would collide."""
        path = os.path.join(self.home, DEPLOYMENT_FILE)
        mode = "cluster" if self.cluster else "local"
        try:
            with open(path) as f:
                recorded = json.load(f)
        except FileNotFoundError:
            recorded = {"mode": mode, "created": _now()}
        if recorded.get("mode") != mode:
            raise RuntimeError(
                f"{self.home} was set up for the {recorded.get('mode')} deployment "
                f"({'PostgreSQL' if recorded.get('mode') == 'cluster' else 'SQLite'} for Airflow and ML Metadata) and "
                f"cannot switch to the {mode} one: the pipeline artifacts of {self.workspace} are recorded in "
                f"that store. Use another --workspace for the {mode} deployment"
                + (" (or drop --cluster)" if mode == "cluster" else " (or add --cluster)"))
        return recorded

    def _save_mode(self, recorded: Dict[str, Any]) -> None:
        recorded.update(postgres_port=self.postgres_port, redis_port=self.redis_port)
        path = os.path.join(self.home, DEPLOYMENT_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(recorded, f, indent=2)
        os.replace(path + ".tmp", path)

    def _start(self) -> None:
        started = time.monotonic()
        recorded = self._check_mode()
        if self.requested_port == 0:
            self.api_port = free_port()
        elif port_is_free(self.requested_port):
            self.api_port = self.requested_port
        else:
            raise RuntimeError(f"port {self.requested_port} on 127.0.0.1 is in use by another program; "
                               f"pass --port N, or --port 0 for any free port")
        if self.cluster:
            self._check_cluster_drivers()
            self.postgres_port = free_port(recorded.get("postgres_port"))
            self.redis_port = free_port(recorded.get("redis_port"))
            self._save_mode(recorded)
            self._start_postgres()
            self._start_redis()
            self.settings["metadata_uri"] = airflow_env.postgres_url(self.postgres_port, airflow_env.MLMD_DB)
        else:
            self._save_mode(recorded)
        self.env = env = airflow_env.airflow_environ(
            self.workspace, cluster=self.cluster, api_port=self.api_port, postgres_port=self.postgres_port,
            redis_port=self.redis_port)
        self.write()

        # The database migration and the DAG spec (compiling both pipelines in the TFX env) side by side.
        self.set_phase("migrating Airflow's database; writing the DAG spec")
        spec_code = ("import json, sys; from orchestration.airflow_spec import write_spec; "
                     "write_spec(sys.argv[1], json.loads(sys.argv[2]))")
        self._run_steps([
            ("db-migrate", ["airflow", "db", "migrate"]),
            ("dag-spec", [sys.executable, "-c", spec_code, env["CVRANK_AIRFLOW_SPEC"], json.dumps(self.settings)]),
        ])
        slots = airflow_env.tfx_pool_slots(self.cluster)
        self.set_phase(f"creating the pool {airflow_env.TFX_POOL} ({slots} slot{'s' if slots > 1 else ''})")
        self._run_steps([("pools", ["airflow", "pools", "set", airflow_env.TFX_POOL, str(slots),
                                    "cvrank's TFX node tasks"])])

        self.set_phase("starting the API server, scheduler, DAG processor and triggerer")
        # The node server (TFX, TensorFlow and Beam imported once) launches the node tasks' TFX nodes; a task
        # that finds none at $CVRANK_NODE_SERVER starts a fresh interpreter instead, so it is optional.
        self._add("node-server", [env["CVRANK_TFX_PYTHON"], "-m", "orchestration.node_server", "--socket",
                                  env["CVRANK_NODE_SERVER"]], optional=True)
        self._add("api-server", ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)],
                  port=self.api_port)
        self._add("scheduler", ["airflow", "scheduler", "--skip-serve-logs"])
        self._add("dag-processor", ["airflow", "dag-processor"])
        self._add("triggerer", ["airflow", "triggerer", "--skip-serve-logs"])
        if self.cluster:
            for worker in CELERY_WORKERS:
                self._add(f"celery-{worker}", ["airflow", "celery", "worker", "--celery-hostname", f"{worker}@%h",
                                               "--concurrency", str(CELERY_CONCURRENCY), "--skip-serve-logs"])
        self.write()
        self._wait_healthy(started)
        self._wait_for_dag()

    def _add(self, name: str, command: Sequence[str], env: Optional[Dict[str, str]] = None,
             port: Optional[int] = None, stop_signal: int = signal.SIGTERM, infrastructure: bool = False,
             optional: bool = False) -> Service:
        svc = Service(name, command, env or self.env, os.path.join(self.logs, f"{name}.log"), port=port,
                      stop_signal=stop_signal, infrastructure=infrastructure, optional=optional)
        self.services[name] = svc
        svc.start()
        self.log(f"started {name} (pid {svc.proc.pid}): {' '.join(command)}")
        return svc

    def _run_steps(self, steps: Sequence[Tuple[str, Sequence[str]]], env: Optional[Dict[str, str]] = None,
                   input_text: Optional[str] = None) -> None:
        """Runs one-off commands side by side, each logged to logs/<name>.log; raises when one fails."""
        running = []
        for name, command in steps:
            log_path = os.path.join(self.logs, f"{name}.log")
            log = open(log_path, "ab")
            log.write(f"\n=== {_now()} {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(command, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_die_with_parent)
            if input_text is not None:
                proc.stdin.write(input_text.encode())
                proc.stdin.close()
            running.append((name, proc, log, log_path, time.monotonic()))
        try:
            for name, proc, log, log_path, t0 in running:
                while proc.poll() is None:
                    self.sleep(0.25)
                log.close()
                if proc.returncode != 0:
                    raise RuntimeError(f"{name} failed (exit code {proc.returncode}); its log {log_path} ends:\n"
                                       + log_tail(log_path, 15))
                self.log(f"{name}: done in {time.monotonic() - t0:.1f} s")
        finally:
            for name, proc, log, _, _ in running:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                log.close()

    def _check_services(self) -> None:
        """During start-up: a service that died fails the start."""
        for svc in self.services.values():
            if svc.proc is not None and svc.proc.poll() is not None and not svc.optional:
                svc.state, svc.exit_code = "exited", svc.proc.returncode
                raise RuntimeError(f"{svc.name} exited during start-up (exit code {svc.proc.returncode}); its log "
                                   f"{svc.log_path} ends:\n{log_tail(svc.log_path, 15)}")

    def _wait_healthy(self, started: float) -> None:
        self.set_phase(f"waiting for the API server on http://127.0.0.1:{self.api_port} and the components' health")
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        last = None
        while True:
            self._check_services()
            code, health = _http_json(url)
            if code == 200 and isinstance(health, dict):
                unhealthy = {k: v.get("status") for k, v in health.items()
                             if isinstance(v, dict) and v.get("status") != "healthy"}
                if not unhealthy:
                    return
                if unhealthy != last:
                    self.log(f"health: not yet healthy: {unhealthy}")
                    last = unhealthy
            if time.monotonic() - started > self.start_timeout:
                raise RuntimeError(f"Airflow was not healthy {self.start_timeout:.0f} s after the start "
                                   f"(last health answer: HTTP {code}, {health}); see the logs in {self.logs}")
            self.sleep(1.0)

    def _wait_for_dag(self, dag_id: str = "cvrank") -> None:
        """Waits until the DAG processor has registered `dag_id`; a warning (not a failure) when it has not
        after DAG_WAIT_SECONDS, naming the import errors Airflow reports."""
        self.set_phase(f"waiting for the DAG processor to register the DAG {dag_id}")
        url = f"http://127.0.0.1:{self.api_port}"
        user, password = credentials(self.workspace)
        token = _token(url, user, password)
        deadline = time.monotonic() + DAG_WAIT_SECONDS
        while time.monotonic() < deadline:
            self._check_services()
            code, _ = _http_json(f"{url}/api/v2/dags/{dag_id}", token)
            if code == 200:
                return
            self.sleep(1.0)
        code, errors = _http_json(f"{url}/api/v2/importErrors", token)
        detail = "; ".join(f"{e.get('filename')}: {str(e.get('stack_trace', '')).strip().splitlines()[-1:]}"
                           for e in (errors or {}).get("import_errors", [])) or "no import errors reported"
        self.warnings.append(f"the DAG {dag_id} was not registered {DAG_WAIT_SECONDS:.0f} s after the start "
                             f"({detail}); see {os.path.join(self.logs, 'dag-processor.log')}")
        self.log(self.warnings[-1])

    def _watch(self) -> None:
        """While running: restarts a service that dies (waiting 2, 4, 8 ... 60 s first); leaves it failed
        after RESTART_LIMIT deaths within RESTART_WINDOW. Returns when a stop is requested."""
        while True:
            self.check_stop()
            changed = False
            now = time.monotonic()
            for svc in self.services.values():
                if svc.state == RUNNING and not svc.alive():
                    svc.exit_code = svc.proc.returncode
                    svc.deaths = [t for t in svc.deaths if now - t < RESTART_WINDOW] + [now]
                    if len(svc.deaths) >= RESTART_LIMIT:
                        svc.state = FAILED
                        self.warnings.append(f"{svc.name} died {len(svc.deaths)} times within "
                                             f"{RESTART_WINDOW / 60:.0f} minutes; not restarted (see {svc.log_path})")
                        self.log(self.warnings[-1])
                    else:
                        delay = min(60.0, 2.0 ** len(svc.deaths))
                        svc.state, svc.restart_at = "restarting", now + delay
                        self.log(f"{svc.name} exited (code {svc.exit_code}); restarting in {delay:.0f} s")
                    changed = True
                elif svc.state == "restarting" and now >= (svc.restart_at or 0):
                    svc.start()
                    self.log(f"restarted {svc.name} (pid {svc.proc.pid})")
                    changed = True
            self._reap_orphans()
            if changed:
                self.write()
            time.sleep(0.5)

    def _stop_all(self) -> None:
        """Airflow's components first (SIGTERM; SIGKILL after the grace period), then Redis and PostgreSQL,
        then any process still below the supervisor (orphans re-parented to it)."""
        airflow = [s for s in self.services.values() if not s.infrastructure]
        infrastructure = [s for s in self.services.values() if s.infrastructure]
        for group in (airflow, list(reversed(infrastructure))):
            live = [s for s in group if s.alive()]
            for svc in live:
                self.log(f"stopping {svc.name} (pid {svc.proc.pid}, {signal.Signals(svc.stop_signal).name})")
                svc.signal(svc.stop_signal)
            deadline = time.monotonic() + self.grace
            while any(s.alive() for s in live) and time.monotonic() < deadline:
                time.sleep(0.2)
            for svc in live:
                if svc.alive():
                    self.log(f"{svc.name} still runs after {self.grace:.0f} s: SIGKILL")
                    svc.signal(signal.SIGKILL)
                    svc.proc.wait()
                svc.signal(signal.SIGKILL)  # whatever of its process group outlived it
            for svc in group:
                if svc.proc is not None and svc.proc.poll() is not None and svc.state in (RUNNING, "restarting"):
                    svc.state, svc.exit_code = STOPPED, svc.proc.returncode
        self._kill_descendants()

    def _reap_orphans(self) -> None:
        ours = {s.proc.pid for s in self.services.values() if s.proc}
        for pid in _children(os.getpid()):
            if pid not in ours:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def _kill_descendants(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            left = _descendants(os.getpid())
            if not left:
                return
            self.log(f"{len(left)} processes left below the supervisor: {signal.Signals(sig).name}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._reap_orphans()
                if not _descendants(os.getpid()):
                    return
                time.sleep(0.1)

    # -- the cluster's PostgreSQL and Redis

    def _start_postgres(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                      key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
        if not bins:
            raise RuntimeError("PostgreSQL is not in the runtime (/usr/lib/postgresql/*/bin/postgres)")
        pg_bin = os.path.dirname(bins[-1])
        as_postgres = self._postgres_user_prefix()
        data = os.path.join(self.home, POSTGRES_DIR)
        password = self._postgres_password()
        if not os.path.exists(os.path.join(data, "PG_VERSION")):
            self.set_phase("creating the PostgreSQL cluster (initdb)")
            os.makedirs(data, mode=0o700, exist_ok=True)
            self._own_for_postgres(data)
            self._run_steps([("postgres-initdb", [
                *as_postgres, os.path.join(pg_bin, "initdb"), "-D", data, "-U", "postgres", "--pwfile=/dev/stdin",
                "-E", "UTF8", "--locale=C.UTF-8", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                "--no-instructions"])], input_text=password + "\n")
        self._own_for_postgres(data)
        # TCP on 127.0.0.1 only, no Unix socket: the role cvrank (no superuser) without a password, the
        # superuser with the password in AIRFLOW_HOME (mode 600).
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write("# cvrank's local cluster (cvrank airflow up --cluster): TCP on 127.0.0.1 only.\n"
                    f"host all {airflow_env.CLUSTER_DB_USER} 127.0.0.1/32 trust\n"
                    "host all postgres 127.0.0.1/32 scram-sha-256\n")
        self.set_phase(f"starting PostgreSQL on 127.0.0.1:{self.postgres_port}")
        self._add("postgres", [*as_postgres, os.path.join(pg_bin, "postgres"), "-D", data, "-h", "127.0.0.1",
                               "-p", str(self.postgres_port), "-c", "unix_socket_directories=",
                               "-c", "max_connections=200"],
                  env=dict(os.environ), port=self.postgres_port, stop_signal=signal.SIGINT, infrastructure=True)
        psql_env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="3")
        deadline = time.monotonic() + 120
        while subprocess.run([os.path.join(pg_bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                              str(self.postgres_port)], env=psql_env).returncode != 0:
            self._check_services()
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections within 120 s; see {self.logs}/postgres.log")
            self.sleep(0.3)
        user = airflow_env.CLUSTER_DB_USER
        sql = (f"SELECT 'CREATE ROLE {user} LOGIN' WHERE NOT EXISTS "
               f"(SELECT FROM pg_roles WHERE rolname = '{user}')\\gexec\n")
        for db in (airflow_env.AIRFLOW_DB, airflow_env.MLMD_DB):
            sql += (f"SELECT 'CREATE DATABASE {db} OWNER {user}' WHERE NOT EXISTS "
                    f"(SELECT FROM pg_database WHERE datname = '{db}')\\gexec\n")
        self._run_steps([("postgres-setup", [os.path.join(pg_bin, "psql"), "-h", "127.0.0.1", "-p",
                                             str(self.postgres_port), "-U", "postgres", "-d", "postgres", "-q",
                                             "-v", "ON_ERROR_STOP=1"])], env=psql_env, input_text=sql)

    def _check_cluster_drivers(self) -> None:
        """Airflow 3 on PostgreSQL needs psycopg2 (its engine, Celery's result backend) and asyncpg (the
        async engine it derives from sql_alchemy_conn for the API server): say so before starting anything."""
        airflow = shutil.which("airflow", path=self.env.get("PATH"))
        python = os.path.join(os.path.dirname(os.path.realpath(airflow)) if airflow else "", "python")
        if not airflow or not os.path.exists(python):
            raise RuntimeError("the `airflow` command is not on PATH (the runtime's Airflow env)")
        missing = [m for m in ("psycopg2", "asyncpg", "redis") if subprocess.run(
            [python, "-c", f"import {m}"], env=self.env, capture_output=True).returncode != 0]
        if missing:
            raise RuntimeError(f"the Airflow env ({os.path.dirname(python)}) lacks {', '.join(missing)}, which the "
                               f"cluster needs (Airflow on PostgreSQL: psycopg2 and, for its async engine, asyncpg; "
                               f"the Redis broker: redis): add them to runtime/requirements-airflow.in and `make lock`")

    def _postgres_user_prefix(self) -> List[str]:
        """How to run PostgreSQL's programs: they refuse to run as root. As the real root (the runtime entered
        as root): as the user `postgres`, with CAP_DAC_READ_SEARCH so that it reaches AIRFLOW_HOME through
        directories only root may enter (e.g. /root or pytest's 0700 temporary directories); its data
        directory is chowned to it. As another user: as that user."""
        if os.geteuid() != 0:
            return []
        with open("/proc/self/uid_map") as f:
            full_root = f.read().split()[:3] == ["0", "0", "4294967295"]
        if not full_root:
            raise RuntimeError(
                "the local cluster's PostgreSQL refuses to run as root, and this runtime was entered without root "
                "(a user namespace that maps only your own user), so there is no other user to run it as. Run "
                "bin/cvrank as root for --cluster, or use the runtime on a compatible host (CVRANK_RUNTIME=host) "
                "as a regular user")
        pg = pwd.getpwnam("postgres")
        self._pg_ids = (pg.pw_uid, pg.pw_gid)
        return ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--clear-groups",
                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]

    def _own_for_postgres(self, data: str) -> None:
        ids = getattr(self, "_pg_ids", None)
        if ids is None or (os.stat(data).st_uid, os.stat(data).st_gid) == ids:
            return
        for dirpath, dirnames, filenames in os.walk(data):
            for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
                os.lchown(name, *ids)

    def _postgres_password(self) -> str:
        path = os.path.join(self.home, POSTGRES_PASSWORD_FILE)
        if not os.path.exists(path):
            import secrets

            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        with open(path) as f:
            return f.read().strip()

    def _start_redis(self) -> None:
        self.set_phase(f"starting Redis on 127.0.0.1:{self.redis_port}")
        directory = os.path.join(self.home, REDIS_DIR)
        os.makedirs(directory, exist_ok=True)
        self._add("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--dir", directory,
                            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"],
                  env=dict(os.environ), port=self.redis_port, infrastructure=True)
        deadline = time.monotonic() + 60
        while not _redis_ping(self.redis_port):
            self._check_services()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not answer PING within 60 s; see {self.logs}/redis.log")
            self.sleep(0.2)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _process_table() -> Dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    table[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return table


def _children(pid: int) -> List[int]:
    return [p for p, parent in _process_table().items() if parent == pid]


def _descendants(pid: int) -> List[int]:
    table = _process_table()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in table.items() if pp == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.airflow_services",
                                     description="The Airflow supervisor of a workspace (see the module docstring).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("supervise", help="start Airflow's services, watch them, stop them on request")
    p.add_argument("--workspace", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                       "workspace"))
    p.add_argument("--cluster", action="store_true",
                   help="PostgreSQL, Redis, CeleryExecutor and two Celery workers instead of SQLite and LocalExecutor")
    p.add_argument("--port", type=int, default=airflow_env.DEFAULT_API_PORT, help="the API server's port (0: any free one)")
    p.add_argument("--launch-id", help="an id `cvrank airflow up` follows the start of (recorded in services.json)")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE_SECONDS,
                   help="seconds a service gets to stop after SIGTERM before SIGKILL (default %(default)s)")
    args = parser.parse_args(argv)
    return Supervisor(args.workspace, cluster=args.cluster, port=args.port, launch_id=args.launch_id,
                      grace=args.grace).run()


if __name__ == "__main__":
    sys.exit(main())
