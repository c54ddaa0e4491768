"""Tools for looking at pipeline results after the fact: run history, the sliced-metrics notebook and its
headless report, the notebook server, and the lineage of pushed models. Depends on evaluation, metadata, orchestration, config and
serving; nothing below depends on it."""
