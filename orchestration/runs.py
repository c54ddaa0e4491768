"""Run ids and where each run's log goes; importable without TFX, so the CLI can name a run's log file
before anything noisy is loaded."""

from __future__ import annotations

import datetime
import os


def new_run_id() -> str:
    """A sortable, unique-enough run id: the UTC time to the microsecond."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def run_log_path(logs_dir: str, run_id: str) -> str:
    """The log file of run `run_id`."""
    return os.path.join(logs_dir, f"{run_id}.log")
