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

# The runtime's PID namespace (runtime/pidinit.py): nothing a command starts outlives it, signals sent to
# bin/cvrank reach the command, and the command's end (exit code or signal) passes back.
marker="cvrank-wrapper-check-$$"   # the argv[0] of the checks' sleeps, so that pgrep finds only ours
no_marker_left() {  # give the kernel a moment to finish the namespace's processes
  local i; for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -f "$marker" >/dev/null || return 0; sleep 0.2; done
  pgrep -af "$marker" >&2; pkill -f "$marker"; return 1
}
wait_for_file() { local i; for i in $(seq 300); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
t_no_process_left() {  # a command that starts a background `sleep 300` and exits leaves no sleep behind
  bin/cvrank exec -- bash -c "(exec -a $marker sleep 300) & sleep 0.5; exit 0" && no_marker_left
}
# A python command that counts the SIGTERMs it gets and exits with 10 + their number.
count_terms='import signal, sys, time
n = 0
def got(*args):
    global n
    n += 1
signal.signal(signal.SIGTERM, got)
open(sys.argv[1], "w").close()
while not n:
    time.sleep(0.05)
time.sleep(1.5)
sys.exit(10 + n)'
t_term_reaches_command() {  # SIGTERM to bin/cvrank's pid reaches the command once; its exit code comes back
  local ready="$root/.wrapper-check-$$-ready" rc
  bin/cvrank exec -- python -c "$count_terms" "$ready" &
  local pid=$!
  wait_for_file "$ready" && kill -TERM "$pid"; wait "$pid"; rc=$?; rm -f "$ready"; [ "$rc" = 11 ]
}
t_group_term_once() {  # `timeout` signals bin/cvrank and its process group: the command still gets it once
  local ready="$root/.wrapper-check-$$-ready-group" rc
  timeout --preserve-status -s TERM 8 bin/cvrank exec -- python -c "$count_terms" "$ready"; rc=$?
  rm -f "$ready"; [ "$rc" = 11 ]
}
t_signal_death_passes_back() {  # (in a shell of its own, which reports "Terminated" to /dev/null)
  [ "$(bash -c 'bin/cvrank exec -- sh -c "kill -TERM \$\$"; echo $?' 2>/dev/null)" = 143 ]
}
t_kill9_ends_everything() {  # even SIGKILL of bin/cvrank ends the command and what it started
  local ready="$root/.wrapper-check-$$-ready9"
  bin/cvrank exec -- bash -c "(exec -a $marker sleep 300) & touch '$ready'; exec -a $marker sleep 301" &
  local pid=$!
  wait_for_file "$ready"; sleep 0.3; kill -KILL "$pid"; wait "$pid" 2>/dev/null; rm -f "$ready"; no_marker_left
}
t_ctrl_c() {  # Ctrl-C on a terminal reaches the command once (KeyboardInterrupt), not the inits
  command -v script >/dev/null || { echo "  (skipped: no script(1) to make a terminal)"; return 0; }
  local ready="$root/.wrapper-check-$$-ready-tty" done="$root/.wrapper-check-$$-done-tty" out rc
  # The terminal's input stays open until the command has finished; ^C goes only once it is waiting.
  # ^C also reaches script's shell: the trap keeps a non-interactive dash (SHELL unset) alive.
  out="$({ wait_for_file "$ready"; printf '\003'; wait_for_file "$done"; } | script -qec "trap : INT; bin/cvrank exec -- python -c 'import sys, time
open(sys.argv[1], \"w\").close()
try:
    time.sleep(30)
except KeyboardInterrupt:
    print(\"interrupted\"); raise SystemExit(9)' $ready; echo exit=\$?; touch $done" /dev/null 2>&1)"; rc=$?
  rm -f "$ready" "$done"
  [ "$rc" = 0 ] && [ "$(printf '%s' "$out" | grep -c interrupted)" = 1 ] &&
    printf '%s' "$out" | grep -q '^exit=9' && return 0
  printf '  script exit %s, output:\n%s\n' "$rc" "$out" | sed 's/^/  /' >&2; return 1
}

check "exit code passes through" t_exit_code
check "stdout and stderr pass through" t_streams
check "files written under the project path appear on the host" t_project_path
check "the working directory is the same inside" t_same_cwd
check "CVRANK_BIND directories are mounted at the same path" t_extra_bind
check "the cached runtime is read-only inside" t_runtime_read_only
check "tfx 1.21.0 and airflow 3.3 inside" t_versions
check "a background process of the command does not outlive it" t_no_process_left
check "SIGTERM to bin/cvrank reaches the command once; its exit code passes back" t_term_reaches_command
check "SIGTERM to bin/cvrank's process group reaches the command once" t_group_term_once
check "a command killed by a signal: bin/cvrank ends with that signal" t_signal_death_passes_back
check "SIGKILL of bin/cvrank ends the command and its background processes" t_kill9_ends_everything
check "Ctrl-C on a terminal reaches the command once" t_ctrl_c
check "no mount is left behind on the host" t_no_mount_left

echo "wrapper: $passed passed, $failed failed"
[ "$failed" = 0 ]
