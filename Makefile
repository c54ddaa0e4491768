# The two commands: `make run` (the main job) and `make test`. Both build the runtime when it is missing.
PYTEST_ARGS ?=

.PHONY: run serve airflow test test-fast runtime lock clean-runtime

run:
	bin/cvrank run

# Serves what `make run` pushed (workspace/serving/cvrank) over TF Serving's REST (8501) and gRPC (8500) APIs.
serve:
	bin/cvrank serve

# Airflow 3 on 127.0.0.1:8080 (UI, REST API, scheduler, DAG processor, triggerer), detached; it prints the
# URL and the login. `bin/cvrank airflow status` / `bin/cvrank airflow down`.
airflow:
	bin/cvrank airflow up

test:
	tests/runtime/test_wrapper.sh
	bin/cvrank exec -- python -m pytest $(PYTEST_ARGS)

test-fast:
	bin/cvrank exec -- python -m pytest -m "not slow" $(PYTEST_ARGS)

runtime:
	bin/cvrank runtime build

lock:
	bin/cvrank exec -- runtime/lock.sh

clean-runtime:
	bin/cvrank runtime clean
