"""`cvrank notebook`: JupyterLab on 127.0.0.1 serving `notebooks/`, with a kernel that sees the project
and the workspace, and the classic notebook UI (nbclassic, same server) where TFMA's interactive widgets
render.

TFMA 0.52 ships a classic-notebook extension only (`tensorflow_model_analysis/extension` under the
environment's `share/jupyter/nbextensions`), no JupyterLab extension: its slicing-metrics widget renders
in the classic UI, at `/notebooks/<notebook>` (`/nbclassic/notebooks/...` when Notebook 7 is installed).
Classic-notebook extensions load when an `nbconfig/notebook.json` on Jupyter's config path lists them;
the runtime is read-only, so the server's Jupyter config directory (JUPYTER_CONFIG_DIR) is
`<workspace>/jupyter/config`, where that file is written. Its data (the notebook trust database) and
runtime files go to `<workspace>/jupyter/data` and `runtime`, its log to `<workspace>/jupyter/server.log`.

The access token is generated for each start (`secrets.token_hex`) and handed to the server in its
environment (JUPYTER_TOKEN), not on its command line.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

from analysis import sliced_metrics as sm
from config import PROJECT_ROOT

NOTEBOOK_DIR = os.path.join(PROJECT_ROOT, "notebooks")
NOTEBOOK = "sliced_metrics.ipynb"
HOST = "127.0.0.1"
DEFAULT_PORT = 8888
# Classic-notebook extensions to load: TFMA's widgets and the widget manager they need.
NBEXTENSIONS = ("tensorflow_model_analysis/extension", "jupyter-js-widgets/extension")
START_TIMEOUT = 120.0  # seconds for the server to answer /api/status


class NotebookServerError(RuntimeError):
    """The server could not start; the message says why."""


def jupyter_dirs(workspace: str) -> Dict[str, str]:
    """The server's writable Jupyter directories under `<workspace>/jupyter`: config, data (the
    notebook trust database), runtime, and the log file."""
    base = os.path.join(os.path.abspath(workspace), "jupyter")
    return {"config": os.path.join(base, "config"), "data": os.path.join(base, "data"),
            "runtime": os.path.join(base, "runtime"), "log": os.path.join(base, "server.log")}


def enable_nbextensions(config_dir: str, extensions=NBEXTENSIONS) -> str:
    """Lists `extensions` as enabled in `<config_dir>/nbconfig/notebook.json` (other settings of that
    file are kept). Returns the file's path."""
    path = os.path.join(config_dir, "nbconfig", "notebook.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    settings = {}
    if os.path.exists(path):
        with open(path) as f:
            settings = json.load(f)
    settings.setdefault("load_extensions", {}).update({name: True for name in extensions})
    with open(path, "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    return path


def nbextension_dirs(name: str = "tensorflow_model_analysis") -> List[str]:
    """The directories on Jupyter's data path that hold classic-notebook extension `name`."""
    from jupyter_core.paths import jupyter_path

    return [d for d in (os.path.join(p, name) for p in jupyter_path("nbextensions")) if os.path.isdir(d)]


def classic_prefix() -> str:
    """Where nbclassic serves the classic UI: "" (at the root), or "/nbclassic" when Notebook 7 is
    installed beside it (nbclassic.nbclassic_path, without importing nbclassic here: it replaces the
    `notebook` module as a side effect)."""
    from importlib import metadata

    try:
        major = int(metadata.version("notebook").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return ""
    return "/nbclassic" if major >= 7 else ""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (connections closing there do not count, as for
    the server itself, which binds with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def server_env(workspace: str, token: str, base: Optional[Dict[str, str]] = None,
               settings: Optional[Dict[str, object]] = None) -> Dict[str, str]:
    """The server's environment (its kernels inherit it): `base` (default os.environ) with the project
    first on PYTHONPATH, CVRANK_WORKSPACE, CVRANK_SETTINGS (`settings`: where the workspace's runs are
    recorded, when not the defaults), CVRANK_PROJECT_ROOT, the Jupyter directories of `jupyter_dirs` and
    the token."""
    env = dict(os.environ if base is None else base)
    env[sm.SETTINGS_ENV] = json.dumps(dict(settings or {}))
    dirs = jupyter_dirs(workspace)
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != PROJECT_ROOT]
    env.update({"PYTHONPATH": os.pathsep.join([PROJECT_ROOT] + path),
                sm.WORKSPACE_ENV: os.path.abspath(workspace), "CVRANK_PROJECT_ROOT": PROJECT_ROOT,
                "JUPYTER_CONFIG_DIR": dirs["config"], "JUPYTER_DATA_DIR": dirs["data"],
                "JUPYTER_RUNTIME_DIR": dirs["runtime"],
                "JUPYTER_TOKEN": token})
    return env


def server_command(port: int) -> List[str]:
    """JupyterLab on 127.0.0.1:`port` with `notebooks/` as its root, no browser, no other port tried, and
    no extension installs (the runtime is read-only)."""
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.ip={HOST}",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={NOTEBOOK_DIR}",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # the runtime's processes are root inside their own user namespace
    return command


class NotebookServer:
    """A running JupyterLab server started by `start`."""

    def __init__(self, process: subprocess.Popen, port: int, token: str, log_path: str):
        self.process, self.port, self.token, self.log_path = process, port, token, log_path

    def url(self, path: str = "/", with_token: bool = True) -> str:
        return f"http://{HOST}:{self.port}{path}" + (f"?token={self.token}" if with_token else "")

    @property
    def lab_url(self) -> str:
        """The notebook in JupyterLab, with the token."""
        return self.url(f"/lab/tree/{NOTEBOOK}")

    @property
    def classic_url(self) -> str:
        """The notebook in the classic UI (where TFMA's widgets render), with the token."""
        return self.url(f"{classic_prefix()}/notebooks/{NOTEBOOK}")

    def status(self, with_token: bool = True) -> int:
        """The HTTP status of GET /api/status (the token in the Authorization header, or none)."""
        request = urllib.request.Request(self.url("/api/status", with_token=False))
        if with_token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Returns once /api/status answers 200 with the token; raises NotebookServerError when the
        server exits or does not answer within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NotebookServerError(
                    f"the notebook server exited with code {self.process.returncode}; its log: {self.log_path}")
            try:
                if self.status() == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass  # not listening yet
            time.sleep(0.5)
        raise NotebookServerError(f"the notebook server did not answer within {timeout:.0f} s; its log: {self.log_path}")

    def stop(self, timeout: float = 20.0) -> int:
        """Stops the server as Ctrl-C does (SIGINT), then SIGTERM, then SIGKILL, each after `timeout`
        seconds without exit. Returns its exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        return self.process.wait()


def start(workspace: str, port: int = DEFAULT_PORT, token: Optional[str] = None,
          timeout: float = START_TIMEOUT, settings: Optional[Dict[str, object]] = None) -> NotebookServer:
    """Starts JupyterLab for `workspace` on 127.0.0.1:`port` (0: a free port) with token `token`
    (default: a new `secrets.token_hex(24)`), the classic-notebook extensions of NBEXTENSIONS enabled in
    its config directory, and its output appended to `<workspace>/jupyter/server.log`; returns once it
    answers. `settings`: as for `server_env`. Raises NotebookServerError when the port is taken or the server does not come up."""
    workspace = os.path.abspath(workspace)
    port = free_port() if port == 0 else port
    if _port_in_use(port):
        raise NotebookServerError(f"port {port} on {HOST} is in use; choose another with --port (0: any free port)")
    token = token or secrets.token_hex(24)
    dirs = jupyter_dirs(workspace)
    os.makedirs(dirs["runtime"], exist_ok=True)
    enable_nbextensions(dirs["config"])
    log = open(dirs["log"], "a")
    try:
        # stdin is not a terminal: Jupyter then stops on the first SIGINT instead of asking to confirm.
        process = subprocess.Popen(server_command(port), env=server_env(workspace, token, settings=settings),
                                   cwd=NOTEBOOK_DIR,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    server = NotebookServer(process, port, token, dirs["log"])
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


def cli_notebook(args, config) -> int:
    """`cvrank notebook`: starts JupyterLab for the workspace of `config` (a PipelineConfig: workspace,
    metadata_uri, pipeline_name) on 127.0.0.1:`args.port` (None: DEFAULT_PORT; 0: any free port), prints the URLs of
    the sliced-metrics notebook (JupyterLab, and the classic UI where TFMA's widgets render) with the
    token, and serves in the foreground until Ctrl-C (or SIGTERM). Returns 0 when stopped that way, 1
    when the server cannot start, else the server's exit code."""
    workspace = config.workspace
    port = DEFAULT_PORT if args.port is None else int(args.port)
    try:
        server = start(workspace, port, settings=sm.location_settings(config))
    except NotebookServerError as err:
        print(f"cvrank notebook: {err}", file=sys.stderr)
        return 1
    if not nbextension_dirs():
        print("cvrank notebook: TFMA's notebook extension is not installed: its widgets will not render",
              file=sys.stderr)
    print(f"JupyterLab:        {server.lab_url}")
    print(f"classic notebook:  {server.classic_url}  (TFMA's interactive views render here)")
    print(f"workspace {workspace}; notebooks {NOTEBOOK_DIR}; server log {server.log_path}")
    print("Ctrl-C stops the server.", flush=True)

    stopped = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.append(signal.SIGTERM) or server.process.terminate())
    try:
        code = server.process.wait()
    except KeyboardInterrupt:
        stopped.append(signal.SIGINT)
        code = server.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        print("cvrank notebook: server stopped")
        return 0
    return code
