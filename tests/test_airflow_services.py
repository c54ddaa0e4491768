"""Airflow's processes under cvrank's supervisor (orchestration/airflow_services.py), real processes on
127.0.0.1: up answers (health, login token, the DAG), `up` again starts nothing, status lists the services,
down stops every process it started and frees the port and the lock; the cluster (PostgreSQL, Redis, two
Celery workers) likewise. These tests run inside the runtime already, so they start the supervisor as a
subprocess (`python -m orchestration.airflow_services supervise ...`), as bin/cvrank does on the host in a
namespace of its own, and stop it themselves, even when a test fails."""

import json
import os
import socket
import stat
import subprocess
import time
import urllib.request

import pytest

from config import PROJECT_ROOT, PipelineConfig
from orchestration import airflow_env
from orchestration import airflow_services as services
from tests.airflow_support import CLI, start, still_running, stop, supervise, tree

def _get(url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
        return response.status, json.load(response)


def _cli(*args, timeout=300):
    return subprocess.run([*CLI, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)


def _pg_bin(name):
    import glob

    return sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1]


def _listening_addresses(pids):
    """The local addresses of the listening TCP sockets the processes `pids` hold."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            pass
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    if family == 4:
                        host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
                    else:
                        raw = bytes.fromhex(address)
                        host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                    found.append((host, int(port, 16)))
    return found


# ---------------------------------------------------------------------------------------------------------
# The environment.

def test_environ_secrets_are_generated_once_and_private(tmp_path):
    first = airflow_env.airflow_environ(str(tmp_path))
    second = airflow_env.airflow_environ(str(tmp_path), api_port=9999)
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert first[key] and first[key] == second[key]
    home = tmp_path / "airflow"
    for name in (airflow_env.SECRETS_FILE, airflow_env.PASSWORDS_FILE):
        assert stat.S_IMODE(os.stat(home / name).st_mode) == 0o600
    assert second["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:9999/execution/"
    assert first["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert first["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home}/airflow.db"
    assert first["CVRANK_AIRFLOW_SPEC"] == str(home / airflow_env.SPEC_FILE)
    assert first["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert services.credentials(str(tmp_path)) == ("admin", json.loads((home / airflow_env.PASSWORDS_FILE).read_text())["admin"])


def test_cluster_environ_points_at_postgres_and_redis(tmp_path):
    env = airflow_env.airflow_environ(str(tmp_path), cluster=True, postgres_port=5999, redis_port=6999)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://cvrank@127.0.0.1:5999/airflow"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6999/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://cvrank@127.0.0.1:5999/airflow"
    with pytest.raises(ValueError):
        airflow_env.airflow_environ(str(tmp_path), cluster=True)


def test_not_running(tmp_path):
    workspace = str(tmp_path)
    assert not services.supervisor_alive(workspace) and not services.is_up(workspace)
    with pytest.raises(services.AirflowNotRunning, match="bin/cvrank airflow up"):
        services.ensure_up(workspace, timeout=1)
    result = _cli("airflow", "status", "--workspace", workspace)
    assert result.returncode == 3 and "not running" in result.stdout
    result = _cli("airflow", "up", "--workspace", workspace)  # inside the runtime, without bin/cvrank's launch
    assert result.returncode == 2 and "bin/cvrank airflow up" in result.stderr
    assert _cli("airflow", "down", "--workspace", workspace).returncode == 0


def test_compile_writes_the_spec_of_a_deployment(tmp_path):
    output = tmp_path / "deploy" / "cvrank_dags.json"
    uri = "postgresql://cvrank@pg.example:5432/mlmd"
    result = _cli("airflow", "compile", "--set", "workspace=/shared/cvrank", "--set", f"metadata_uri={uri}",
                  "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert f"wrote {output}" in result.stdout and result.stderr == ""
    spec = json.loads(output.read_text())
    assert spec["settings"] == {"workspace": "/shared/cvrank", "metadata_uri": uri}
    assert spec["pool"] == airflow_env.TFX_POOL and spec["dags"]["cvrank"]["nodes"]
    bad = _cli("airflow", "compile", "--set", "epochz=3", "--output", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "unknown setting 'epochz'" in bad.stderr
    assert not (tmp_path / "bad.json").exists()
    # A password would be shown by the spec, each run's IR and Airflow's trigger form: refused.
    secret = _cli("airflow", "compile", "--set", "metadata_uri=postgresql://cvrank:secret@pg.example/mlmd",
                  "--output", str(tmp_path / "secret.json"))
    assert secret.returncode == 2 and "must not hold a password" in secret.stderr and "secret" not in secret.stdout
    assert not (tmp_path / "secret.json").exists()


# ---------------------------------------------------------------------------------------------------------
# The local deployment: LocalExecutor, SQLite. One start for the tests below; the last one stops it.

@pytest.fixture(scope="module")
def local(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("airflow-local")
    started = time.monotonic()
    proc, doc = start(workspace, "--port", "0")
    print(f"local up in {time.monotonic() - started:.1f} s")
    yield workspace, proc, doc
    stop(workspace, proc)


def test_local_up_answers(local):
    workspace, proc, doc = local
    ws = str(workspace)
    assert doc["state"] == "running" and doc["mode"] == "local" and not doc["warnings"]
    assert doc["api_port"] not in (0, 8080) and doc["api_url"] == f"http://127.0.0.1:{doc['api_port']}"
    assert services.is_up(ws) and services.api_url(ws) == doc["api_url"]
    assert services.ensure_up(ws, timeout=5)["launch_id"] == doc["launch_id"]
    assert sorted(doc["services"]) == ["api-server", "dag-processor", "node-server", "scheduler", "triggerer"]
    for svc in doc["services"].values():
        assert svc["state"] == "running"
        os.kill(svc["pid"], 0)  # alive
        assert os.path.exists(svc["log"])
    code, health = _get(doc["api_url"] + "/api/v2/monitor/health")
    assert code == 200 and {v["status"] for v in health.values()} == {"healthy"}, health
    token = services.access_token(ws)  # POST /auth/token with the admin's user name and password
    code, dag = _get(doc["api_url"] + "/api/v2/dags/cvrank", token)
    assert code == 200 and dag["dag_id"] == "cvrank" and dag["is_paused"] is False
    code, pools = _get(doc["api_url"] + f"/api/v2/pools/{airflow_env.TFX_POOL}", token)
    assert code == 200 and pools["slots"] == airflow_env.TFX_POOL_SLOTS_SQLITE
    assert services.deployment_settings(ws) == {"workspace": ws}
    assert services.deployment_config(ws).workspace == ws
    assert os.path.exists(doc["services"]["api-server"]["log"])
    spec = json.load(open(airflow_env.airflow_environ(ws)["CVRANK_AIRFLOW_SPEC"]))
    assert spec["dags"]["cvrank"]["nodes"], "the DAG spec was written before the DAG processor started"


def test_node_server_answers(local):
    """The node tasks' node server runs at $CVRANK_NODE_SERVER of the deployment's environment."""
    from orchestration import node_client

    workspace, proc, doc = local
    socket_path = services.environ(str(workspace))["CVRANK_NODE_SERVER"]
    deadline = time.monotonic() + 300  # it imports TensorFlow, Beam and TFX first
    while not node_client.server_available(socket_path) and time.monotonic() < deadline:
        time.sleep(1)
    assert node_client.ping(socket_path)["pid"] == doc["services"]["node-server"]["pid"]


def test_listens_on_localhost_only(local):
    workspace, proc, doc = local
    addresses = _listening_addresses(tree(proc.pid))
    assert ("127.0.0.1", doc["api_port"]) in addresses
    assert {host for host, _ in addresses} == {"127.0.0.1"}, addresses


def test_up_again_starts_nothing(local):
    workspace, proc, doc = local
    second, _ = supervise(workspace, "--port", "0")
    assert second.wait(timeout=120) == 3  # the lock is held: it exits at once
    now = services.read_services(str(workspace))
    assert now["launch_id"] == doc["launch_id"]
    assert {n: s["pid"] for n, s in now["services"].items()} == {n: s["pid"] for n, s in doc["services"].items()}
    result = _cli("airflow", "up", "--workspace", str(workspace))  # what bin/cvrank runs when one is up
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout and doc["api_url"] in result.stdout
    assert services.read_services(str(workspace))["launch_id"] == doc["launch_id"]


def test_status_lists_the_services(local):
    workspace, proc, doc = local
    result = _cli("airflow", "status", "--workspace", str(workspace))
    assert result.returncode == 0, result.stderr
    for name, svc in doc["services"].items():
        assert any(line.split()[:3] == [name, str(svc["pid"]), "running"] for line in result.stdout.splitlines()), \
            result.stdout
    assert doc["api_url"] in result.stdout and services.credentials(str(workspace))[1] in result.stdout
    as_json = _cli("airflow", "status", "--workspace", str(workspace), "--json")
    assert json.loads(as_json.stdout)["services"].keys() == doc["services"].keys()


def _down(workspace, proc, ports):
    """`cvrank airflow down`: it succeeds, the supervisor exits 0, none of the processes below it is left,
    the lock and `ports` are free. Returns the processes ({pid: start time}) there were."""
    processes = tree(proc.pid)
    started = time.monotonic()
    result = _cli("airflow", "down", "--workspace", workspace)
    print(f"down in {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert proc.wait(timeout=30) == 0
    assert not still_running(processes)
    assert not services.supervisor_alive(workspace)
    for port in ports:
        assert services.port_is_free(port)
    return processes


def test_down_stops_everything(local):
    workspace, proc, doc = local
    ws = str(workspace)
    processes = _down(ws, proc, [doc["api_port"]])
    assert len(processes) > len(doc["services"])
    assert not services.is_up(ws)
    final = services.read_services(ws)
    assert final["state"] == "stopped" and {s["state"] for s in final["services"].values()} == {"stopped"}
    assert "not running" in _cli("airflow", "status", "--workspace", ws).stdout


def test_switching_to_the_cluster_is_refused(local):
    workspace, proc, doc = local
    assert proc.poll() is not None  # after down
    second, launch_id = supervise(workspace, "--cluster", "--port", "0")
    assert second.wait(timeout=120) == 1
    final = services.read_services(str(workspace))
    assert final["launch_id"] == launch_id and final["state"] == "failed"
    assert "was set up for the local deployment" in final["error"] and "another --workspace" in final["error"]
    assert not final["services"]  # nothing was started


# ---------------------------------------------------------------------------------------------------------
# The local scale-out cluster: PostgreSQL, Redis, CeleryExecutor with two Celery workers.

@pytest.mark.slow
def test_cluster_up_and_down(tmp_path):
    workspace = str(tmp_path)
    started = time.monotonic()
    proc, doc = start(workspace, "--cluster", "--port", "0")
    try:
        print(f"cluster up in {time.monotonic() - started:.1f} s")
        assert doc["state"] == "running" and doc["mode"] == "cluster" and not doc["warnings"], doc
        names = {"postgres", "redis", "celery-worker1", "celery-worker2", "node-server", "api-server", "scheduler",
                 "dag-processor", "triggerer"}
        assert set(doc["services"]) == names
        for svc in doc["services"].values():
            os.kill(svc["pid"], 0)
        pg, redis = doc["postgres_port"], doc["redis_port"]
        assert doc["metadata_uri"] == f"postgresql://cvrank@127.0.0.1:{pg}/mlmd"
        assert services.deployment_settings(workspace) == {"workspace": workspace, "metadata_uri": doc["metadata_uri"]}
        assert {host for host, _ in _listening_addresses(tree(proc.pid))} == {"127.0.0.1"}

        psql = subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(pg), "-U", "cvrank", "-d", "mlmd", "-tAc",
                               "SELECT current_user, current_database()"], capture_output=True, text=True, timeout=60)
        assert psql.returncode == 0 and psql.stdout.strip() == "cvrank|mlmd", psql.stderr
        psycopg = subprocess.run(["/opt/cvrank/airflow/bin/python", "-c",
                                  f"import psycopg2; c = psycopg2.connect(host='127.0.0.1', port={pg}, user='cvrank', "
                                  "dbname='airflow'); print(c.cursor().execute('SELECT 1') or 'ok')"],
                                 capture_output=True, text=True, timeout=60)
        assert psycopg.returncode == 0 and psycopg.stdout.strip() == "ok", psycopg.stderr
        # ML Metadata itself on that database.
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        store = metadata_store.MetadataStore(PipelineConfig(metadata_uri=doc["metadata_uri"]).metadata_connection())
        store.put_artifact_type(metadata_store_pb2.ArtifactType(name="CvrankProbe"))
        assert store.get_artifact_type("CvrankProbe").name == "CvrankProbe"
        assert services._redis_ping(redis)

        # Both Celery workers answer.
        ping = subprocess.run(["/opt/cvrank/airflow/bin/celery", "--app", "airflow.providers.celery.executors.celery_executor.app",
                               "inspect", "ping", "--timeout", "10"], env=services.environ(workspace),
                              capture_output=True, text=True, timeout=180)
        assert "worker1@" in ping.stdout and "worker2@" in ping.stdout, ping.stdout + ping.stderr
        token = services.access_token(workspace)
        assert _get(doc["api_url"] + "/api/v2/dags/cvrank", token)[1]["dag_id"] == "cvrank"
        assert _get(doc["api_url"] + f"/api/v2/pools/{airflow_env.TFX_POOL}", token)[1]["slots"] == airflow_env.TFX_POOL_SLOTS_CLUSTER

        _down(workspace, proc, [doc["api_port"], pg, redis])

        # Up again: the same PostgreSQL cluster (no initdb), its ports when still free, ML Metadata kept.
        started = time.monotonic()
        proc, again = start(workspace, "--cluster", "--port", "0")
        print(f"cluster up again in {time.monotonic() - started:.1f} s")
        assert again["state"] == "running" and again["postgres_port"] == pg and again["redis_port"] == redis
        store = metadata_store.MetadataStore(PipelineConfig(metadata_uri=again["metadata_uri"]).metadata_connection())
        assert store.get_artifact_type("CvrankProbe").name == "CvrankProbe"
    finally:
        stop(workspace, proc)
    assert not services.supervisor_alive(workspace)
