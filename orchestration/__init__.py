"""Running pipelines: the local node runner, Airflow (services, tasks, REST client), run summaries, locks."""
