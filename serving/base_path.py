"""A TF Serving model base path as cvrank writes it: versions appear only complete, numbers never repeat.

    <base>/<N>/                  a version. TF Serving (and `cvrank serve`) serves the largest N.
    <base>/.cvrank/staging/<N>/  version N being written; renamed to <base>/<N> once complete and recorded.
    <base>/.cvrank/retired/<N>/  version N taken out of service by a rollback; it can be restored.
    <base>/.cvrank/last_version  the largest number ever given out, so a deleted version's number is not
                                 given to another model.
    <base>/.cvrank/lock          held (flock) while a number is given out or a directory renamed.

TF Serving only considers children whose whole name is an integer, so `.cvrank` is invisible to it.
Staging, retired and served directories share one filesystem, so every move is an atomic rename.

This module is the filesystem half; `serving.pushes` keeps ML Metadata in step with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from typing import Callable, Dict, Iterator, List

CONTROL_DIR = ".cvrank"
SAVED_MODEL = "saved_model.pb"

# {path relative to the version directory: {"bytes": size, "sha256": hex digest}}
Manifest = Dict[str, Dict[str, object]]


class BasePathError(Exception):
    """A version cannot be written, moved or found; the message names the directory and the reason."""


def _numbered_dirs(parent: str) -> Dict[int, str]:
    try:
        names = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {int(n): os.path.join(parent, n) for n in names
            if n.isdigit() and os.path.isdir(os.path.join(parent, n))}


def versions_on_disk(base_path: str) -> Dict[int, str]:
    """{version: directory} of the integer-named directories under `base_path` (TF Serving's layout)."""
    return _numbered_dirs(base_path)


def staging_dir(base_path: str) -> str:
    """The directory holding versions being written: `<base>/.cvrank/staging`."""
    return os.path.join(base_path, CONTROL_DIR, "staging")


def retired_dir(base_path: str) -> str:
    """The directory holding versions a rollback set aside: `<base>/.cvrank/retired`."""
    return os.path.join(base_path, CONTROL_DIR, "retired")


def staged_versions(base_path: str) -> Dict[int, str]:
    """{version: directory} of versions being written (or left behind by a writer that died)."""
    return _numbered_dirs(staging_dir(base_path))


def retired_versions(base_path: str) -> Dict[int, str]:
    """{version: directory} of versions a rollback took out of service."""
    return _numbered_dirs(retired_dir(base_path))


def served_version(base_path: str) -> int | None:
    """The version TF Serving's default policy serves: the largest one present (None when none is)."""
    present = versions_on_disk(base_path)
    return max(present) if present else None


@contextlib.contextmanager
def _locked(base_path: str) -> Iterator[None]:
    control = os.path.join(base_path, CONTROL_DIR)
    os.makedirs(control, exist_ok=True)
    with open(os.path.join(control, "lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_given(base_path: str) -> int:
    try:
        with open(os.path.join(base_path, CONTROL_DIR, "last_version")) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _next_version(base_path: str) -> int:
    """Gives out the next version number (caller holds the lock): one more than any number present,
    staged, retired or given out before. Records it before returning, so it is never given twice."""
    used = [_last_given(base_path), *versions_on_disk(base_path), *staged_versions(base_path),
            *retired_versions(base_path)]
    version = max(used) + 1
    path = os.path.join(base_path, CONTROL_DIR, "last_version")
    with open(path + ".tmp", "w") as f:
        f.write(f"{version}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)
    return version


def file_digest(path: str, fsync: bool = False) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of the file at `path`; with `fsync`, also flushes it to disk."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
        if fsync:
            os.fsync(f.fileno())
    return size, digest.hexdigest()


def _sync_tree(root: str) -> Manifest:
    """fsyncs every file and directory under `root` and returns their sizes and SHA-256 digests."""
    manifest: Manifest = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            size, digest = file_digest(path, fsync=True)
            manifest[os.path.relpath(path, root)] = {"bytes": size, "sha256": digest}
        _fsync_dir(dirpath)
    return manifest


def stage_version(base_path: str, fill: Callable[[str], None]) -> tuple[int, str, Manifest]:
    """Writes a new version under a staging name: gives out its number, calls `fill(directory)` to write
    the SavedModel there, then fsyncs every file and directory. Returns (version, staging directory,
    manifest). Nothing appears under `base_path` itself until `publish_version`. If `fill` or a write
    fails (a full disk, say), the staging directory is removed and the error propagates."""
    base_path = os.path.abspath(base_path)
    with _locked(base_path):
        version = _next_version(base_path)
        path = os.path.join(staging_dir(base_path), str(version))
        os.makedirs(path)
    try:
        fill(path)
        if not os.path.isfile(os.path.join(path, SAVED_MODEL)):
            raise BasePathError(f"the version written to {path} has no {SAVED_MODEL}")
        manifest = _sync_tree(path)
        _fsync_dir(os.path.dirname(path))
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return version, path, manifest


def copy_saved_model(source: str, target: str) -> None:
    """Copies the SavedModel directory `source` into the (existing, empty) directory `target`,
    `saved_model.pb` last, as TF Serving's own tooling does."""
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        os.makedirs(os.path.join(target, rel), exist_ok=True)
        for name in filenames:
            if rel == "." and name == SAVED_MODEL:
                continue
            shutil.copyfile(os.path.join(dirpath, name), os.path.join(target, rel, name))
    shutil.copyfile(os.path.join(source, SAVED_MODEL), os.path.join(target, SAVED_MODEL))


def publish_version(base_path: str, version: int) -> str:
    """Renames staged version `version` to `<base_path>/<version>`, the directory servers load.
    Returns it. Raises BasePathError when the staged directory is missing or the name is taken."""
    base_path = os.path.abspath(base_path)
    with _locked(base_path):
        source = os.path.join(staging_dir(base_path), str(version))
        target = os.path.join(base_path, str(version))
        if not os.path.isdir(source):
            raise BasePathError(f"no staged version {version} at {source}")
        if os.path.exists(target):
            raise BasePathError(f"{target} already exists; staged version {version} stays at {source}")
        os.rename(source, target)
        _fsync_dir(base_path)
    return target


def discard_staged(base_path: str, version: int) -> None:
    """Removes staged version `version` (no error when it is already gone)."""
    shutil.rmtree(os.path.join(staging_dir(os.path.abspath(base_path)), str(version)), ignore_errors=True)


def retire_version(base_path: str, version: int) -> None:
    """Moves `<base_path>/<version>` to the retired directory, out of any server's sight."""
    _move(base_path, version, os.path.abspath(base_path), retired_dir(os.path.abspath(base_path)))


def restore_version(base_path: str, version: int) -> None:
    """Moves retired version `version` back to `<base_path>/<version>`."""
    _move(base_path, version, retired_dir(os.path.abspath(base_path)), os.path.abspath(base_path))


def _move(base_path: str, version: int, source_parent: str, target_parent: str) -> None:
    with _locked(os.path.abspath(base_path)):
        source = os.path.join(source_parent, str(version))
        target = os.path.join(target_parent, str(version))
        if not os.path.isdir(source):
            raise BasePathError(f"version {version} is not at {source}")
        if os.path.exists(target):
            raise BasePathError(f"{target} already exists")
        os.makedirs(target_parent, exist_ok=True)
        os.rename(source, target)
        _fsync_dir(source_parent)
        _fsync_dir(target_parent)


def check_files(version_dir: str, manifest: Manifest) -> List[str]:
    """Compares the files of `version_dir` with `manifest`; returns one sentence per difference
    (missing, different size, different content, unexpected file), empty when they match."""
    problems = []
    for rel, expected in sorted(manifest.items()):
        path = os.path.join(version_dir, rel)
        if not os.path.isfile(path):
            problems.append(f"{rel} is missing ({expected['bytes']:,} bytes at push time)")
            continue
        size = os.path.getsize(path)
        if size != expected["bytes"]:
            problems.append(f"{rel} has {size:,} bytes, {expected['bytes']:,} at push time")
            continue
        if file_digest(path)[1] != expected["sha256"]:
            problems.append(f"{rel} differs from the pushed file (SHA-256 mismatch)")
    for dirpath, _, filenames in os.walk(version_dir):
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), version_dir)
            if rel not in manifest:
                problems.append(f"{rel} was not part of the push")
    return problems


def manifest_to_json(manifest: Manifest) -> str:
    """`manifest` as compact JSON (how push records store it)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


def manifest_from_json(text: str) -> Manifest:
    """The manifest stored by `manifest_to_json` ({} for an empty text)."""
    return json.loads(text) if text else {}
