#!/usr/bin/env bash
# Runs a command inside the runtime root filesystem. Must be started by `unshare` (see bin/cvrank):
# every mount made here is private to this process tree and disappears with it. The command runs in its own
# PID namespace (runtime/pidinit.py): when it exits, or this process is killed, every process it started
# ends too; signals sent to this process are passed on to it, and its exit code or signal passes back.
#   enter.sh [--writable] ROOTFS WORKDIR BIND_DIRS(colon-separated) -- CMD ARGS...
set -euo pipefail
writable=0
if [ "${1:-}" = --writable ]; then writable=1; shift; fi
root="$1" workdir="$2" binds="$3"; shift 3
[ "${1:-}" = -- ] && shift

# Host directories appear at the same absolute path inside, so paths stored in ML Metadata hold on both sides.
# Their mount points are created before the root is made read-only.
IFS=: read -r -a dirs <<<"$binds"
for d in "${dirs[@]}"; do [ -n "$d" ] && mkdir -p "$root$d"; done

mount --bind "$root" "$root"
if [ "$writable" = 0 ]; then
  # The cached runtime is shared by every clone on the machine: nothing a run does may change it.
  mount -o remount,bind,ro "$root" "$root"
fi
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
for d in "${dirs[@]}"; do
  [ -n "$d" ] || continue
  mkdir -p "$root$d" 2>/dev/null || true   # a path under /tmp lives on the fresh tmpfs
  mount --rbind "$d" "$root$d"
done

passenv=()
for v in $(compgen -e); do
  case "$v" in
    CVRANK_*|CI|TERM|COLUMNS|LINES|PYTEST_ADDOPTS|TF_CPP_MIN_LOG_LEVEL|AIRFLOW__*|OPENBLAS_*|OMP_NUM_THREADS|TZ) passenv+=("$v=${!v}");;
  esac
done
# The root filesystem's python3 runs the init (pidinit.py) from its text, passed in the environment: the
# project may not be mounted (runtime/build.sh), and `ps` shows a short command line.
CVRANK_INIT="$(<"$(dirname "${BASH_SOURCE[0]}")/pidinit.py")" \
exec chroot "$root" /usr/bin/python3 -I -S -c 'import os; exec(os.environ.pop("CVRANK_INIT"))' /usr/bin/env -i \
  HOME=/tmp/home LANG=C.UTF-8 LC_ALL=C.UTF-8 \
  PATH=/opt/cvrank/tfx/bin:/opt/cvrank/airflow/bin:/opt/cvrank/tools/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  PYTHONPATH="${CVRANK_PROJECT_ROOT:-}" \
  CVRANK_IN_RUNTIME=1 \
  "${passenv[@]}" \
  /bin/sh -c 'mkdir -p "$HOME" && cd "$0" && exec "$@"' "$workdir" "$@"
