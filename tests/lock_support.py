"""Processes that hold a workspace lock for a test: `lock_holders()` yields `start(workspace, pipeline,
holder, shared=False, run_id="", node_id="")`, which starts one, returns once it holds the lock, and keeps
it until its stdin closes (or it is killed); every process started is ended when the context exits."""

import contextlib
import os
import subprocess
import sys
import textwrap

from config import PROJECT_ROOT

# Takes the lock of argv[2] in workspace argv[1] as holder argv[3] (shared when argv[4] is "shared",
# recording run id argv[5] and node id argv[6]), says so, holds it until stdin closes, says it released it.
HOLDER = textwrap.dedent("""
    import sys
    from orchestration.workspace_lock import WorkspaceLock
    shared = sys.argv[4] == "shared"
    with WorkspaceLock(sys.argv[1], sys.argv[2], sys.argv[3], shared=shared, run_id=sys.argv[5] or None,
                       node_id=sys.argv[6] or None):
        print("locked", flush=True)
        sys.stdin.read()
    print("released", flush=True)
""")


@contextlib.contextmanager
def lock_holders():
    started = []

    def start(workspace, pipeline, holder, shared=False, run_id="", node_id=""):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workspace), pipeline, holder,
                                 "shared" if shared else "exclusive", run_id, node_id],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": PROJECT_ROOT})
        started.append(proc)
        assert proc.stdout.readline() == "locked\n"
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
