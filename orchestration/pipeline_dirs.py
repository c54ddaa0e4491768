"""The directories TFX's launcher writes under a pipeline root, as recovery and garbage collection see
them: the layout, whether a path lies inside the root, how much space a tree takes, removing a tree, and
sizes as people read them.

The layout (tfx/orchestration/portable/outputs_utils.py): `<node id>/<output key>/<execution id>` holds
an output artifact (a value artifact is the file `value` inside it), and `<node id>/.system/` the run
records: `executor_execution/<execution id>`, `stateful_working_dir/<index>` (the index is a uuid, kept
in the execution's custom property `__stateful_working_dir_index__` when TFX records it) and
`driver_execution/<time in microseconds>`.
"""

from __future__ import annotations

import bisect
import os
import shutil
import stat
import tempfile
from typing import Iterable, List, Optional

SYSTEM_DIR = ".system"
EXECUTOR_EXECUTION = "executor_execution"
STATEFUL_WORKING_DIR = "stateful_working_dir"
DRIVER_EXECUTION = "driver_execution"
_STATEFUL_WORKING_DIR_INDEX = "__stateful_working_dir_index__"


def stateful_working_dir_index(execution) -> Optional[str]:
    """The name of `execution`'s `.system/stateful_working_dir/` entry when the execution records it (TFX
    does not always), else None."""
    if _STATEFUL_WORKING_DIR_INDEX not in execution.custom_properties:
        return None
    value = execution.custom_properties[_STATEFUL_WORKING_DIR_INDEX]
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else None


def plain_name(name: str) -> bool:
    """Whether `name` is one directory entry's name (not empty, '.', '..', nor holding a separator)."""
    return bool(name) and name not in (".", "..") and os.sep not in name and (os.altsep or os.sep) not in name


def is_within(path: str, root: str) -> bool:
    """Whether `path` lies strictly inside directory `root` once symbolic links are resolved (so a link
    inside the root leading elsewhere is outside it)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real != real_root and real.startswith(real_root.rstrip(os.sep) + os.sep)


class PathSet:
    """A set of paths (normalised), asked whether a path overlaps one of them: is one of them, lies inside
    one, or holds one; in time logarithmic in their number."""

    def __init__(self, paths: Iterable[str] = ()):
        self._paths = set()
        self._sorted: List[str] = []
        self.update(paths)

    def update(self, paths: Iterable[str]) -> None:
        self._paths.update(os.path.normpath(p) for p in paths if p)
        self._sorted = sorted(self._paths)

    def overlaps(self, path: str) -> bool:
        """Whether `path` is one of the paths, lies inside one, or holds one."""
        path = os.path.normpath(path)
        up = path
        while True:  # `path` itself or one of its ancestors
            if up in self._paths:
                return True
            parent = os.path.dirname(up)
            if parent == up:
                break
            up = parent
        inside = path.rstrip(os.sep) + os.sep  # a path below `path` sorts right after this prefix
        i = bisect.bisect_left(self._sorted, inside)
        return i < len(self._sorted) and self._sorted[i].startswith(inside)


def tree_size(path: str) -> int:
    """Bytes of the file at `path`, or of every file below the directory at `path` (apparent sizes; links
    are not followed and count nothing); 0 when nothing is there."""
    try:
        if os.path.islink(path):
            return 0
        if not os.path.isdir(path):
            return os.path.getsize(path)
    except OSError:
        return 0
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:  # removed meanwhile
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def remove_tree(path: str) -> None:
    """Removes the directory tree, file or symbolic link (the link, never its target) at `path`; nothing
    when nothing is there. Raises OSError when something cannot be removed."""
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def format_bytes(n: int) -> str:
    """`n` bytes as people read them: '812 B', '4.2 KiB', '41 MiB', '1.3 GiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def write_atomically(path: str, data: bytes, mode: int = 0o644) -> None:
    """Writes `data` to `path` (its directory created) through a temporary file renamed into place, so a
    reader sees the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
