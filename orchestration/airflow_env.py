"""Environment of every Airflow command and service of a workspace: `AIRFLOW_HOME` is `<workspace>/airflow`,
the DAGs are cvrank's `dags/`, and all configuration goes through `AIRFLOW__*` variables (no airflow.cfg
to keep in step). Two deployments:

- local (the default): LocalExecutor, Airflow's database in SQLite (`<AIRFLOW_HOME>/airflow.db`), ML Metadata
  in SQLite under the workspace; SQLite must never see two writers, so node tasks hold the workspace lock
  exclusively while their node runs (they share the pool `TFX_POOL` of a few slots, and take turns).
- cluster (`cluster=True`, what `cvrank airflow up --cluster` runs on 127.0.0.1): CeleryExecutor with Redis
  as the broker, PostgreSQL as Airflow's database, the Celery result backend and ML Metadata.

Secrets (`[api_auth] jwt_secret`, `[api] secret_key`, `[core] fernet_key`) are generated once into
`<AIRFLOW_HOME>/secrets.json` (mode 600), so that every component, started now or later, agrees on them.
The Simple auth manager has one user, `admin`, whose password is generated once into
`<AIRFLOW_HOME>/simple_auth_manager_passwords.json` (mode 600).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from typing import Dict, Optional

from config import PROJECT_ROOT

TFX_POOL = "cvrank_tfx"  # the Airflow pool of the DAGs' TFX node tasks
# With ML Metadata in SQLite the node tasks take the workspace lock exclusively while their node runs
# (orchestration/airflow_tasks.run_node), so SQLite sees one writer at a time however many tasks Airflow
# starts; more than one slot lets the scheduler queue independent tasks together instead of one per loop.
TFX_POOL_SLOTS_SQLITE = 4
TFX_POOL_SLOTS_CLUSTER = 8  # ML Metadata in PostgreSQL: 2 Celery workers x 4 processes
# LocalExecutor starts this many worker processes up front (Airflow's default, 32, took 4 GiB idle); the TFX
# tasks take turns in their one-slot pool anyway.
LOCAL_PARALLELISM = "4"
DEFAULT_API_PORT = 8080
ADMIN_USER = "admin"
SPEC_FILE = "cvrank_dags.json"  # <AIRFLOW_HOME>/cvrank_dags.json: what the DAG files are built from
NODE_SERVER_SOCKET = "node-server.sock"  # <AIRFLOW_HOME>/node-server.sock: orchestration/node_server.py
SECRETS_FILE = "secrets.json"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
CLUSTER_DB_USER = "cvrank"  # the PostgreSQL role owning the `airflow` and `mlmd` databases (trust on 127.0.0.1)
AIRFLOW_DB = "airflow"
MLMD_DB = "mlmd"


def airflow_home(workspace: str) -> str:
    return os.path.join(os.path.abspath(workspace), "airflow")


def node_server_socket(workspace: str) -> str:
    """Where `cvrank airflow up` runs the node server (which launches the node tasks' TFX nodes without
    importing TensorFlow each time): <AIRFLOW_HOME>/node-server.sock, or a path under /tmp (which the
    services share: one namespace) when that one is too long for a Unix socket address."""
    path = os.path.join(airflow_home(workspace), NODE_SERVER_SOCKET)
    if len(os.fsencode(path)) > 100:
        import hashlib

        path = f"/tmp/cvrank-node-server-{hashlib.sha256(path.encode()).hexdigest()[:12]}.sock"
    return path


def tfx_pool_slots(cluster: bool) -> int:
    return TFX_POOL_SLOTS_CLUSTER if cluster else TFX_POOL_SLOTS_SQLITE


def postgres_url(port: int, database: str, driver: str = "postgresql") -> str:
    """`postgresql://cvrank@127.0.0.1:PORT/DATABASE` of the local cluster's PostgreSQL (`driver` e.g.
    'postgresql+psycopg2' for SQLAlchemy, 'db+postgresql+psycopg2' for Celery's result backend)."""
    return f"{driver}://{CLUSTER_DB_USER}@127.0.0.1:{port}/{database}"


