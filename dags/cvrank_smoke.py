"""cvrank smoke DAG: CsvExampleGen -> StatisticsGen -> SchemaGen on the dataset's jobs.

`airflow dags trigger cvrank_smoke -c '{"data_dir": "/path/to/data"}'`
"""

import os
import sys

from airflow.sdk import dag

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared task module beside this file
from cvrank_tasks import wire_pipeline  # noqa: E402

NODE_UPSTREAMS = {
    "CsvExampleGen": [],
    "StatisticsGen": ["CsvExampleGen"],
    "SchemaGen": ["StatisticsGen"],
}


# One DAG run at a time: runs of one pipeline share its ML Metadata and artifacts.
@dag(dag_id="cvrank_smoke", schedule=None, catchup=False, max_active_runs=1, tags=["cvrank"])
def cvrank_smoke():
    wire_pipeline("smoke", NODE_UPSTREAMS)


cvrank_smoke()
