"""One opener of the IPAM's store and node view, for the plugin and every CLI command: the same
state file, the same node-wide EC2 token bucket (``Store.take_token``) and the same host lock
path (the conf's ``lockPath``, taken by the allocator), so a command run by hand at 3 a.m. and
the pods being set up at that moment share EC2's limits instead of each spending them.

``read_only`` is for listings, status and audits: the state file must exist (``StoreMissing``
otherwise: nothing is created), no schema or boot check runs, cache answers are read but never
written, and SQLite refuses every write (``query_only``) except the token bucket's, so their
EC2 calls still count against the node's limit.

Imports the store, the node view and the IMDS client; no botocore (the EC2 client is lazy).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ...aws.metadata import Metadata
from ...cni.errors import CniError, TryAgainLater
from ...cni.paths import refuse_symlink
from .config import IpamConf
from .node import Node
from .store import DB_NAME, Store, current_boot_id


class StoreMissing(CniError):
    """A read-only open found no state file: the IPAM never ran with this data directory."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no IPAM state at {path}",
                         "no pod has been set up on this node yet", code=7)
        self.path = path


class ReadOnlyStore(Store):
    """A store handle that changes nothing but the shared token bucket."""

    @classmethod
    def open_existing(cls, data_dir: str, *, clock: Callable[[], float] = time.time,
                      busy_timeout: float = 10.0) -> ReadOnlyStore:
        path = os.path.join(data_dir, DB_NAME)
        # sqlite follows symlinks: a reader refuses them as the writer does (cni.paths).
        refuse_symlink(data_dir, "directory")
        refuse_symlink(path, "file")
        if not os.path.isfile(path):
            raise StoreMissing(path)
        try:
            # mode=rw, never rwc: the file is not created. Not mode=ro: reading a WAL database
            # needs its -shm index, which SQLite may have to (re)create next to it.
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=busy_timeout,
                                   isolation_level=None)
            conn.execute("PRAGMA query_only=1")
            conn.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchall()
        except sqlite3.Error as exc:
            raise TryAgainLater(f"IPAM state {path} is busy or unreadable", str(exc)) from exc
        return cls(conn, clock)

    @property
    def stale_boot(self) -> bool:
        """The state is from an earlier boot: its allocations are void, and the next plugin run
        frees them. A reader that cleans nothing up must say so instead."""
        return self.boot_id != current_boot_id()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A read transaction (BEGIN IMMEDIATE would be a write): the reads inside see one
        snapshot. Re-entrant like the writer's."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            if self._conn.in_transaction:  # take_token may have ended it
                self._conn.execute("COMMIT")

    def cache_put(self, key: str, value: Any, ttl: float) -> None:
        return  # a cache is an optimisation: a reader goes without rather than write

    def _forget_ops(self, op_ids: list[int]) -> None:
        return  # ops whose lease is gone are left for the next writer to forget

    def cache_drop(self, key: str) -> None:
        return

    def take_token(self, name: str, capacity: float, refill_per_s: float) -> float:
        """The one write: in its own short transaction (callers must not hold one)."""
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")  # end the caller's read snapshot: the write needs its own
        self._conn.execute("PRAGMA query_only=0")
        try:
            with Store.transaction(self):
                return super().take_token(name, capacity, refill_per_s)
        finally:
            self._conn.execute("PRAGMA query_only=1")


class ScratchStore(Store):
    """A throw-away store in a temporary directory, removed on close: what a read-only command
    that needs no recorded state (metadata and EC2 views) uses on a node without IPAM state,
    so it still has a cache and a token bucket for its own calls and creates nothing."""

    scratch_dir = ""

    @classmethod
    def create(cls) -> ScratchStore:
        path = tempfile.mkdtemp(prefix="cnivpc-scratch-")
        store = cls.open(path)
        assert isinstance(store, ScratchStore)
        store.scratch_dir = path
        return store

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.scratch_dir, ignore_errors=True)


def open_ipam(conf: IpamConf, *, timeout: float | None = None, read_only: bool = False,
              need_state: bool = True,
              metadata: Metadata | None = None) -> tuple[Store, Node]:
    """The store and node view for one invocation; ``timeout`` (default: the conf's) bounds
    its EC2 retries and waits. The caller closes the store (``with store:``).

    ``read_only`` without ``need_state``: a node without IPAM state gets a ScratchStore."""
    store: Store
    if not read_only:
        store = Store.open(conf.data_dir)
    elif need_state or os.path.isfile(os.path.join(conf.data_dir, DB_NAME)):
        store = ReadOnlyStore.open_existing(conf.data_dir)
    else:
        store = ScratchStore.create()
    deadline = time.monotonic() + (conf.timeout if timeout is None else timeout)

    def limiter(name: str, capacity: float, refill: float) -> float:
        if isinstance(store, ReadOnlyStore):
            return store.take_token(name, capacity, refill)
        with store.transaction():
            return store.take_token(name, capacity, refill)

    return store, Node(store, deadline=deadline, metadata=metadata or Metadata(),
                       limiter=limiter)
