"""The Apache Beam options of the pipeline's Beam-based nodes.

`beam_pipeline_args` given (setting, CLI `--set`, DAG run conf) are used as they are. Left empty, the
DirectRunner runs each node in this process for a dataset below MULTI_PROCESS_FROM_BYTES of CSV files,
and with one worker process per core from there on. Worker processes each start an interpreter that
imports TFX and Beam and exchange data between processes: measured on 2 cores, that fixed and per-record
cost outweighed the second core for every node on the bundled dataset (a cold run 99 s in one process
against 142 s with two workers), and for CooccurrenceGen up to 8 times its corpus (25.6 M tokens:
`benchmarks/cooccurrence_throughput.py --corpus synthetic --tokens N --workers 1|2`). The threshold sits
above the largest size measured; more cores, or a cluster runner, are chosen through `beam_pipeline_args`.

Both name Beam's FnApiRunner, which the DirectRunner hands these pipelines to in the end: the DirectRunner
first tries the Prism runner, which it downloads (without network access the attempt costs about 0.7 s
per Beam pipeline, 8 s of a cold run; with it, the nodes would run on a binary fetched at run time).

Both also name the project's setup.py as the workers' Python dependency: that is what a remote runner
would have to install, and, given any such flag, TFX does not build an sdist of its own package for every
Beam node (about 0.7 s each, 7 s of a cold run). The FnApiRunner's workers run in this environment and
install nothing.
"""

from __future__ import annotations

import os
from typing import List

from config import PROJECT_ROOT, PipelineConfig
from dataset.files import dataset_files

MULTI_PROCESS_FROM_BYTES = 256 * 1024 * 1024
FN_API_RUNNER = "--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner"
SETUP_FILE = "--setup_file=" + os.path.join(PROJECT_ROOT, "setup.py")
# Tuples: TFX's Beam executors extend the list they are given, and these are shared by every caller.
IN_PROCESS = (FN_API_RUNNER, SETUP_FILE, "--direct_running_mode=in_memory", "--direct_num_workers=1")
MULTI_PROCESS = (FN_API_RUNNER, SETUP_FILE, "--direct_running_mode=multi_processing", "--direct_num_workers=0")


def dataset_bytes(data_dir: str) -> int:
    """The total size of the dataset's CSV files (0 for a missing directory: FileCheck reports it)."""
    return sum(os.path.getsize(path) for paths in dataset_files(data_dir).values() for path in paths
               if os.path.isfile(path))


def beam_pipeline_args(config: PipelineConfig) -> List[str]:
    """The Beam options of the pipeline of `config` (module docstring), as a new list."""
    if config.beam_pipeline_args:
        return list(config.beam_pipeline_args)
    return list(MULTI_PROCESS if dataset_bytes(config.data_dir) >= MULTI_PROCESS_FROM_BYTES else IN_PROCESS)
