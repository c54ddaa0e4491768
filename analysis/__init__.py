"""Tools for looking at pipeline results after the fact: run history, the sliced-metrics notebook and its
headless report, and the notebook server. Depends on evaluation, metadata, orchestration, config and
serving; nothing below depends on it."""
