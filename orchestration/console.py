"""What a person sees while a pipeline runs: one line per node, progress inside long nodes, and nothing
else. Everything the process and its children write to stdout and stderr (TensorFlow's C++ logs, Beam
workers, absl and Python logging) goes to a log file per run; with `verbose` it is also streamed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Optional, TextIO

# Code reports progress inside a node (e.g. GloVe's epochs) on this logger or its children
# (`cvrank.progress.glove`); the console shows it.
PROGRESS_LOGGER = "cvrank.progress"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Without a terminal (CI, a pipe), progress lines are written at most this often.
_PIPE_PROGRESS_SECONDS = 10.0


class RunOutput:
    """A context manager that sends file descriptors 1 and 2 to `log_path` (appending) and gives the
    console, the original stdout, as `self.console`. With `verbose` the log is also copied to the
    original stderr as it is written. Python logging goes to the log at INFO; records of
    PROGRESS_LOGGER also reach the console (through `progress`)."""

    def __init__(self, log_path: str, verbose: bool = False):
        self.log_path = log_path
        self.verbose = verbose
        self.console: Optional[TextIO] = None
        self.progress: Optional[NodeProgress] = None
        self._saved = ()
        self._tee: Optional[threading.Thread] = None
        self._handlers = []

    def __enter__(self) -> "RunOutput":
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self.console = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.verbose:
            read_fd, write_fd = os.pipe()
            self._tee = threading.Thread(target=_copy, args=(read_fd, log_fd, self._saved[1]), daemon=True)
            self._tee.start()
            target = write_fd
        else:
            target = log_fd
        os.dup2(target, 1)
        os.dup2(target, 2)
        os.close(target)
        self.progress = NodeProgress(self.console, self.console.isatty())
        self._configure_logging()
        return self

    def _configure_logging(self) -> None:
        root = logging.getLogger()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        self._handlers.append((root, handler))
        if not self.verbose:  # verbose output already carries the log, progress records included
            progress = _ProgressHandler(self.progress)
            logging.getLogger(PROGRESS_LOGGER).addHandler(progress)
            self._handlers.append((logging.getLogger(PROGRESS_LOGGER), progress))

    def __exit__(self, *exc) -> None:
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)  # closes the pipe's last write end: the tee thread sees EOF
        tee_done = True
        if self._tee is not None:
            # It copies until every writer is gone; a child process still holding the pipe keeps it going.
            self._tee.join(timeout=10)
            tee_done = not self._tee.is_alive()
        os.close(self._saved[0])
        if tee_done:  # otherwise the tee thread still writes to it
            os.close(self._saved[1])
        self.console.close()


def _copy(read_fd: int, log_fd: int, console_fd: int) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as source:
        while True:
            chunk = source.read(65536)
            if not chunk:
                break
            os.write(log_fd, chunk)
            os.write(console_fd, chunk)
    os.close(log_fd)


class NodeProgress:
    """Writes `[ 7/19] Transform ... 41.2 s COMPLETE`: the start of the line when a node starts, the
    rest when it ends; progress messages in between update the line on a terminal, or are written
    as indented lines (at most every few seconds) otherwise."""

    def __init__(self, out: TextIO, interactive: bool):
        self._out = out
        self._interactive = interactive
        self._prefix = ""
        self._line_open = False
        self._last_message = 0.0
        self._held: Optional[str] = None
        self._lock = threading.Lock()

    def started(self, index: int, total: int, node_id: str) -> None:
        width = len(str(total))
        self._prefix = f"[{index:>{width}}/{total}] {node_id} ..."
        with self._lock:
            self._out.write(self._prefix)
            self._out.flush()
            self._line_open = True

    def message(self, text: str) -> None:
        with self._lock:
            if self._interactive:
                self._out.write(f"\r\033[K{self._prefix} {text}")
                self._line_open = True
            else:
                now = time.monotonic()
                if now - self._last_message < _PIPE_PROGRESS_SECONDS:
                    self._held = text  # written when the node ends, unless a newer one replaces it
                    return
                self._last_message = now
                self._write_line(text)
            self._out.flush()

    def _write_line(self, text: str) -> None:
        self._out.write(("\n" if self._line_open else "") + f"    {text}\n")
        self._line_open = False
        self._held = None

    def finished(self, seconds: float, state: str) -> None:
        with self._lock:
            if self._interactive:
                self._out.write(f"\r\033[K{self._prefix}")
            elif self._held is not None:
                self._write_line(self._held)
                self._out.write(self._prefix)
            elif not self._line_open:
                self._out.write(self._prefix)
            self._out.write(f" {seconds:.1f} s {state}\n")
            self._out.flush()
            self._line_open = False
            self._last_message = 0.0


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: NodeProgress):
        super().__init__(logging.INFO)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self._progress.message(record.getMessage())
