"""Entering network namespaces, safely: by path, after checking the path really is one, for
the length of one call, and always back out of it before anything else runs.

``setns(CLONE_NEWNET)`` changes the namespace of the calling *thread* only, and everything the
thread creates stays bound to the namespace it was created in: sockets (netlink, AF_PACKET),
the ``/proc/sys/net`` view of files it opens, and processes it forks (iptables). So
``run_in(path, fn)`` runs ``fn`` with the calling thread in the namespace, then puts it back:

* in a process with one thread (a plugin exec: nothing else can run while it is away) the
  calling thread itself joins the namespace and returns to its own (kept open as an fd
  beforehand) before ``run_in`` returns or raises. No helper thread: under user-mode-linux a
  thread's start and join, four to eight per ADD, cost more than the netlink work they carry.
  If the way back ever failed, the process would be stranded in the wrong namespace: every
  later ``run_in`` (the host's too) then raises ``NetnsStranded`` instead of acting there;
* with other threads running (the lab, tests, the CLI), a short-lived helper thread joins the
  namespace and exits, and the caller never leaves its own (Go pins an OS thread for the same
  reason): another thread must never find the caller's namespace changed under it.

Both are ~5x cheaper than pyroute2's ``IPRoute(netns=...)``, which forks. ``iproute(path)``
hands out an ``rtnl.Rtnl`` (our netlink client) on a socket made this way.

Never ``O_CREAT``: pyroute2's netns helpers default to ``flags=os.O_CREAT`` and silently
create (and bind-mount) an empty namespace at a missing path; a DEL after the sandbox is gone
must see "not found" instead. Paths are checked like the reference library's ``GetNS``: the
file must be a namespace file (on nsfs: ``/var/run/netns/x``, or ``/proc/<pid>/ns/net``, which
leads to one) and be a *network* namespace.

Imports nothing of cnivpc but ``net.errors`` and ``net.rtnl``; no pyroute2 at import time.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import NetnsNotFound, NetnsStranded, NotANetns
from .rtnl import Rtnl

if TYPE_CHECKING:
    import ctypes

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
PROC_SUPER_MAGIC = 0x9FA0
# ioctl(fd, NS_GET_NSTYPE) -> the CLONE_NEW* type of a namespace file (Linux >= 4.11).
NS_GET_NSTYPE = 0xB703


# ctypes (with libffi) is loaded only where the stdlib has no call for it: setns before
# CPython 3.12, statfs without /proc. On 3.12 and later a plugin exec never loads it (~60
# page faults and two shared libraries less per exec).
@cache
def _libc() -> ctypes.CDLL:
    import ctypes

    # dlopen(NULL): the interpreter's own symbols, libc's among them. Not
    # ctypes.util.find_library("c"), which execs ``ldconfig -p`` to find a path: one more
    # process per plugin run (~0.2 s under user-mode-linux) for a library already loaded.
    return ctypes.CDLL(None, use_errno=True)


def _fs_type(path: str) -> int:
    """statfs(2)'s f_type (Python's os.statvfs does not expose it). f_type is the first
    field of struct statfs, a C long on every 64-bit Linux ABI."""
    import ctypes

    buf = ctypes.create_string_buffer(256)  # larger than struct statfs on any ABI
    if _libc().statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


@cache
def _nsfs_device() -> int | None:
    """The device of nsfs, the filesystem of every namespace file (this process's own network
    namespace is one); None without /proc."""
    try:
        return os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return None


def check(path: str) -> None:
    """Raise NetnsNotFound if ``path`` is missing, NotANetns if it is not a network netns.

    A namespace file (``/var/run/netns/x``, a bind mount of one, or ``/proc/<pid>/ns/net``,
    which stat follows to it) lives on nsfs: its device is nsfs's. Nothing else is opened
    (a FIFO would block the open, a device could act on it). Without /proc to learn nsfs's
    device, statfs's filesystem type says the same."""
    nsfs = _nsfs_device()
    try:
        if nsfs is not None:
            on_nsfs = os.stat(path).st_dev == nsfs
            detail = "not a namespace file (not on nsfs)"
        else:
            fs_type = _fs_type(path)
            on_nsfs = fs_type in (NSFS_MAGIC, PROC_SUPER_MAGIC)
            detail = f"filesystem type {fs_type:#x} is neither nsfs nor procfs"
    except FileNotFoundError as exc:
        raise NetnsNotFound(f"network namespace {path} does not exist") from exc
    except OSError as exc:
        raise NotANetns(f"cannot inspect network namespace path {path}", str(exc)) from exc
    if not on_nsfs:
        raise NotANetns(f"{path} is not a network namespace", detail)


