#!/usr/bin/env bash
# Regenerates the hashed lock files from the requirements-*.in files (run inside the runtime:
# `make lock`). Changing a lock file changes the runtime key, so the next command rebuilds the runtime.
set -euo pipefail
cd "$(dirname "$0")"
for name in uv tfx airflow; do
  excludes=()
  [ -f "requirements-$name.excludes" ] && excludes=(--excludes "requirements-$name.excludes")
  uv pip compile --quiet --python-version 3.13 --python-platform x86_64-manylinux_2_39 --generate-hashes \
    "${excludes[@]}" "requirements-$name.in" -o "requirements-$name.lock"
done
