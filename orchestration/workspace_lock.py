"""One writer per workspace and pipeline.

Everything a run writes (`pipelines/<name>/`, `metadata/<name>.sqlite`, `serving/<name>/`) belongs to one
pipeline name, so runs, garbage collection and Airflow tasks of one pipeline take the lock
`<workspace>/locks/<name>.lock` for as long as they write. It is an `fcntl.flock` lock: the kernel drops it
when its holder's process ends, however it ends, so a lock left by a killed process is simply free. The
file holds a record of its holder (pid, run id, host, start time), rewritten on every acquisition and
cleared on release, so a refused writer can say who is writing.

The lock belongs to the open file, not the process: a second `WorkspaceLock` in the same process is
refused like any other writer, and a child forked (not exec'd) while the lock is held keeps holding it
after the parent ends.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"
POLL_SECONDS = 0.2  # how often a waiting writer tries again
_RECORD_BYTES = 4096  # a holder record is one short JSON line
# A lock is briefly held without a record (just taken, or being released): how long a refused writer
# keeps trying to learn who holds it before naming no one.
_UNKNOWN_HOLDER_SECONDS = 1.0
DEFAULT_HINT = "wait for it with --wait, or stop it"


def lock_path(workspace: str, pipeline_name: str) -> str:
    """The lock file of pipeline `pipeline_name` in `workspace`."""
    return os.path.join(os.path.abspath(workspace), LOCKS_DIR, f"{pipeline_name}.lock")


@dataclass(frozen=True)
class LockHolder:
    """Who holds a workspace lock: `holder` is what the writer called itself (a run id, or a description
    such as 'cvrank gc'), `started` the time it took the lock (seconds since the epoch)."""

    pid: int
    holder: str
    host: str
    started: float

    def describe(self, now: Optional[float] = None) -> str:
        """'run 20261123T101500Z (pid 4242, started 10:15:00, 2 min ago)': a holder without spaces is a run
        id; the host is named when it is not this one."""
        now = time.time() if now is None else now
        who = self.holder if any(c.isspace() for c in self.holder) else f"run {self.holder}"
        pid = f"pid {self.pid}" + ("" if self.host == socket.gethostname() else f" on host {self.host}")
        return f"{who} ({pid}, started {_clock(self.started, now)}, {_ago(now - self.started)})"


def _clock(t: float, now: float) -> str:
    when, today = datetime.datetime.fromtimestamp(t), datetime.datetime.fromtimestamp(now)
    return when.strftime("%H:%M:%S" if when.date() == today.date() else "%Y-%m-%d %H:%M:%S")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


def _parse_record(data: bytes) -> Optional[LockHolder]:
    # The first line is the record; anything after it is the tail of a longer, older record.
    try:
        record = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
        return LockHolder(int(record["pid"]), str(record["holder"]), str(record["host"]), float(record["started"]))
    except (ValueError, KeyError, TypeError):
        return None


def read_holder(workspace: str, pipeline_name: str) -> Optional[LockHolder]:
    """The record of the last writer that took the lock of `pipeline_name` in `workspace` and has not
    released it, or None (no lock file, no record). The record alone does not say the lock is held: a
    writer killed without releasing leaves its record behind."""
    try:
        with open(lock_path(workspace, pipeline_name), "rb") as f:
            return _parse_record(f.read(_RECORD_BYTES))
    except FileNotFoundError:
        return None


class WorkspaceBusy(RuntimeError):
    """The workspace lock is held by another writer: `holder` (a LockHolder, or None when its record could
    not be read), `waited` (seconds waited before giving up, None when not waiting). `description` says
    who holds the workspace; str() adds what to do (the lock's `hint`) or how long it waited."""

    def __init__(self, workspace: str, pipeline_name: str, path: str, holder: Optional[LockHolder],
                 waited: Optional[float] = None, hint: str = DEFAULT_HINT):
        self.workspace = workspace
        self.pipeline_name = pipeline_name
        self.lock_path = path
        self.holder = holder
        self.waited = waited
        who = holder.describe() if holder is not None else f"another process (lock file {path})"
        self.description = f"workspace {workspace} is in use by {who}"
        tail = hint if waited is None else f"still in use after waiting {waited:.1f} s"
        super().__init__(f"{self.description}; {tail}")


class WorkspaceLock:
    """The one-writer lock of pipeline `pipeline_name` in `workspace`, as a context manager (or
    `acquire()` / `release()`). `holder` names the writer in the lock's record and in other writers'
    messages: a run id, or a description with spaces (e.g. 'cvrank gc').

    Without `wait`, acquiring a held lock raises WorkspaceBusy at once. With `wait`, it tries again every
    POLL_SECONDS until the lock is free, for at most `timeout` seconds (None: no limit) and then raises
    WorkspaceBusy; when it starts waiting it calls `on_wait` once with a WorkspaceBusy describing the
    holder (not raised), or logs that description when there is no `on_wait`. A lock whose holder died
    is free: it is taken at once. `hint` ends the refusal message."""

    def __init__(self, workspace: str, pipeline_name: str, holder: str, wait: bool = False,
                 timeout: Optional[float] = None, on_wait: Optional[Callable[[WorkspaceBusy], None]] = None,
                 hint: str = DEFAULT_HINT):
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, not {timeout}")
        self.workspace = os.path.abspath(workspace)
        self.pipeline_name = pipeline_name
        self.path = lock_path(workspace, pipeline_name)
        self.holder = holder
        self.wait = wait
        self.timeout = timeout
        self.on_wait = on_wait
        self.hint = hint
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> "WorkspaceLock":
        """Takes the lock and writes this writer's record into the lock file; see the class for waiting.
        Raises WorkspaceBusy when the lock stays held, RuntimeError when this object already holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this WorkspaceLock")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # Never truncated on open: the file holds the current holder's record.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._take(fd)
            record = json.dumps({"pid": os.getpid(), "holder": self.holder, "host": socket.gethostname(),
                                 "started": time.time()}).encode("utf-8") + b"\n"
            # Written over the old record, then cut to length: a reader sees one whole first line.
            os.pwrite(fd, record, 0)
            os.ftruncate(fd, len(record))
        except BaseException:
            os.close(fd)  # closing drops the lock if it was taken
            raise
        self._fd = fd
        return self

    def _take(self, fd: int) -> None:
        start = time.monotonic()
        reported = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            waited = time.monotonic() - start
            holder = _parse_record(os.pread(fd, _RECORD_BYTES, 0))
            known = holder is not None or waited >= _UNKNOWN_HOLDER_SECONDS
            if not self.wait:
                if known:
                    raise WorkspaceBusy(self.workspace, self.pipeline_name, self.path, holder, hint=self.hint)
                time.sleep(0.05)
                continue
            if self.timeout is not None and waited >= self.timeout:
                raise WorkspaceBusy(self.workspace, self.pipeline_name, self.path, holder, waited, self.hint)
            if known and not reported:
                reported = True
                busy = WorkspaceBusy(self.workspace, self.pipeline_name, self.path, holder, hint=self.hint)
                if self.on_wait is not None:
                    self.on_wait(busy)
                else:
                    log.info("waiting: %s", busy.description)
            pause = POLL_SECONDS if self.timeout is None else min(POLL_SECONDS, self.timeout - waited)
            time.sleep(max(pause, 0.01))

    def release(self) -> None:
        """Clears this writer's record and releases the lock; nothing when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # drops the lock

    def __enter__(self) -> "WorkspaceLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
