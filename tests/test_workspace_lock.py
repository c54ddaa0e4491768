"""The workspace lock between real processes: a second writer is refused with the holder's pid and run
id, waits for the holder when asked to, and takes a lock whose holder was killed at once; shared holders
coexist, keep one record each, and keep exclusive writers out until the last one ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from config import PROJECT_ROOT
from orchestration.workspace_lock import (WorkspaceBusy, WorkspaceLock, holders_dir, lock_path, read_holder,
                                          read_holders)
from tests.lock_support import lock_holders


@pytest.fixture
def holder_process(tmp_path):
    with lock_holders() as start:
        yield lambda run_id="20261123T101500.000000Z", pipeline="cvrank", shared=False, task=("", ""): start(
            tmp_path / "ws", pipeline, run_id, shared, *task)


def test_a_second_writer_is_refused_naming_the_holder(holder_process, tmp_path):
    workspace = str(tmp_path / "ws")
    proc = holder_process("20261123T101500.000000Z")
    t0 = time.monotonic()
    with pytest.raises(WorkspaceBusy) as raised:
        WorkspaceLock(workspace, "cvrank", "20261123T101600.000000Z").acquire()
    assert time.monotonic() - t0 < 5  # refused at once, not after waiting
    busy = raised.value
    message = str(busy)
    assert message.startswith(f"workspace {workspace} is in use by run 20261123T101500.000000Z (pid {proc.pid}, "
                              "started "), message
    assert message.endswith(" s ago); wait for it with --wait, or stop it"), message
    assert busy.holder.pid == proc.pid and busy.holder.holder == "20261123T101500.000000Z"
    assert busy.lock_path == lock_path(workspace, "cvrank") == os.path.join(workspace, "locks", "cvrank.lock")
    # The refused writer left the holder's record as it was.
    assert read_holder(workspace, "cvrank").pid == proc.pid


def test_a_second_process_is_refused_too_and_says_why(holder_process, tmp_path):
    proc = holder_process()
    refused = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        from orchestration.workspace_lock import WorkspaceBusy, WorkspaceLock
        try:
            WorkspaceLock(sys.argv[1], "cvrank", "second").acquire()
        except WorkspaceBusy as err:
            sys.exit(f"cvrank: {err}")
    """), str(tmp_path / "ws")], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PROJECT_ROOT},
        timeout=60)
    assert refused.returncode == 1
    assert f"in use by run 20261123T101500.000000Z (pid {proc.pid}, started " in refused.stderr, refused.stderr


def test_other_pipelines_of_the_workspace_are_not_locked(holder_process, tmp_path):
    holder_process(pipeline="cvrank")
    with WorkspaceLock(str(tmp_path / "ws"), "cvrank-smoke", "other") as lock:
        assert lock.held


def test_waiting_writer_gets_the_lock_once_the_holder_releases(holder_process, tmp_path):
    workspace = str(tmp_path / "ws")
    proc = holder_process()
    told = []

    def on_wait(busy):
        told.append(str(busy.description))
        proc.stdin.close()  # the holder finishes while we wait

    t0 = time.monotonic()
    with WorkspaceLock(workspace, "cvrank", "20261123T101600.000000Z", wait=True, timeout=60, on_wait=on_wait):
        assert time.monotonic() - t0 < 30
        holder = read_holder(workspace, "cvrank")
        assert (holder.pid, holder.holder) == (os.getpid(), "20261123T101600.000000Z")
    assert len(told) == 1 and f"(pid {proc.pid}, started " in told[0], told
    assert proc.wait(timeout=30) == 0 and proc.stdout.read() == "released\n"
    assert read_holder(workspace, "cvrank") is None  # released: the record is cleared


def test_waiting_gives_up_after_the_timeout(holder_process, tmp_path):
    proc = holder_process()
    t0 = time.monotonic()
    with pytest.raises(WorkspaceBusy) as raised:
        WorkspaceLock(str(tmp_path / "ws"), "cvrank", "late", wait=True, timeout=0.5, on_wait=lambda b: None).acquire()
    assert 0.5 <= time.monotonic() - t0 < 10
    assert raised.value.waited >= 0.5
    assert f"in use by run 20261123T101500.000000Z (pid {proc.pid}, " in str(raised.value)
    assert f"; still in use after waiting {raised.value.waited:.1f} s" in str(raised.value)


def test_a_killed_holder_leaves_a_lock_the_next_writer_takes_at_once(holder_process, tmp_path):
    workspace = str(tmp_path / "ws")
    proc = holder_process("20261123T101500.000000Z")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stale = read_holder(workspace, "cvrank")
    assert stale.pid == proc.pid  # the dead holder's record is still there, but the lock is free
    t0 = time.monotonic()
    with WorkspaceLock(workspace, "cvrank", "20261123T101700.000000Z") as lock:
        assert time.monotonic() - t0 < 1
        record = json.loads(open(lock.path).read())
        assert record["pid"] == os.getpid() and record["holder"] == "20261123T101700.000000Z"
        assert set(record) == {"pid", "holder", "host", "started"}


def test_a_description_with_spaces_names_the_holder_as_is(tmp_path):
    workspace = str(tmp_path / "ws")
    with WorkspaceLock(workspace, "cvrank", "cvrank gc"):
        with pytest.raises(WorkspaceBusy, match=r"is in use by cvrank gc \(pid \d+, started "):
            WorkspaceLock(workspace, "cvrank", "other").acquire()  # the same process, another open file


