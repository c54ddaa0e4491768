"""Tools for looking at pipeline results after the fact: run history, the sliced-metrics notebook and its
headless report, the notebook server, and the lineage of pushed models. Depends on evaluation, metadata, orchestration, config and
serving; nothing below depends on it."""

import os


def reports_dir(workspace: str) -> str:
    """Where the tools write what they make for a person (reports, lineage pictures): <workspace>/reports."""
    return os.path.join(os.path.abspath(workspace), "reports")
