"""cvrank DAG: the whole pipeline, one task per TFX node, configured by the DAG run's conf.

Trigger with any cvrank setting (`bin/cvrank config` lists them), e.g.
`airflow dags trigger cvrank -c '{"data_dir": "/data/cvs-2026-11", "epochs": 40}'`.
"""

import os
import sys

from airflow.sdk import dag

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared task module beside this file
from cvrank_tasks import wire_pipeline  # noqa: E402

# The pipeline's edges (pipeline/pipeline.py); tests check they match the compiled pipeline.
NODE_UPSTREAMS = {
    "FileCheck": [],
    "texts_example_gen": ["FileCheck"],
    "jobs_example_gen": ["FileCheck"],
    "judgments_example_gen": ["FileCheck"],
    "texts_schema_gen": [],
    "jobs_schema_gen": [],
    "judgments_schema_gen": [],
    "texts_statistics_gen": ["texts_example_gen"],
    "jobs_statistics_gen": ["jobs_example_gen"],
    "judgments_statistics_gen": ["judgments_example_gen"],
    "texts_example_validator": ["texts_schema_gen", "texts_statistics_gen"],
    "jobs_example_validator": ["jobs_schema_gen", "jobs_statistics_gen"],
    "judgments_example_validator": ["judgments_schema_gen", "judgments_statistics_gen"],
    "DataCheck": ["texts_example_gen", "jobs_example_gen", "judgments_example_gen",
                  "texts_example_validator", "jobs_example_validator", "judgments_example_validator"],
    "Transform": ["DataCheck", "texts_example_gen", "texts_schema_gen"],
    "CooccurrenceGen": ["Transform"],
    "GloveTrainer": ["CooccurrenceGen", "DataCheck", "Transform", "texts_example_gen"],
    "previous_blessed_model_resolver": ["GloveTrainer"],
    "Evaluator": ["DataCheck", "GloveTrainer", "previous_blessed_model_resolver"],
    "Pusher": ["Evaluator", "GloveTrainer"],
}


# One DAG run at a time: runs of one pipeline share its ML Metadata and artifacts.
@dag(dag_id="cvrank", schedule=None, catchup=False, max_active_runs=1, tags=["cvrank"])
def cvrank():
    wire_pipeline("cvrank", NODE_UPSTREAMS)


cvrank()
