"""Shared fixtures: a workspace with a short history of tiny pipeline runs, made by the real `cvrank sweep`."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from typing import List

import pytest

from config import PipelineConfig


@dataclasses.dataclass
class Sweep:
    config: PipelineConfig  # the tiny settings the sweep started from: its workspace, store and data
    run_ids: List[str]  # the sweep's runs, in the order they ran
    exit_code: int
    output: str  # what `cvrank sweep` printed


def run_sweep(workspace, *grid: str) -> Sweep:
    """`cvrank sweep GRID... ` on the tiny dataset (tests/test_pipeline_e2e.tiny_settings) in `workspace`,
    in this process; the run ids are those the sweep added to ML Metadata."""
    from analysis.history import run_rows
    from cvrank import cli
    from metadata import mlmd
    from tests.test_pipeline_e2e import TINY, tiny_settings

    settings = {k: v for k, v in tiny_settings().items() if k != "data_dir"}
    config = PipelineConfig(**tiny_settings(), workspace=str(workspace))
    store_exists = mlmd.has_store(config.metadata_connection())
    before = {r.run_id for r in run_rows(mlmd.open_store(config.metadata_connection()), config.pipeline_name)} \
        if store_exists else set()
    args = ["sweep", *grid, "--data", TINY, "--workspace", str(workspace)]
    for key, value in settings.items():
        if key not in {g.partition("=")[0] for g in grid}:
            args += ["--set", f"{key}={value}"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(args)
    rows = run_rows(mlmd.open_store(config.metadata_connection()), config.pipeline_name)
    return Sweep(config, [r.run_id for r in rows if r.run_id not in before], code, out.getvalue())


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist with `--dist loadfile`, each test file runs whole on one worker, so a module-scoped
    fixture is built once; the files that name `tiny_history` run together on one worker, which builds that
    session fixture once. (xdist's own `loadgroup` marks have no effect under pytest 9: it renames items
    through an attribute pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    tests_dir = os.path.dirname(os.path.abspath(__file__))
    shared = set()
    for name in os.listdir(tests_dir):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(tests_dir, name), encoding="utf-8") as f:
                if "tiny_history" in f.read():
                    shared.add(os.path.relpath(os.path.join(tests_dir, name), str(config.rootpath)))

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "tiny_history" if path in shared else path

    return Scheduling(config, log)


@pytest.fixture(scope="session")
def tiny_history(tmp_path_factory) -> Sweep:
    """A workspace whose history is one sweep over a trainer setting on the tiny dataset: `epochs=5,6`,
    two runs, the second reusing everything upstream of GloveTrainer."""
    return run_sweep(tmp_path_factory.mktemp("history"), "epochs=5,6")
