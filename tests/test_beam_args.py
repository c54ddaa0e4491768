"""The Beam options of the pipeline's nodes: as given, or chosen by the dataset's size (pipeline/beam.py)."""

import os
import shutil

from config import PROJECT_ROOT, PipelineConfig
from pipeline import beam
from pipeline.pipeline import create_pipeline
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

TINY = os.path.join(PROJECT_ROOT, "tests", "data", "tiny")


def test_a_small_dataset_runs_in_process_and_a_large_one_with_worker_processes(tmp_path):
    small = PipelineConfig(data_dir=TINY, workspace=str(tmp_path / "ws"))
    assert beam.dataset_bytes(TINY) < beam.MULTI_PROCESS_FROM_BYTES
    assert beam.beam_pipeline_args(small) == list(beam.IN_PROCESS)
    large = tmp_path / "large"
    shutil.copytree(TINY, large)
    with open(large / "corpus" / "corpus.csv", "r+b") as f:  # a sparse file: the size, not the disk space
        f.truncate(beam.MULTI_PROCESS_FROM_BYTES)
    assert beam.dataset_bytes(str(large)) >= beam.MULTI_PROCESS_FROM_BYTES
    assert beam.beam_pipeline_args(small.with_overrides({"data_dir": str(large)})) == list(beam.MULTI_PROCESS)
    assert beam.dataset_bytes(str(tmp_path / "missing")) == 0


def test_given_options_are_used_as_they_are_by_every_beam_node(tmp_path):
    given = ["--direct_num_workers=3", "--direct_running_mode=multi_threading"]
    config = PipelineConfig(data_dir=TINY, workspace=str(tmp_path), beam_pipeline_args=given)
    assert beam.beam_pipeline_args(config) == given
    assert create_pipeline(config).beam_pipeline_args == given
    assert create_pipeline(config.with_overrides({"beam_pipeline_args": []})).beam_pipeline_args == list(beam.IN_PROCESS)


class _NoOpBeamExecutor(BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        pass


def test_a_beam_executor_extending_its_options_changes_no_later_pipeline(tmp_path):
    """TFX's Beam executors extend the option list they are given: that must not reach the next pipeline's
    options (they are part of every Beam node's cache key)."""
    config = PipelineConfig(data_dir=TINY, workspace=str(tmp_path))
    before = beam.beam_pipeline_args(config)
    given = beam.beam_pipeline_args(config)
    _NoOpBeamExecutor(BaseBeamExecutor.Context(beam_pipeline_args=given, tmp_dir=str(tmp_path)))
    assert given != before  # what the executor did to its own list
    assert beam.beam_pipeline_args(config) == before == list(beam.IN_PROCESS)
