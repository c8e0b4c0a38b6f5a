"""A host-wide lock serialising the ptp plugin's changes to shared host state: the route
table probe (two concurrent ADDs must not pick the same free table) and append-unique of
the shared iptables rules (check-then-append is not atomic). ``flock`` on a file in /run:
released by the kernel if the process dies, so it can never go stale.

Stdlib only, plus ``cni.errors``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ...cni.errors import TryAgainLater

LOCK_PATH = "/run/cnivpc/ptp.lock"
TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.02


@contextmanager
def host_lock(path: str = LOCK_PATH, timeout: float = TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the lock for the block; TryAgainLater (11) if it stays busy past ``timeout``."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise TryAgainLater(f"lock {path} busy for {timeout:.0f} s",
                                        "another cnivpc-ptp command holds it") from exc
                time.sleep(POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the flock
