"""Starting and stopping cvrank's Airflow supervisor in tests. The tests run inside the runtime already, so
they start the supervisor as a subprocess (`python -m orchestration.airflow_services supervise ...`), as
bin/cvrank does on the host in a namespace of its own, and stop it themselves, even when a test fails."""

import os
import signal
import subprocess
import sys
import time

from config import PROJECT_ROOT
from orchestration import airflow_services as services

START_TIMEOUT = 900  # 2 cores, other tests beside
CLI = [sys.executable, "-m", "cvrank.cli"]


def supervise(workspace, *options):
    """Starts the supervisor of `workspace` (its output in supervisor-test.log); returns (process, launch id)."""
    log = open(os.path.join(workspace, "supervisor-test.log"), "ab")
    launch_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, "-m", "orchestration.airflow_services", "supervise", "--workspace",
                             str(workspace), "--launch-id", launch_id, *options],
                            cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    return proc, launch_id


def tree(pid):
    """{pid: start time} of `pid` and every process below it (the start time tells a reused pid apart)."""
    found = {}
    for p in [pid] + services._descendants(pid):
        started = start_time(p)
        if started is not None:
            found[p] = started
    return found


def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def still_running(processes):
    """The pids of `processes` ({pid: start time}) that are still those processes."""
    return {p for p, started in processes.items() if start_time(p) == started}


def stop(workspace, proc):
    """Whatever happened in the test: the supervisor and everything below it end."""
    processes = tree(proc.pid) if proc.poll() is None else {}
    if proc.poll() is None:
        services.request_stop(workspace)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for pid in still_running(processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(workspace, *options):
    """Starts the supervisor and waits until Airflow is up; returns (process, services document)."""
    proc, launch_id = supervise(workspace, *options)
    try:
        doc = services.wait_until_started(str(workspace), launch_id, timeout=START_TIMEOUT)
    except BaseException:
        stop(workspace, proc)
        print(services.log_tail(os.path.join(workspace, "supervisor-test.log"), 60))
        raise
    return proc, doc