def test_release_lets_the_same_process_lock_again(tmp_path):
    lock = WorkspaceLock(str(tmp_path / "ws"), "cvrank", "a")
    with lock:
        pass
    assert not lock.held
    with lock:
        assert lock.held


# -- shared holders ----------------------------------------------------------------------------------------


def test_shared_holders_coexist_and_an_exclusive_writer_waits_for_both(holder_process, tmp_path):
    workspace = str(tmp_path / "ws")
    first = holder_process("run A, task FileCheck", shared=True, task=("A", "FileCheck"))
    second = holder_process("run A, task Transform", shared=True, task=("A", "Transform"))  # not refused
    with WorkspaceLock(workspace, "cvrank", "run A, task Pusher", shared=True) as third:  # a third one too
        assert {(h.pid, h.node_id) for h in third.other_holders()} == {(first.pid, "FileCheck"),
                                                                       (second.pid, "Transform")}
    holders = read_holders(workspace, "cvrank")
    assert [(h.pid, h.holder, h.shared, h.run_id, h.node_id) for h in holders] == [
        (first.pid, "run A, task FileCheck", True, "A", "FileCheck"),
        (second.pid, "run A, task Transform", True, "A", "Transform")]
    assert len(os.listdir(holders_dir(workspace, "cvrank"))) == 2  # one record per holder: the third's is gone

    # An exclusive writer is refused at once, naming a holder (the oldest) and counting the other.
    t0 = time.monotonic()
    with pytest.raises(WorkspaceBusy) as raised:
        WorkspaceLock(workspace, "cvrank", "cvrank gc").acquire()
    assert time.monotonic() - t0 < 5
    assert str(raised.value).startswith(f"workspace {workspace} is in use by run A, task FileCheck (pid {first.pid}, "
                                        "started "), str(raised.value)
    assert " and 1 more sharing it; wait for it with --wait, or stop it" in str(raised.value)
    assert [h.pid for h in raised.value.holders] == [first.pid, second.pid]

    # Waiting, it gets the lock only once both have released it.
    acquired, told = [], []
    waiter = WorkspaceLock(workspace, "cvrank", "20261123T101600.000000Z", wait=True, timeout=60,
                           on_wait=lambda busy: told.append(busy.description))

    def wait_for_lock():
        waiter.acquire()
        acquired.append(time.monotonic())

    thread = threading.Thread(target=wait_for_lock, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not told and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(told) == 1 and "run A, task FileCheck" in told[0] and "1 more sharing it" in told[0], told
    first.stdin.close()
    assert first.wait(timeout=30) == 0
    time.sleep(1.0)  # several polls while the second holder still holds the lock
    assert not acquired
    released_at = time.monotonic()
    second.stdin.close()
    thread.join(timeout=30)
    try:
        assert acquired and acquired[0] >= released_at
        assert len(told) == 1, told
        assert read_holder(workspace, "cvrank").holder == "20261123T101600.000000Z"
        assert read_holders(workspace, "cvrank") == [read_holder(workspace, "cvrank")]
    finally:
        waiter.release()


def test_a_shared_writer_is_refused_by_an_exclusive_holder(holder_process, tmp_path):
    proc = holder_process("20261123T101500.000000Z")
    with pytest.raises(WorkspaceBusy, match=rf"in use by run 20261123T101500.000000Z \(pid {proc.pid}, started "):
        WorkspaceLock(str(tmp_path / "ws"), "cvrank", "run B, task Pusher", shared=True).acquire()


def test_a_killed_shared_holder_leaves_no_live_record(holder_process, tmp_path):
    workspace = str(tmp_path / "ws")
    killed = holder_process("run A, task Transform", shared=True, task=("A", "Transform"))
    alive = holder_process("run A, task FileCheck", shared=True, task=("A", "FileCheck"))
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    # The dead holder's record is left behind but not locked: it counts for nothing (and readers remove it).
    assert [h.pid for h in read_holders(workspace, "cvrank")] == [alive.pid]
    with WorkspaceLock(workspace, "cvrank", "run A, task Pusher", shared=True) as lock:
        assert [h.pid for h in lock.other_holders()] == [alive.pid]
    with pytest.raises(WorkspaceBusy) as raised:
        WorkspaceLock(workspace, "cvrank", "other").acquire()
    assert [h.pid for h in raised.value.holders] == [alive.pid]

    os.kill(alive.pid, signal.SIGKILL)
    alive.wait(timeout=30)
    t0 = time.monotonic()
    with WorkspaceLock(workspace, "cvrank", "20261123T101700.000000Z"):  # exclusive, at once
        assert time.monotonic() - t0 < 1
        assert os.listdir(holders_dir(workspace, "cvrank")) == []  # the exclusive holder cleared dead records
        record = json.loads(open(lock_path(workspace, "cvrank")).read())
        assert set(record) == {"pid", "holder", "host", "started"}


def test_a_shared_holder_clears_a_dead_exclusive_holders_record(holder_process, tmp_path):
    workspace = str(tmp_path / "ws")
    proc = holder_process("20261123T101500.000000Z")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert read_holder(workspace, "cvrank").pid == proc.pid  # stale, but the lock is free
    with WorkspaceLock(workspace, "cvrank", "run A, task FileCheck", shared=True, run_id="A", node_id="FileCheck"):
        [holder] = read_holders(workspace, "cvrank")
        assert (holder.pid, holder.shared, holder.run_id, holder.node_id) == (os.getpid(), True, "A", "FileCheck")
    assert read_holders(workspace, "cvrank") == []
