"""Environment for Airflow commands: AIRFLOW_HOME under the workspace, cvrank's dags/ folder, SQLite."""

from __future__ import annotations

import os
from typing import Dict

from config import PROJECT_ROOT


def airflow_environ(workspace: str) -> Dict[str, str]:
    """A copy of os.environ set up so `airflow` uses `<workspace>/airflow` and cvrank's DAGs."""
    env = dict(os.environ)
    home = os.path.join(workspace, "airflow")
    env.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(PROJECT_ROOT, "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{os.path.join(home, 'airflow.db')}",
        CVRANK_TFX_PYTHON=env.get("CVRANK_TFX_PYTHON", "/opt/cvrank/tfx/bin/python"),
    )
    os.makedirs(home, exist_ok=True)
    return env