def airflow_environ(workspace: str, cluster: bool = False, api_port: int = DEFAULT_API_PORT,
                    postgres_port: Optional[int] = None, redis_port: Optional[int] = None) -> Dict[str, str]:
    """A copy of os.environ set up so `airflow` uses `<workspace>/airflow` and cvrank's DAGs: the local
    deployment by default; with `cluster`, the local cluster's PostgreSQL and Redis on 127.0.0.1 at
    `postgres_port` and `redis_port` (both required). `api_port` is the API server's port on 127.0.0.1, which
    the workers' execution API URL points at. Creates AIRFLOW_HOME, its secrets and the admin's password
    file when missing."""
    env = dict(os.environ)
    home = airflow_home(workspace)
    os.makedirs(home, exist_ok=True)
    keys = _secrets(home)
    api = f"http://127.0.0.1:{api_port}"
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(PROJECT_ROOT, "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # A new user meets an active DAG (a paused one queues triggered runs and never starts them).
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__FERNET_KEY=keys["fernet_key"],
        AIRFLOW__API__SECRET_KEY=keys["secret_key"],
        AIRFLOW__API_AUTH__JWT_SECRET=keys["jwt_secret"],
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(api_port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{api}/execution/",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN_USER}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=_password_file(home),
        CVRANK_AIRFLOW_SPEC=os.path.join(home, SPEC_FILE),
        CVRANK_NODE_SERVER=node_server_socket(workspace),
        CVRANK_TFX_PYTHON=env.get("CVRANK_TFX_PYTHON", "/opt/cvrank/tfx/bin/python"),
    )
    if cluster:
        if not postgres_port or not redis_port:
            raise ValueError("the cluster environment needs postgres_port and redis_port")
        env.update(
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgres_url(postgres_port, AIRFLOW_DB, "postgresql+psycopg2"),
            AIRFLOW__CELERY__BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            AIRFLOW__CELERY__RESULT_BACKEND=postgres_url(postgres_port, AIRFLOW_DB, "db+postgresql+psycopg2"),
        )
    else:
        env.setdefault("AIRFLOW__CORE__PARALLELISM", LOCAL_PARALLELISM)
        # An idle scheduler loop polls the executor for finished tasks this often: the latency each task of a
        # DAG run adds (Airflow's default, 1 s, doubles a fully cached run).
        env.setdefault("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "0.2")
        env.update(
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{os.path.join(home, 'airflow.db')}",
        )
        for key in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND"):
            env.pop(key, None)
    return env


def admin_password(workspace: str) -> str:
    """The password of Airflow's `admin` user for this workspace (generated on first use)."""
    home = airflow_home(workspace)
    os.makedirs(home, exist_ok=True)
    with open(_password_file(home)) as f:
        return json.load(f)[ADMIN_USER]


def _password_file(home: str) -> str:
    """<home>/simple_auth_manager_passwords.json, created with a random admin password when missing (Airflow
    adds users missing from it, and keeps the ones there)."""
    path = os.path.join(home, PASSWORDS_FILE)
    alphabet = "abcdefghkmnpqrstuvwxyzABCDEFGHKMNPQRSTUVWXYZ23456789"  # Airflow's own: nothing ambiguous
    _create_once(path, lambda: {ADMIN_USER: "".join(secrets.choice(alphabet) for _ in range(16))})
    return path


def _secrets(home: str) -> Dict[str, str]:
    path = os.path.join(home, SECRETS_FILE)
    _create_once(path, lambda: {
        "jwt_secret": secrets.token_urlsafe(48),
        "secret_key": secrets.token_urlsafe(48),
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),  # a Fernet key: 32 bytes, base64
    })
    with open(path) as f:
        return json.load(f)


def _create_once(path: str, make) -> None:
    """Writes JSON `make()` to `path` (mode 600) unless it exists; of concurrent writers the first wins and
    everyone reads its document (the file appears whole: written aside, then hard-linked into place)."""
    if os.path.exists(path):
        return
    temp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(make(), f)
            f.write("\n")
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)
