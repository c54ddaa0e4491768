"""A three-node pipeline (CsvExampleGen, StatisticsGen, SchemaGen) that proves the runtime works:
TFX components, Beam, and ML Metadata on SQLite, including cache reuse on a second run."""

from __future__ import annotations

import os
from typing import List

from tfx.components.example_gen.csv_example_gen.component import CsvExampleGen
from tfx.components.schema_gen.component import SchemaGen
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.orchestration.pipeline import Pipeline

from config import PipelineConfig
from pipeline import beam


def create_smoke_pipeline(csv_dir: str, config: PipelineConfig) -> Pipeline:
    """The smoke pipeline over the CSV files in `csv_dir`, named `<pipeline_name>-smoke`, cached."""
    example_gen = CsvExampleGen(input_base=csv_dir)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
    name = f"{config.pipeline_name}-smoke"
    return Pipeline(
        pipeline_name=name,
        pipeline_root=os.path.join(config.workspace, "pipelines", name),
        components=[example_gen, statistics_gen, schema_gen],
        enable_cache=True,
        metadata_connection_config=config.metadata_connection(smoke_metadata_path(config)),
        beam_pipeline_args=beam.beam_pipeline_args(config),
    )


def smoke_metadata_path(config: PipelineConfig) -> str:
    return os.path.join(config.workspace, "metadata", f"{config.pipeline_name}-smoke.sqlite")


def smoke_nodes() -> List[str]:
    return ["CsvExampleGen", "StatisticsGen", "SchemaGen"]


def default_smoke_csv_dir(config: PipelineConfig) -> str:
    return os.path.join(config.data_dir, "jobs")
