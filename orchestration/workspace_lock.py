"""One writer per workspace and pipeline, or several writers that share it.

Everything a run writes (`pipelines/<name>/`, `metadata/<name>.sqlite`, `serving/<name>/`) belongs to one
pipeline name, so runs, garbage collection and Airflow tasks of one pipeline take the lock
`<workspace>/locks/<name>.lock` for as long as they write. It is an `fcntl.flock` lock: the kernel drops it
when its holder's process ends, however it ends, so a lock left by a killed process is simply free.

Two modes:
- exclusive (the default; CLI runs, `cvrank gc`, `serving rollback`, `cvrank index`): one holder, no one
  else. The lock file holds its record (pid, holder, host, start time), rewritten on every acquisition and
  cleared on release, so a refused writer can say who is writing. Whoever holds the lock exclusively knows
  no other writer of the pipeline is alive.
- shared (`shared=True`; Airflow node tasks when ML Metadata is a server database): any number of shared
  holders at once, no exclusive holder meanwhile. Each shared holder keeps its own record,
  `<workspace>/locks/<name>.holders/<host>-<pid>-<random>.json`, which it holds `flock`ed exclusively for
  as long as it holds the lock: a record whose file is not locked belongs to a dead holder and is ignored
  (and removed by whoever notices). A refused exclusive writer names a live shared holder.

The lock belongs to the open file, not the process: a second exclusive `WorkspaceLock` in the same
process is refused like any other writer, and a child forked (not exec'd) while the lock is held keeps
holding it (and its shared record) after the parent ends.
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
import uuid
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"
HOLDERS_SUFFIX = ".holders"  # <name>.holders/: the records of shared holders
POLL_SECONDS = 0.2  # how often a waiting writer tries again
_RECORD_BYTES = 4096  # a holder record is one short JSON line
# A lock is briefly held without a record (just taken, or being released): how long a refused writer
# keeps trying to learn who holds it before naming no one.
_UNKNOWN_HOLDER_SECONDS = 1.0
DEFAULT_HINT = "wait for it with --wait, or stop it"


def lock_path(workspace: str, pipeline_name: str) -> str:
    """The lock file of pipeline `pipeline_name` in `workspace`."""
    return os.path.join(os.path.abspath(workspace), LOCKS_DIR, f"{pipeline_name}.lock")


def holders_dir(workspace: str, pipeline_name: str) -> str:
    """The directory of the shared holders' records of pipeline `pipeline_name` in `workspace`."""
    return os.path.join(os.path.abspath(workspace), LOCKS_DIR, f"{pipeline_name}{HOLDERS_SUFFIX}")


@dataclass(frozen=True)
class LockHolder:
    """Who holds a workspace lock: `holder` is what the writer called itself (a run id, or a description
    such as 'cvrank gc'), `started` the time it took the lock (seconds since the epoch), `shared` whether
    it holds the lock shared; `run_id` and `node_id` say which run and node it writes, when it said so
    (Airflow node tasks do)."""

    pid: int
    holder: str
    host: str
    started: float
    shared: bool = False
    run_id: Optional[str] = None
    node_id: Optional[str] = None

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


def _record(holder: str, shared: bool, run_id: Optional[str], node_id: Optional[str]) -> bytes:
    record = {"pid": os.getpid(), "holder": holder, "host": socket.gethostname(), "started": time.time()}
    if shared:
        record["shared"] = True
    if run_id is not None:
        record["run_id"] = run_id
    if node_id is not None:
        record["node_id"] = node_id
    return json.dumps(record).encode("utf-8") + b"\n"


