"""Work a plugin does after it has answered, without making the runtime wait for it (the IPAM's
pool refill: an Assign, or the next ENI, which takes seconds).

Why a detached child: there is no daemon, and a CNI runtime (containerd and CRI-O through
libcni, or a harness using ``subprocess.run(capture_output=True)``) treats the plugin as done
only when the process has exited AND its stdout/stderr pipes are at EOF. Work done in the same
process after printing the result would delay the pod by as long as it takes; a child that kept
a copy of either pipe would too. So, once the result is written and flushed:

* the process forks; the parent returns at once and exits normally with its own exit code;
* the child calls ``setsid()`` (no controlling terminal, out of the runtime's process group),
  points fds 0/1/2 at /dev/null, and points every other inherited descriptor at /dev/null too
  (so it holds no pipe or socket of the parent's; dup2 rather than close, so a stale Python
  object closing "its" fd later cannot close a descriptor the child opened since), except the
  log files (logging to the configured ``logFile`` keeps working);
* it runs the tasks, each in ``try``: a failing task is logged, never reported anywhere else
  (the answer is already out), and ``os._exit``\\ s; ``SIGALRM`` at ``deadline`` seconds kills
  it if a task hangs.

If forking fails the tasks run inline, after the answer was flushed. ``CNIVPC_AFTERWARDS``
chooses: ``detach`` (the default), ``inline`` (in the plugin process, before it exits: the
runtime waits) or ``off`` (never run). A task opens what it needs itself (a fresh state
connection, a fresh deadline): the parent's are closed or shared.

Handlers register tasks with ``Request.after_answer``; the dispatcher collects them
(``collect``) for one invocation, so requests built inside a handler (the fused plugin's
per-step requests) register into the same list. Stdlib only.
"""

from __future__ import annotations

import contextvars
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from . import logs

Task = Callable[[], None]

MODE_ENV = "CNIVPC_AFTERWARDS"
MODES = ("detach", "inline", "off")

log = logs.get("afterwards")

_pending: contextvars.ContextVar[list[Task] | None] = contextvars.ContextVar(
    "cnivpc_afterwards", default=None)


def pending() -> list[Task]:
    """The task list of the invocation being dispatched (a new, unobserved list outside one):
    ``Request``'s default, so every request of one invocation shares it."""
    current = _pending.get()
    return current if current is not None else []


@contextmanager
def collect() -> Iterator[list[Task]]:
    """Collect the tasks registered during the block (the dispatcher wraps one invocation)."""
    tasks: list[Task] = []
    token = _pending.set(tasks)
    try:
        yield tasks
    finally:
        _pending.reset(token)


def mode(getenv: Callable[[str], str | None] = os.environ.get) -> str:
    value = (getenv(MODE_ENV) or "detach").strip().lower()
    return value if value in MODES else "detach"


def run(tasks: list[Task], *, detach: bool, deadline: float) -> bool:
    """Run ``tasks`` now: in a detached child (``detach``), else inline. Returns in the
    plugin process only; True when a child took them. The caller must have flushed its
    answer. A child never returns: it exits with ``os._exit(0)``."""
    if not tasks:
        return False
    if detach:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("cannot fork for the work after the answer (%s): running it inline", exc)
        else:
            if pid:
                return True
            _child(tasks, deadline)  # never returns
    _run_all(tasks)
    return False


def _run_all(tasks: list[Task]) -> None:
    for task in tasks:
        try:
            task()
        except BaseException:  # the answer is out: nothing may escape, not even SystemExit
            log.exception("work after the answer failed")


def _child(tasks: list[Task], deadline: float) -> None:
    try:
        os.setsid()
        _detach_descriptors()
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(max(1, int(deadline + 0.999)))
        _run_all(tasks)
        logs.flush()
    finally:
        os._exit(0)


def _log_fds() -> set[int]:
    """Descriptors of the log files the cnivpc logger writes (kept open in the child), past
    0/1/2 (those go to /dev/null)."""
    return {fd for fd in logs.file_fds() if fd > 2}


def _open_fds() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        try:
            limit = min(os.sysconf("SC_OPEN_MAX"), 4096)
        except (OSError, ValueError):
            limit = 1024
        return list(range(limit))


def _detach_descriptors() -> None:
    """fds 0/1/2 and every inherited descriptor but the log files -> /dev/null."""
    keep = _log_fds()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in _open_fds():
        if fd == null or fd in keep:
            continue
        try:
            os.fstat(fd)
            os.dup2(null, fd, inheritable=fd < 3)
        except OSError:
            pass  # not open (the listing's own directory fd, or a gap in the fallback range)
    for fd in (0, 1, 2):  # also when they were closed and so not listed
        with suppress(OSError):
            os.dup2(null, fd)
    if null > 2:
        os.close(null)
