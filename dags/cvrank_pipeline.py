"""cvrank DAG: the whole pipeline, one task per TFX node, configured by the DAG run's params.

Built from the DAG spec at $CVRANK_AIRFLOW_SPEC (nodes and edges of the compiled pipeline, params
mirroring the pipeline settings; `bin/cvrank airflow compile` rewrites it). Trigger with any cvrank
setting (`bin/cvrank config` lists them), e.g.
`airflow dags trigger cvrank -c '{"data_dir": "/data/cvs-2026-11", "epochs": 40}'`.
"""

import os
import sys

from airflow.sdk import dag

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared task module beside this file
from cvrank_tasks import dag_kwargs, load_spec, wire_pipeline  # noqa: E402

SPEC = load_spec()


@dag(**dag_kwargs(SPEC, "cvrank"))
def cvrank():
    wire_pipeline(SPEC, "cvrank")


cvrank()