def _parse_record(data: bytes) -> Optional[LockHolder]:
    # The first line is the record; anything after it is the tail of a longer, older record.
    try:
        record = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
        optional = {k: (None if record.get(k) is None else str(record[k])) for k in ("run_id", "node_id")}
        return LockHolder(int(record["pid"]), str(record["holder"]), str(record["host"]), float(record["started"]),
                          bool(record.get("shared", False)), **optional)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _live_shared_records(directory: str, own: Optional[str] = None) -> List[Tuple[str, LockHolder]]:
    """(path, holder) of every live shared holder's record in `directory` but the record `own`, oldest
    first. A record whose file is not locked belongs to a holder that died: it is removed. The caller's own
    record is never opened here: where flock is emulated with POSIX locks, closing any descriptor of a file
    drops the process's lock on it."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    live = []
    for name in names:
        path = os.path.join(directory, name)
        if own is not None and os.path.abspath(path) == os.path.abspath(own):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = _parse_record(os.pread(fd, _RECORD_BYTES, 0))  # locked: its holder is alive
                if holder is not None:
                    live.append((path, holder))
                continue
            # Not locked: its holder died (or just released it). Records are renamed into place only once
            # locked, so this is never a record being written.
            try:
                os.unlink(path)
            except OSError:
                pass  # gone already, or not ours to remove: ignored either way
        finally:
            os.close(fd)
    live.sort(key=lambda item: (item[1].started, item[0]))
    return live


def read_holders(workspace: str, pipeline_name: str) -> List[LockHolder]:
    """The holders of the lock of `pipeline_name` in `workspace`: the exclusive holder's record when the lock
    file has one, then every live shared holder, oldest first; [] when there is none. The exclusive record
    alone does not say the lock is held: a writer killed without releasing leaves its record behind."""
    holders = []
    exclusive = read_holder_record(workspace, pipeline_name)
    if exclusive is not None:
        holders.append(exclusive)
    holders += [h for _, h in _live_shared_records(holders_dir(workspace, pipeline_name))]
    return holders


def read_holder_record(workspace: str, pipeline_name: str) -> Optional[LockHolder]:
    """The record in the lock file itself: the last exclusive writer that took the lock and has not
    released it, or None."""
    try:
        with open(lock_path(workspace, pipeline_name), "rb") as f:
            return _parse_record(f.read(_RECORD_BYTES))
    except FileNotFoundError:
        return None


def read_holder(workspace: str, pipeline_name: str) -> Optional[LockHolder]:
    """The first of `read_holders`: the record of the last exclusive writer that took the lock of
    `pipeline_name` in `workspace` and has not released it, else the oldest live shared holder, or None.
    An exclusive record alone does not say the lock is held: a writer killed without releasing leaves its
    record behind."""
    holders = read_holders(workspace, pipeline_name)
    return holders[0] if holders else None


class WorkspaceBusy(RuntimeError):
    """The workspace lock is held by another writer: `holder` (a LockHolder, or None when no record could
    be read), `others` (further holders sharing the lock), `waited` (seconds waited before giving up, None
    when not waiting). `description` says who holds the workspace; str() adds what to do (the lock's
    `hint`) or how long it waited."""

    def __init__(self, workspace: str, pipeline_name: str, path: str, holder: Optional[LockHolder],
                 waited: Optional[float] = None, hint: str = DEFAULT_HINT, others: Sequence[LockHolder] = ()):
        self.workspace = workspace
        self.pipeline_name = pipeline_name
        self.lock_path = path
        self.holder = holder
        self.others = tuple(others) if holder is not None else ()
        self.holders = ((holder,) + self.others) if holder is not None else ()
        self.waited = waited
        who = holder.describe() if holder is not None else f"another process (lock file {path})"
        if self.others:
            who += f" and {len(self.others)} more sharing it"
        self.description = f"workspace {workspace} is in use by {who}"
        tail = hint if waited is None else f"still in use after waiting {waited:.1f} s"
        super().__init__(f"{self.description}; {tail}")


class WorkspaceLock:
    """The writer lock of pipeline `pipeline_name` in `workspace`, as a context manager (or `acquire()` /
    `release()`): exclusive, or with `shared` shared with other shared holders (module docstring).
    `holder` names the writer in the lock's record and in other writers' messages: a run id, or a
    description with spaces (e.g. 'cvrank gc'); `run_id` and `node_id`, when given, are recorded too, so
    that a writer sharing the lock can tell which executions other live holders are running.

    Without `wait`, acquiring a held lock raises WorkspaceBusy at once. With `wait`, it tries again every
    POLL_SECONDS until the lock is free, for at most `timeout` seconds (None: no limit) and then raises
    WorkspaceBusy; when it starts waiting it calls `on_wait` once with a WorkspaceBusy describing the
    holder (not raised), or logs that description when there is no `on_wait`. A lock whose holder died
    is free: it is taken at once. `hint` ends the refusal message. An exclusive writer waiting while
    shared holders come and go may wait until none is left."""

    def __init__(self, workspace: str, pipeline_name: str, holder: str, wait: bool = False,
                 timeout: Optional[float] = None, on_wait: Optional[Callable[[WorkspaceBusy], None]] = None,
                 hint: str = DEFAULT_HINT, shared: bool = False, run_id: Optional[str] = None,
                 node_id: Optional[str] = None):
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, not {timeout}")
        self.workspace = os.path.abspath(workspace)
        self.pipeline_name = pipeline_name
        self.path = lock_path(workspace, pipeline_name)
        self.holders_dir = holders_dir(workspace, pipeline_name)
        self.holder = holder
        self.wait = wait
        self.timeout = timeout
        self.on_wait = on_wait
        self.hint = hint
        self.shared = shared
        self.run_id = run_id
        self.node_id = node_id
        self._fd: Optional[int] = None
        self._record_fd: Optional[int] = None
        self._record_path: Optional[str] = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    @property
    def record_path(self) -> str:
        """Where this writer's record is while it holds the lock: the lock file (exclusive) or its own file
        under `holders_dir` (shared)."""
        return self._record_path or self.path

    def acquire(self) -> "WorkspaceLock":
        """Takes the lock and writes this writer's record; see the class for waiting. Raises WorkspaceBusy
        when the lock stays held, RuntimeError when this object already holds it."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this WorkspaceLock")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # Never truncated on open: the file holds the current exclusive holder's record.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._take(fd)
            if self.shared:
                # No exclusive holder is alive: a record in the lock file is a dead one's.
                os.ftruncate(fd, 0)
                self._write_shared_record()
            else:
                record = _record(self.holder, False, self.run_id, self.node_id)
                # Written over the old record, then cut to length: a reader sees one whole first line.
                os.pwrite(fd, record, 0)
                os.ftruncate(fd, len(record))
                self._remove_dead_shared_records()
        except BaseException:
            self._drop_shared_record()
            os.close(fd)  # closing drops the lock if it was taken
            raise
        self._fd = fd
        return self

    def _write_shared_record(self) -> None:
        os.makedirs(self.holders_dir, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        temp = os.path.join(self.holders_dir, f".{token}.tmp")
        final = os.path.join(self.holders_dir, f"{socket.gethostname()}-{os.getpid()}-{token}.json")
        record_fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(record_fd, fcntl.LOCK_EX)  # a new file: nobody else can hold it
            os.write(record_fd, _record(self.holder, True, self.run_id, self.node_id))
            os.rename(temp, final)  # only locked records ever carry a .json name
        except BaseException:
            os.close(record_fd)
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        self._record_fd, self._record_path = record_fd, final

    def _drop_shared_record(self) -> None:
        if self._record_path is not None:
            try:
                os.unlink(self._record_path)
            except FileNotFoundError:
                pass
        if self._record_fd is not None:
            os.close(self._record_fd)
        self._record_fd = self._record_path = None

    def _remove_dead_shared_records(self) -> None:
        # Under the exclusive lock no shared holder is alive: whatever is left in the records directory
        # (records and half-written temporary files) belongs to dead holders.
        try:
            names = os.listdir(self.holders_dir)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(self.holders_dir, name))
            except OSError:
                pass

    def _holders_in_the_way(self, fd: int) -> List[LockHolder]:
        exclusive = _parse_record(os.pread(fd, _RECORD_BYTES, 0))
        if exclusive is not None:
            return [exclusive]
        if self.shared:
            return []  # only an exclusive holder keeps a shared writer out
        return [h for _, h in _live_shared_records(self.holders_dir)]

    def _take(self, fd: int) -> None:
        start = time.monotonic()
        reported = False
        operation = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        while True:
            try:
                fcntl.flock(fd, operation | fcntl.LOCK_NB)
                return
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            waited = time.monotonic() - start
            holders = self._holders_in_the_way(fd)
            holder, others = (holders[0], holders[1:]) if holders else (None, [])
            known = holder is not None or waited >= _UNKNOWN_HOLDER_SECONDS
            if not self.wait:
                if known:
                    raise WorkspaceBusy(self.workspace, self.pipeline_name, self.path, holder, hint=self.hint,
                                        others=others)
                time.sleep(0.05)
                continue
            if self.timeout is not None and waited >= self.timeout:
                raise WorkspaceBusy(self.workspace, self.pipeline_name, self.path, holder, waited, self.hint,
                                    others=others)
            if known and not reported:
                reported = True
                busy = WorkspaceBusy(self.workspace, self.pipeline_name, self.path, holder, hint=self.hint,
                                     others=others)
                if self.on_wait is not None:
                    self.on_wait(busy)
                else:
                    log.info("waiting: %s", busy.description)
            pause = POLL_SECONDS if self.timeout is None else min(POLL_SECONDS, self.timeout - waited)
            time.sleep(max(pause, 0.01))

    def other_holders(self) -> List[LockHolder]:
        """The live holders sharing the lock with this one, oldest first: [] for an exclusive holder (there
        is none) and for a lock this object does not hold."""
        if self._fd is None or not self.shared:
            return []
        return [h for _, h in _live_shared_records(self.holders_dir, own=self._record_path)]

    def release(self) -> None:
        """Clears this writer's record and releases the lock; nothing when not held."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.shared:
                self._drop_shared_record()  # the record goes first: a record never outlives its lock
            else:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # drops the lock

    def __enter__(self) -> "WorkspaceLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
