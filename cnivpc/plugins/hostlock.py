"""Host-wide locks for the plugins: ``fcntl.flock`` on a file, polled until a deadline.

The IPAM holds its lock only while deciding (which IP, which ENI, which batch), never across
slow EC2 waits; the ptp plugin holds its own around the route-table probe and the shared
iptables rules. A timeout raises ``TryAgainLater`` (CNI code 11): the original swallowed its
lock timeout and exited 0 with no output. flock is released by the kernel when the process
dies, so there is no stale-lock cleanup (the original's PID lockfile needed it, and PID reuse
could fool it).

Stdlib only; imports nothing of cnivpc but ``cni.errors`` and ``cni.paths``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..cni.errors import TryAgainLater
from ..cni.paths import open_file

POLL_INTERVAL = 0.01


@contextmanager
def host_lock(path: str, timeout: float, *, holder: str = "another cnivpc process",
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` for the block. The file is opened by
    ``cni.paths.open_file``: created 0600 (missing directories 0700), never through a
    symlink (a ``lockPath`` planted as a link cannot make us create or lock a file elsewhere)."""
    fd = open_file(path)
    try:
        deadline = clock() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if clock() >= deadline:
                raise TryAgainLater(f"timed out after {timeout:.1f}s waiting for the lock {path}",
                                    f"{holder} holds it; retry")
            sleep(POLL_INTERVAL)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock
