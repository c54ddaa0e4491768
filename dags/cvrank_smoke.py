"""cvrank smoke DAG: CsvExampleGen -> StatisticsGen -> SchemaGen on the dataset's jobs.

Built from the DAG spec at $CVRANK_AIRFLOW_SPEC, like the `cvrank` DAG.
`airflow dags trigger cvrank_smoke -c '{"data_dir": "/path/to/data"}'`
"""

import os
import sys

from airflow.sdk import dag

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared task module beside this file
from cvrank_tasks import dag_kwargs, load_spec, wire_pipeline  # noqa: E402

SPEC = load_spec()


@dag(**dag_kwargs(SPEC, "cvrank_smoke"))
def cvrank_smoke():
    wire_pipeline(SPEC, "cvrank_smoke")


cvrank_smoke()
