"""What a pipeline run was made of, recorded on its "pipeline_run" context in ML Metadata: the code (git
commit, whether the working tree had uncommitted changes, a digest of the Python sources) and the
settings that differ from PipelineConfig's defaults.

The properties (custom properties of the context, all strings):

    git_commit      the checked-out commit, "" when the project is not a git checkout
    git_dirty       "yes" / "no" (tracked files changed, staged or not), "" when it cannot be told
    sources_sha256  digest of the project's Python sources (their paths and contents)
    settings        JSON object: each PipelineConfig setting whose value is not its default, except where
                    the run's files live (`workspace`, `metadata_uri`)

They are written before the run's first node (`record_run`), so they also hold for a run that fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from typing import Any, Dict, Mapping, Optional

from config import PROJECT_ROOT, PipelineConfig
from config.pipeline_config import default

GIT_COMMIT, GIT_DIRTY, SOURCES_SHA256, SETTINGS = "git_commit", "git_dirty", "sources_sha256", "settings"
PROPERTIES = (GIT_COMMIT, GIT_DIRTY, SOURCES_SHA256, SETTINGS)
# Settings that say where a run's files are, not what the run computes.
_PLACE_SETTINGS = ("workspace", "metadata_uri")
# Where the project's code is (for the sources digest): packages and the DAG files.
_SOURCE_DIRS = ("analysis", "cvrank", "components", "config", "dags", "dataset", "evaluation", "metadata", "orchestration",
                "pipeline", "serving", "trainer", "transform")


def code_version(project_root: str = PROJECT_ROOT) -> Dict[str, Optional[str]]:
    """{"git_commit": the checked-out commit or None, "sources_sha256": a digest of the project's Python
    sources (their paths and contents), which also tells uncommitted changes apart}."""
    digest = hashlib.sha256()
    for top in _SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(project_root, top)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    digest.update(os.path.relpath(path, project_root).encode() + b"\0")
                    with open(path, "rb") as f:
                        digest.update(hashlib.sha256(f.read()).digest())
    return {"git_commit": git_commit(project_root), "sources_sha256": digest.hexdigest()}


def git_commit(project_root: str = PROJECT_ROOT) -> Optional[str]:
    """The commit checked out in `project_root`, read from `.git` itself (no git binary needed); None when
    it is not a git checkout or the commit cannot be read."""
    try:
        git_dir = os.path.join(project_root, ".git")
        if os.path.isfile(git_dir):  # a worktree or submodule: "gitdir: PATH"
            with open(git_dir) as f:
                git_dir = os.path.join(project_root, f.read().strip().partition("gitdir:")[2].strip())
        common_dir = git_dir
        if os.path.isfile(os.path.join(git_dir, "commondir")):
            with open(os.path.join(git_dir, "commondir")) as f:
                common_dir = os.path.join(git_dir, f.read().strip())
        with open(os.path.join(git_dir, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[4:].strip()
        for base in (git_dir, common_dir):
            path = os.path.join(base, ref)
            if os.path.isfile(path):
                with open(path) as f:
                    return f.read().strip() or None
        with open(os.path.join(common_dir, "packed-refs")) as f:
            for line in f:
                sha, _, name = line.strip().partition(" ")
                if name == ref:
                    return sha
    except OSError:
        return None
    return None


def git_dirty(project_root: str = PROJECT_ROOT) -> Optional[bool]:
    """Whether tracked files of the checkout in `project_root` differ from its commit (staged or not;
    untracked files do not count, as for `git describe --dirty`). None when it cannot be told: no git
    binary, or `project_root` is not the top of a checkout. Takes no lock in the repository."""
    if not os.path.exists(os.path.join(project_root, ".git")):
        return None  # (git would answer for an enclosing checkout)
    try:
        # safe.directory: the checkout may belong to another user id than the one running (the runtime).
        done = subprocess.run(["git", "-c", "safe.directory=*", "--no-optional-locks", "-C", project_root,
                               "status", "--porcelain", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return bool(done.stdout.strip())


def changed_settings(config: PipelineConfig) -> Dict[str, Any]:
    """The settings of `config` whose value is not PipelineConfig's default, by name in field order,
    without `workspace` and `metadata_uri`."""
    values = config.to_dict()
    return {name: value for name, value in values.items()
            if name not in _PLACE_SETTINGS and value != default(name)}


def code_properties(project_root: str = PROJECT_ROOT) -> Dict[str, str]:
    """`git_commit`, `git_dirty` and `sources_sha256` (module docstring) of the code in `project_root` now."""
    version = code_version(project_root)
    dirty = git_dirty(project_root)
    return {GIT_COMMIT: version["git_commit"] or "", GIT_DIRTY: "" if dirty is None else ("yes" if dirty else "no"),
            SOURCES_SHA256: version["sources_sha256"] or ""}


def settings_properties(config: PipelineConfig) -> Dict[str, str]:
    """The `settings` property (module docstring) of a run of `config`."""
    return {SETTINGS: json.dumps(changed_settings(config))}


def settings_of(properties: Mapping[str, str]) -> Dict[str, Any]:
    """The changed settings recorded in a run's `properties` ({} when none were recorded)."""
    return json.loads(properties.get(SETTINGS) or "{}")
