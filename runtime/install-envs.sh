#!/bin/sh
# Installs cvrank's two virtual environments from the hashed lock files beside this script.
# Runs inside a Debian 13 system (the runtime root filesystem, or the Docker image):
#   /opt/cvrank/tools    uv itself
#   /opt/cvrank/tfx      TFX 1.21 and the project's test dependencies (Python 3.13)
#   /opt/cvrank/airflow  Apache Airflow 3.3 (cannot share a venv with TFX: ml-metadata pins attrs<24)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${CVRANK_PREFIX:-/opt/cvrank}"
export UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1

python3 -m venv "$prefix/tools"
"$prefix/tools/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$here/requirements-uv.lock"
uv="$prefix/tools/bin/uv"

for env in tfx airflow; do
  echo "cvrank runtime: installing the $env env" >&2
  "$uv" venv --quiet --python /usr/bin/python3 "$prefix/$env"
  "$uv" pip sync --python "$prefix/$env/bin/python" --require-hashes --compile-bytecode "$here/requirements-$env.lock"
done
