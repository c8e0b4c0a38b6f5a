"""The ptp plugin's host-wide lock: it serialises changes to shared host state, the route
table probe (two concurrent ADDs must not pick the same free table) and append-unique of the
shared iptables rules (check-then-append is not atomic). The mechanism is
``plugins.hostlock``; this module only names the file and the patience.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..hostlock import host_lock as _hold

LOCK_PATH = "/run/cnivpc/ptp.lock"
TIMEOUT_SECONDS = 30.0


@contextmanager
def host_lock(path: str = LOCK_PATH, timeout: float = TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the lock for the block; TryAgainLater (11) if it stays busy past ``timeout``."""
    with _hold(path, timeout, holder="another cnivpc-ptp command"):
        yield
