# cvrank-init: the runtime's own PID namespace. enter.sh runs this with the root filesystem's
# /usr/bin/python3 from its text (so that it works before the project is mounted too) followed by CMD ARGS.
#
# This process (the outer init) stays in the host's PID namespace with the pid bin/cvrank had, so whatever
# the caller does to bin/cvrank's pid reaches it. It creates a new PID namespace and forks its PID 1 (the
# inner init), which mounts that namespace's /proc and forks CMD. When CMD exits, the inner init exits with
# it and the kernel kills every other process of the namespace: nothing CMD started (daemons, Beam or
# Airflow workers, a `sleep 300 &`) outlives the command. The inner init also dies with the outer one
# (PR_SET_PDEATHSIG, as `unshare --kill-child` does), so even `kill -9` of bin/cvrank ends everything.
#
# Signals (SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2) reach CMD exactly once:
# - sent to bin/cvrank's pid alone (`kill PID`, subprocess.terminate()): the outer init passes it on;
# - sent to its process group (`timeout`, `kill -- -PGID`) or by the terminal (Ctrl-C, Ctrl-\, a hang-up):
#   CMD gets it directly, since it stays in that process group (and so in the terminal's foreground), and
#   the inits do not pass it on. The inner init, also in that group, tells the two cases apart: the outer
#   init hands it what it would pass on through a pipe, and it drops a signal it received directly itself
#   within the last second (`timeout` sends one to bin/cvrank and one to its group).
# CMD is never PID 1 (which ignores signals it has no handler for). The outer init ends as CMD did: with its
# exit code, or killed by the same signal.
#
# Why not `unshare --pid --fork --kill-child`: util-linux's unshare blocks SIGINT and SIGTERM in its
# waiting parent, so `kill -TERM`, `timeout` or subprocess.terminate() on bin/cvrank would never reach CMD.
import ctypes
import os
import select
import signal
import sys
import time

PASSED_ON = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
DOORBELL = signal.SIGRTMIN  # outer -> inner: "read the pipe"; dequeued after any standard signal pending
WATCHED = PASSED_ON | {signal.SIGCHLD, DOORBELL}
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (e.g. the terminal's Ctrl-C), not a process
PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


def fail(message):
    sys.stderr.write(f"cvrank: {message}\n")
    os._exit(126)


def run_command(argv, mask, ignored):
    """In the forked child: the signal state the command would have had without the inits, then exec."""
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        sys.stderr.write(f"cvrank: cannot run {argv[0]}: {err.strerror}\n")
    os._exit(127)


def inner_init(argv, mask, ignored, status_w, alive_r, forward_r):
    """PID 1 of the namespace: mounts its /proc, runs the command, passes on what the outer init hands it,
    reaps orphans, and exits when the command does (writing its wait status to `status_w`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if select.select([alive_r], [], [], 0)[0]:  # EOF: the outer init died before the line above
        os._exit(1)
    os.close(alive_r)
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        fail(f"cannot mount /proc in the runtime's PID namespace: {os.strerror(ctypes.get_errno())}")
    os.set_blocking(forward_r, False)
    command = os.fork()
    if command == 0:
        os.close(status_w)
        os.close(forward_r)
        run_command(argv, mask, ignored)
    direct = {}  # signal -> when it last came straight to this process group (the command got it too)
    while True:
        info = signal.sigwaitinfo(WATCHED)
        if info.si_signo == DOORBELL:
            try:
                handed = os.read(forward_r, 64)
            except BlockingIOError:
                handed = b""
            for sig in handed:
                if time.monotonic() - direct.get(sig, -10.0) > 1.0:
                    try:
                        os.kill(command, sig)
                    except ProcessLookupError:
                        pass
        elif info.si_signo != signal.SIGCHLD:
            if info.si_code != SI_KERNEL:
                direct[info.si_signo] = time.monotonic()
        else:
            while True:  # reap the command and any orphan that was re-parented to PID 1
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                if pid == command:
                    os.write(status_w, str(status).encode())
                    os._exit(0)  # the kernel now kills whatever is left in the namespace


def end_like(status):
    """Ends this process the way the command ended: its exit code, or its fatal signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def outer_init(argv):
    ignored = {sig for sig in PASSED_ON if signal.getsignal(sig) == signal.SIG_IGN}  # e.g. nohup's SIGHUP
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    try:
        os.unshare(os.CLONE_NEWPID)
    except OSError as err:
        fail(f"cannot create a PID namespace for the runtime: {err.strerror}")
    status_r, status_w = os.pipe()
    alive_r, alive_w = os.pipe()
    forward_r, forward_w = os.pipe()
    inner = os.fork()
    if inner == 0:
        for fd in (status_r, alive_w, forward_w):
            os.close(fd)
        inner_init(argv, mask, ignored, status_w, alive_r, forward_r)
    for fd in (status_w, alive_r, forward_r):
        os.close(fd)
    while True:
        info = signal.sigwaitinfo(WATCHED)
        if info.si_signo == signal.SIGCHLD:
            pid, status = os.waitpid(inner, os.WNOHANG)
            if pid == inner:
                break
        elif info.si_signo in PASSED_ON and info.si_code != SI_KERNEL:
            try:
                os.write(forward_w, bytes([info.si_signo]))
                os.kill(inner, DOORBELL)
            except (ProcessLookupError, BrokenPipeError):
                pass
    reported = os.read(status_r, 32)
    end_like(int(reported) if reported else status)


if len(sys.argv) < 2:
    fail("cvrank-init: no command given")
outer_init(sys.argv[1:])
