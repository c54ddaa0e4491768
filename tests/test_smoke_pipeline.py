"""A tiny TFX pipeline runs, and an unchanged second run reuses every node from the cache,
as ML Metadata's execution states show."""

import csv

import pytest

from config import PipelineConfig
from metadata import mlmd
from orchestration import runner
from pipeline.smoke import create_smoke_pipeline, smoke_metadata_path, smoke_nodes

pytestmark = pytest.mark.slow  # runs a real TFX pipeline (CsvExampleGen, StatisticsGen, SchemaGen)


def _write_rows(path, n=24):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job_id", "title", "text"])
        for k in range(n):
            w.writerow([f"j{k}", f"title {k % 3}", f"develops software in c# and .net, case {k}"])


def test_smoke_pipeline_runs_then_is_cached(tmp_path):
    _write_rows(tmp_path / "csv" / "rows.csv")
    config = PipelineConfig(workspace=str(tmp_path / "ws"))
    pipeline = create_smoke_pipeline(str(tmp_path / "csv"), config)

    first = runner.run_pipeline(pipeline)
    store = mlmd.sqlite_store(smoke_metadata_path(config))
    name = pipeline.pipeline_info.pipeline_name
    assert mlmd.run_node_states(store, name, first) == {n: "COMPLETE" for n in smoke_nodes()}

    second = runner.run_pipeline(create_smoke_pipeline(str(tmp_path / "csv"), config))
    assert second != first
    assert mlmd.run_node_states(store, name, second) == {n: "CACHED" for n in smoke_nodes()}

    schema_type = store.get_artifacts_by_type("Schema")
    assert len(schema_type) == 1, "the cached run must not produce a second schema"