@contextmanager
def open_fd(path: str) -> Iterator[int]:
    """A read-only fd on the namespace file at ``path`` (checked; never created)."""
    check(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # no O_CREAT, ever: see module doc
    except FileNotFoundError as exc:
        raise NetnsNotFound(f"network namespace {path} does not exist") from exc
    except OSError as exc:
        raise NotANetns(f"cannot open network namespace {path}", str(exc)) from exc
    try:
        try:
            ns_type = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError as exc:
            raise NotANetns(f"{path} is not a namespace file", str(exc)) from exc
        if ns_type != CLONE_NEWNET:
            raise NotANetns(f"{path} is not a network namespace",
                            f"namespace type {ns_type:#x}")
        yield fd
    finally:
        os.close(fd)


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # CPython 3.12 and later
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes

    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


_stranded: str | None = None  # why, once the main thread could not come back


def _alone() -> bool:
    """True when the calling thread is the process's only one (nothing can observe it away)."""
    return threading.active_count() == 1 and threading.current_thread() is threading.main_thread()


def _run_here(fd: int, home: int, fn: Callable[[], T]) -> T:
    """``fn()`` with the calling thread in the namespace ``fd``, back in ``home`` (its own)
    before returning or raising."""
    global _stranded
    _setns(fd)  # if this fails the thread has not moved
    try:
        return fn()
    finally:
        try:
            _setns(home)
        except OSError as exc:
            _stranded = str(exc)
            raise NetnsStranded("cannot return to the host network namespace", str(exc)) \
                from exc


def _home_fd() -> int | None:
    """An fd on the calling thread's own network namespace; None without /proc (then a helper
    thread does the work)."""
    try:
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def run_in(path: str | None, fn: Callable[[], T]) -> T:
    """Call ``fn()`` inside the network namespace at ``path`` (in the current one when
    ``path`` is None) and return its result or raise its exception."""
    if _stranded is not None:
        raise NetnsStranded("this process is stranded in another network namespace", _stranded)
    if path is None:
        return fn()
    with open_fd(path) as fd:
        home = _home_fd() if _alone() else None
        if home is not None:
            try:
                return _run_here(fd, home, fn)
            finally:
                os.close(home)
        outcome: dict[str, Any] = {}

        def body() -> None:
            try:
                _setns(fd)
                outcome["value"] = fn()
            except BaseException as exc:  # handed over to the calling thread
                outcome["error"] = exc

        # The thread ends right after fn: its namespace change dies with it.
        worker = threading.Thread(target=body, name="cnivpc-netns", daemon=True)
        worker.start()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def netlink_socket(path: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket bound for life to the netns at ``path``."""
    return run_in(path, lambda: socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE))


@contextmanager
def iproute(path: str | None = None) -> Iterator[Rtnl]:
    """A netlink client (``rtnl.Rtnl``) whose requests all act in the netns at ``path`` (the
    current netns when None); closed on exit."""
    with Rtnl(netlink_socket(path)) as client:
        yield client


def exists(path: str) -> bool:
    """True if ``path`` is an existing network namespace (any other problem raises)."""
    try:
        check(path)
    except NetnsNotFound:
        return False
    return True

