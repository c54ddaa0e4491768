"""The code version and settings a run records (orchestration.provenance), against a real git checkout."""

import json
import subprocess

from config import PipelineConfig
from orchestration import provenance


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_commit_and_dirty_state_of_a_checkout(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert provenance.git_commit(str(repo)) == head
    assert provenance.git_dirty(str(repo)) is False
    (repo / "untracked.py").write_text("y = 2\n")
    assert provenance.git_dirty(str(repo)) is False, "untracked files do not make a tree dirty"
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_dirty(str(repo)) is True
    _git(repo, "add", "a.py")
    assert provenance.git_dirty(str(repo)) is True, "staged changes are uncommitted too"
    _git(repo, "commit", "-q", "-m", "second")
    assert provenance.git_dirty(str(repo)) is False
    assert provenance.code_properties(str(repo))[provenance.GIT_COMMIT] == _git(repo, "rev-parse", "HEAD") != head


def test_outside_a_checkout_nothing_is_claimed(tmp_path):
    properties = provenance.code_properties(str(tmp_path))
    assert properties[provenance.GIT_COMMIT] == "" and properties[provenance.GIT_DIRTY] == ""
    assert len(properties[provenance.SOURCES_SHA256]) == 64


def test_settings_are_those_that_differ_from_the_defaults(tmp_path):
    config = PipelineConfig(epochs=3, doc_weighting="idf", workspace=str(tmp_path), learning_rate=0.05)
    recorded = provenance.settings_properties(config)
    assert json.loads(recorded[provenance.SETTINGS]) == {"epochs": 3, "doc_weighting": "idf"}
    assert provenance.settings_of(recorded) == {"epochs": 3, "doc_weighting": "idf"}
    assert provenance.settings_of({}) == {}
