# Shared definitions of the cvrank runtime: where it lives, what keys it, how to enter it.
# Sourced by bin/cvrank, runtime/build.sh and runtime/enter.sh; defines functions only.

CVRANK_RECIPE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CVRANK_PROJECT_ROOT="$(cd "$CVRANK_RECIPE_DIR/.." && pwd)"
CVRANK_SUITE="trixie"
# postgresql and redis-server serve the local scale-out cluster (`cvrank airflow up --cluster`); graphviz draws
# `cvrank lineage --format svg|png`; git records the code version of each run.
CVRANK_DEB_PACKAGES="python3,python3-venv,python3-dev,g++,ca-certificates,postgresql,redis-server,graphviz,git"
# Files whose content defines what the runtime holds. Any change to one of them (or to the suite and
# package list above) yields a new runtime key, hence a rebuild; how the runtime is entered is not part of it.
CVRANK_RECIPE_FILES="build.sh install-envs.sh requirements-uv.lock requirements-tfx.lock requirements-airflow.lock"

cvrank_die() { echo "cvrank: $*" >&2; exit 1; }

cvrank_cache_root() { echo "${CVRANK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cvrank}"; }

# The runtime key: a hash of the recipe files, so a changed lock file or script rebuilds the runtime.
cvrank_runtime_key() {
  (cd "$CVRANK_RECIPE_DIR" && cat $CVRANK_RECIPE_FILES && echo "$CVRANK_SUITE $CVRANK_DEB_PACKAGES") \
    | sha256sum | cut -c1-16
}

cvrank_runtime_dir() { echo "$(cvrank_cache_root)/runtime-$(cvrank_runtime_key)"; }

# Namespace flags: as root a private mount namespace is enough; otherwise a user namespace maps us to root.
# No --fork: unshare execs enter.sh in place (same pid), and the runtime's init (runtime/pidinit.py)
# creates the PID namespace and forks into it. `unshare --fork` would block SIGINT and SIGTERM in its
# waiting parent, so a `kill` of bin/cvrank's pid would never reach the command.
cvrank_unshare_flags() {
  if [ "$(id -u)" = 0 ]; then
    echo "--mount --propagation private"
  else
    echo "--user --map-root-user --mount --propagation private"
  fi
}

cvrank_check_namespaces() {
  # shellcheck disable=SC2046
  if ! unshare $(cvrank_unshare_flags) true 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      cvrank_die "cannot create a mount namespace ('unshare --mount' failed). The runtime needs CAP_SYS_ADMIN or unprivileged user namespaces."
    fi
    cvrank_die "cannot create a user namespace ('unshare --user --map-root-user' failed). Run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0; on Ubuntu 24.04+ also kernel.apparmor_restrict_unprivileged_userns=0)."
  fi
}
