#!/usr/bin/env bash
# Host-side checks of bin/cvrank's runtime wrapper (they cannot run inside the runtime they test).
# Prints one line per check and a closing "wrapper: N passed, M failed"; exits non-zero on a failure.
set -u
cd "$(dirname "$0")/../.."
root="$PWD"
passed=0 failed=0
check() { # name, then a command that must succeed
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "PASS $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}

mounts_before="$(cat /proc/self/mountinfo)"

t_exit_code() { bin/cvrank exec -- sh -c 'exit 7'; [ $? = 7 ]; }
t_streams() {
  local out err; err="$(mktemp)"
  out="$(bin/cvrank exec -- sh -c 'echo to-stdout; echo to-stderr >&2' 2>"$err")"
  [ "$out" = to-stdout ] && [ "$(cat "$err")" = to-stderr ]; local rc=$?; rm -f "$err"; return $rc
}
t_project_path() {
  local f="$root/.wrapper-check-$$"
  bin/cvrank exec -- sh -c "echo written-inside > '$f'" && [ "$(cat "$f")" = written-inside ]
  local rc=$?; rm -f "$f"; return $rc
}
t_same_cwd() { [ "$(cd tests && ../bin/cvrank exec -- pwd)" = "$root/tests" ]; }
t_extra_bind() {
  local d; d="$(mktemp -d)"
  CVRANK_BIND="$d" bin/cvrank exec -- sh -c "echo x > '$d/f'" && [ "$(cat "$d/f")" = x ]
  local rc=$?; rm -rf "$d"; return $rc
}
t_runtime_read_only() { ! bin/cvrank exec -- sh -c 'touch /opt/cvrank/probe' 2>/dev/null; }
t_versions() {
  [ "$(bin/cvrank exec -- python -c 'import tfx; print(tfx.__version__)')" = 1.21.0 ] &&
    bin/cvrank exec -- airflow version 2>/dev/null | grep -q '^3\.3\.'
}
t_no_mount_left() { [ "$(cat /proc/self/mountinfo)" = "$mounts_before" ]; }

check "exit code passes through" t_exit_code
check "stdout and stderr pass through" t_streams
check "files written under the project path appear on the host" t_project_path
check "the working directory is the same inside" t_same_cwd
check "CVRANK_BIND directories are mounted at the same path" t_extra_bind
check "the cached runtime is read-only inside" t_runtime_read_only
check "tfx 1.21.0 and airflow 3.3 inside" t_versions
check "no mount is left behind on the host" t_no_mount_left

echo "wrapper: $passed passed, $failed failed"
[ "$failed" = 0 ]
