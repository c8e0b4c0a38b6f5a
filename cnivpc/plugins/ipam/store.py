"""The IPAM's local state: one SQLite file (stdlib ``sqlite3``) that is the truth about which
pod holds which VPC IP on this node, which IPs are free (and since when), plus small tables the
IPAM shares between processes (EC2 response caches, the host-wide EC2 token bucket).

Why SQLite: every update is a transaction (crash-safe: a killed plugin leaves the previous state,
never a half-written file, unlike the original's truncate-and-rewrite JSON), WAL lets read-only
CLI commands read while an ADD writes, and it is one file with 0600 permissions.

Allocations are keyed by (network name, container ID, ifname), as the CNI spec keys attachments
(and as host-local keeps one directory per network), so DEL needs neither the netns nor the
pod's interface, and a GC, DEL or CHECK of one network (Multus: a second network that also uses
cnivpc-ipam with the same ``dataDir``) never touches another network's allocations. Allocations
made in an earlier boot (``/proc/sys/kernel/random/boot_id``) are void: no pod survives a reboot.

Rows from before the network column (schema 1, kept by the migration) have no network
(``Allocation.network == ""``): they are *unclaimed*. A DEL, repeated ADD or CHECK of any network
for the same (container ID, ifname) claims such a row, since one container cannot have the same
interface name in two networks; so does a GC whose valid list names it. A GC never releases an
unclaimed row (it cannot tell whose it is): its pod's DEL, the operator's ``cnivpc gc`` (netns
gone) or the next boot frees it.

Imports only the stdlib, ``cni.errors`` and ``cni.paths``; no pyroute2, no botocore.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from ...cni.errors import TryAgainLater
from ...cni.paths import ensure_dir, open_file, own_file
from ...cni.records import Record

SCHEMA_VERSION = 3
DB_NAME = "ipam.db"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ips (
    ip           TEXT PRIMARY KEY,
    eni_id       TEXT NOT NULL,
    container_id TEXT,
    ifname       TEXT,
    network      TEXT,
    pod          TEXT NOT NULL DEFAULT '',
    netns        TEXT NOT NULL DEFAULT '',
    allocated_at REAL,
    freed_at     REAL,
    prefix       TEXT,
    ipv6         TEXT,
    CHECK ((container_id IS NULL) = (ifname IS NULL))
);
CREATE INDEX IF NOT EXISTS ips_attachment ON ips (container_id, ifname);
CREATE INDEX IF NOT EXISTS ips_eni ON ips (eni_id);
CREATE TABLE IF NOT EXISTS enis (
    eni_id       TEXT PRIMARY KEY,
    mac          TEXT NOT NULL,
    device_index INTEGER NOT NULL,
    subnet_id    TEXT NOT NULL,
    subnet_cidr  TEXT NOT NULL,
    vpc_id       TEXT NOT NULL,
    vpc_cidrs    TEXT NOT NULL,
    link         TEXT NOT NULL DEFAULT '',
    primary_ip   TEXT NOT NULL DEFAULT '',
    updated      REAL NOT NULL,
    subnet_ipv6_cidr TEXT NOT NULL DEFAULT '',
    ipv6_prefixes    TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS ops (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    eni_id       TEXT NOT NULL DEFAULT '',
    device_index INTEGER,
    expected     INTEGER NOT NULL,
    claimed      INTEGER NOT NULL,
    pid          INTEGER NOT NULL,
    started      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS unassigned (ip TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS v6leases (
    ipv6         TEXT PRIMARY KEY,
    egress_ip    TEXT UNIQUE,
    eni_id       TEXT NOT NULL,
    network      TEXT NOT NULL,
    container_id TEXT NOT NULL,
    ifname       TEXT NOT NULL,
    pod          TEXT NOT NULL DEFAULT '',
    netns        TEXT NOT NULL DEFAULT '',
    allocated_at REAL NOT NULL,
    UNIQUE (network, container_id, ifname)
);
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL);
"""


# An op's lease is an exclusive flock on leases/<op id> held by the process doing the work (and
# by a child it forks): the kernel drops it when the last holder dies, whatever pid namespace
# the holder or the reader is in (the DaemonSet's containers, `kubectl exec`, `unshare -p`), and
# a pid reused by an unrelated process cannot fake it, which a recorded pid and kill(pid, 0)
# could not tell. The age cap is the last resort for a holder that is alive but stuck: the
# plugin's own deadline (``timeout`` <= 110 s) ends every op long before.
LEASE_DIR = "leases"
LEASE_MAX_AGE = 600.0


def _lease_held(path: str) -> bool:
    """True while some process holds the lease file's exclusive lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock we may have got
    return False


def current_boot_id() -> str:
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


class Allocation(Record):
    """An IP held by a pod attachment."""

    ip: str
    eni_id: str
    container_id: str
    ifname: str
    pod: str
    allocated_at: float
    netns: str = ""
    # The network (conflist name) that holds it; "" for an unclaimed row of schema 1.
    network: str = ""
    # The /28 prefix EC2 assigned the address in (prefix mode); "" for a secondary IP.
    prefix: str = ""
    # The attachment's IPv6 address (dual-stack, ``ipv6``), out of a /80 of the same ENI.
    ipv6: str = ""


class V6Lease(NamedTuple):
    """An IPv6-only attachment (``ipv4: false``): its IPv6 out of a /80 of ``eni_id``, and the
    node-local IPv4 it egresses with (``egressIPv4Range``; "" when there is none). No VPC IPv4:
    these rows are not in the IPv4 pool (``ips``), which stays the pool of ENI secondaries."""

    ipv6: str
    egress_ip: str
    eni_id: str
    network: str
    container_id: str
    ifname: str
    pod: str
    netns: str
    allocated_at: float


class EniRecord(Record):
    """An ENI whose IPs we hand out, with what a result needs (so the warm path reads no
    metadata): its subnet (prefix length, gateway), its VPC's CIDRs, its kernel link name."""

    eni_id: str
    mac: str
    device_index: int
    subnet_id: str
    subnet_cidr: str
    vpc_id: str
    vpc_cidrs: tuple[str, ...]
    link: str
    primary_ip: str = ""
    subnet_ipv6_cidr: str = ""  # "" when the subnet has no IPv6 (or it was not read)
    ipv6_prefixes: tuple[str, ...] = ()  # /80s delegated to the ENI


class Op(Record):
    """Slow EC2 work in flight (an Assign, or a Create+Attach), recorded so that concurrent
    ADDs wait for its IPs instead of starting more work: ``claimed`` of ``expected`` IPs are
    spoken for. Alive while its lease is held (see ``LEASE_DIR``); ``pid`` is only shown."""

    id: int
    kind: str
    eni_id: str
    device_index: int | None
    expected: int
    claimed: int
    pid: int
    started: float


class FreeIP(Record):
    """An IP assigned to one of our ENIs in EC2 and held by no pod."""

    ip: str
    eni_id: str
    freed_at: float
    prefix: str = ""  # the /28 it is part of (prefix mode); "" for a secondary IP


class Store:
    """A handle on the state file. Use ``transaction()`` for every read-modify-write."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._depth = 0
        # Next to the state file, wherever that is (the same for every opener of it).
        db_path = str(conn.execute("PRAGMA database_list").fetchone()[2])
        self._lease_dir = os.path.join(os.path.dirname(db_path), LEASE_DIR)
        self._leases: dict[int, int] = {}  # op id -> the fd holding its lease (ours)

    @classmethod
    def open(cls, data_dir: str, *, boot_id: str | None = None,
             clock: Callable[[], float] = time.time, busy_timeout: float = 10.0) -> Store:
        """Open (creating if needed) the store in ``data_dir``: directory 0700, files 0600,
        whatever they were; a symlink as the directory or any of its files is refused
        (``cni.paths``: UnsafePath, code 7), so nothing is ever written through one."""
        ensure_dir(data_dir)
        path = os.path.join(data_dir, DB_NAME)
        # Opening is serialised by a flock of its own: the switch to WAL and the first schema
        # script take locks SQLite's busy handler does not wait for, so a fresh node's first
        # burst (4 processes opening a new file at once) failed with "database is locked" in
        # about 1 trial of 6. The lock is held for the open only (a few ms), and dies with us.
        lock_fd = open_file(os.path.join(data_dir, DB_NAME + ".open-lock"))
        try:
            deadline = time.monotonic() + busy_timeout
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TryAgainLater(f"IPAM state {path} is busy",
                                            "another process has been opening it for "
                                            f"{busy_timeout:.0f}s") from None
                    time.sleep(0.005)
            # Create the file ourselves so it is born 0600 (sqlite would honour the umask) and
            # is no symlink (sqlite would follow one); sqlite gives -wal and -shm its mode.
            for name in (path, path + "-wal", path + "-shm"):
                own_file(name, create=name == path)
            try:
                conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable against process crashes (what a killed plugin is); a power
                # loss may lose the last transaction, and a reboot voids allocations anyway.
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.OperationalError as exc:
                raise TryAgainLater(f"IPAM state {path} is busy or unreadable",
                                    str(exc)) from exc
            store = cls(conn, clock)
            store._migrate()
            store._check_boot(boot_id or current_boot_id())
        finally:
            os.close(lock_fd)
        return store

    def close(self) -> None:
        for fd in self._leases.values():
            os.close(fd)
        self._leases.clear()
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE: take the write lock up front so two ADDs never both read a free IP
        and then both claim it. Re-entrant: an inner ``transaction()`` joins the outer one
        (the shared token bucket is charged from inside decisions, too)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TryAgainLater("IPAM state is locked by another process", str(exc)) from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    # -- boot and schema ---------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def _migrate(self) -> None:
        """Schema 1 -> 2: the ``network`` column, added in place (existing rows kept, their
        network unknown: unclaimed, see the module docstring); 2 -> 3: the ``prefix`` column
        (existing rows are secondary IPs: no prefix). Under the write lock, so two processes
        opening an old file at once do not both add them."""
        with self.transaction():
            columns = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(ips)")}
            if "network" not in columns:
                self._conn.execute("ALTER TABLE ips ADD COLUMN network TEXT")
            if "prefix" not in columns:
                self._conn.execute("ALTER TABLE ips ADD COLUMN prefix TEXT")
            if "ipv6" not in columns:
                self._conn.execute("ALTER TABLE ips ADD COLUMN ipv6 TEXT")
            eni_columns = {str(r[1]) for r in self._conn.execute("PRAGMA table_info(enis)")}
            if "subnet_ipv6_cidr" not in eni_columns:
                self._conn.execute("ALTER TABLE enis ADD COLUMN subnet_ipv6_cidr TEXT NOT NULL "
                                   "DEFAULT ''")
                self._conn.execute("ALTER TABLE enis ADD COLUMN ipv6_prefixes TEXT NOT NULL "
                                   "DEFAULT '[]'")
            if self._meta("schema_version") != str(SCHEMA_VERSION):
                self._set_meta("schema_version", str(SCHEMA_VERSION))

    def _check_boot(self, boot_id: str) -> None:
        with self.transaction():
            if self._meta("schema_version") is None:
                self._set_meta("schema_version", str(SCHEMA_VERSION))
            previous = self._meta("boot_id")
            if previous != boot_id:
                # A new boot: every pod of the old boot is gone, so its IPs are free right away
                # (no cooldown: nothing can still be using them).
                self._conn.execute("UPDATE ips SET container_id = NULL, ifname = NULL, "
                                   "network = NULL, pod = '', netns = '', allocated_at = NULL, "
                                   "freed_at = 0 "
                                   "WHERE container_id IS NOT NULL")
                self._conn.execute("DELETE FROM ops")
                self._conn.execute("DELETE FROM v6leases")
                # Every cached answer goes too, the identity first: the disk may have moved to
                # another instance (a baked image, a volume attached elsewhere), and only the
                # metadata can say. With "reconciled-at" gone the first decision of this boot
                # reconciles, which re-reads the identity and checks the binding
                # (``bind_instance``). A pending DeleteOnTermination is ours to finish.
                self._conn.execute("DELETE FROM cache WHERE key NOT LIKE 'dot-pending:%'")
                self._set_meta("boot_id", boot_id)
                self._drop_leases()  # no holder survives a boot

    def bind_instance(self, instance_id: str) -> bool:
        """Bind the state to the instance the metadata names. A state bound to another
        instance (its disk moved, or baked into an image) describes that instance's ENIs and
        IPs: all of it is dropped (allocations, pool, ENIs, in-flight work, caches but the
        identity just read). Returns True when it was. Call inside ``transaction()``."""
        bound = self._meta("instance_id")
        if bound == instance_id:
            return False
        if bound is not None:
            for table in ("ips", "enis", "ops", "unassigned", "v6leases"):
                self._conn.execute(f"DELETE FROM {table}")  # fixed names, not input
            self._conn.execute("DELETE FROM cache WHERE key != 'identity'")
            for fd in self._leases.values():
                os.close(fd)
            self._leases.clear()
            self._drop_leases()
        self._set_meta("instance_id", instance_id)
        return bound is not None

    def quick_check(self) -> str:
        """SQLite's own consistency check: "ok" when the file is sound."""
        row = self._conn.execute("PRAGMA quick_check").fetchone()
        return str(row[0]) if row else "no answer"

    @property
    def boot_id(self) -> str:
        return self._meta("boot_id") or ""

    # -- allocations -------------------------------------------------------------------------

    def allocations(self, container_id: str | None = None, ifname: str | None = None,
                    network: str | None = None) -> list[Allocation]:
        """Allocations, all or one attachment's. With ``network``, only that network's and
        unclaimed ones (which that network may claim)."""
        sql = ("SELECT ip, eni_id, container_id, ifname, pod, allocated_at, netns, "
               "COALESCE(network, ''), COALESCE(prefix, ''), COALESCE(ipv6, '') FROM ips "
               "WHERE container_id IS NOT NULL")
        params: list[Any] = []
        if container_id is not None:
            sql += " AND container_id = ?"
            params.append(container_id)
        if ifname is not None:
            sql += " AND ifname = ?"
            params.append(ifname)
        if network is not None:
            sql += " AND (network = ? OR network IS NULL)"
            params.append(network)
        rows = self._conn.execute(sql + " ORDER BY allocated_at, ip", params).fetchall()
        return [Allocation(*row) for row in rows]

    def set_ipv6(self, ip: str, ipv6: str) -> None:
        """Give the attachment holding ``ip`` the IPv6 address ``ipv6`` (dual-stack).
        Raises KeyError if ``ip`` is not held or ``ipv6`` already is."""
        if self._conn.execute("SELECT 1 FROM ips WHERE ipv6 = ?", (ipv6,)).fetchone():
            raise KeyError(f"{ipv6} is already held")
        cur = self._conn.execute("UPDATE ips SET ipv6 = ? WHERE ip = ? AND container_id IS NOT "
                                 "NULL", (ipv6, ip))
        if cur.rowcount != 1:
            raise KeyError(f"{ip} is not held")

    def ip_rows(self) -> tuple[list[FreeIP], list[Allocation]]:
        """Every tracked IP in one read: (the free ones, longest-free first; the allocations,
        oldest first)."""
        free: list[FreeIP] = []
        held: list[Allocation] = []
        for r in self._conn.execute(
                "SELECT ip, eni_id, container_id, ifname, pod, allocated_at, netns, "
                "COALESCE(network, ''), COALESCE(prefix, ''), COALESCE(ipv6, ''), freed_at "
                "FROM ips ORDER BY freed_at, allocated_at, ip").fetchall():
            if r[2] is None:
                free.append(FreeIP(str(r[0]), str(r[1]), float(r[10] or 0.0), str(r[8])))
            else:
                held.append(Allocation(*r[:10]))
        return free, held

    def claim(self, network: str, container_id: str, ifname: str) -> None:
        """Give the attachment's unclaimed (schema 1) rows to ``network``."""
        self._conn.execute("UPDATE ips SET network = ? WHERE container_id = ? AND ifname = ? "
                           "AND network IS NULL", (network, container_id, ifname))

    def allocate(self, ip: str, container_id: str, ifname: str, pod: str = "",
                 netns: str = "", network: str | None = None) -> Allocation:
        """Give free ``ip`` to the attachment of ``network``. Raises KeyError if ``ip`` is not a
        free IP. ``pod`` and ``netns`` are for people (``cnivpc status``, ``doctor``), not
        decisions."""
        now = self._clock()
        cur = self._conn.execute(
            "UPDATE ips SET container_id = ?, ifname = ?, network = ?, pod = ?, netns = ?, "
            "allocated_at = ?, freed_at = NULL WHERE ip = ? AND container_id IS NULL",
            (container_id, ifname, network, pod, netns, now, ip))
        if cur.rowcount != 1:
            raise KeyError(f"{ip} is not a free IP")
        row = self._conn.execute("SELECT eni_id, COALESCE(prefix, '') FROM ips WHERE ip = ?",
                                 (ip,)).fetchone()
        return Allocation(ip, str(row[0]), container_id, ifname, pod, now, netns, network or "",
                          str(row[1]))

    def release(self, container_id: str, ifname: str,
                network: str | None = None) -> list[Allocation]:
        """Free the attachment's IPs (they start their reuse cooldown now). Idempotent: an
        unknown attachment releases nothing. With ``network``, only that network's rows (and
        unclaimed ones); without, whichever network holds them (the operator's commands)."""
        released = self.allocations(container_id, ifname, network)
        self._conn.executemany(
            "UPDATE ips SET container_id = NULL, ifname = NULL, network = NULL, pod = '', "
            "netns = '', allocated_at = NULL, ipv6 = NULL, freed_at = ? WHERE ip = ? "
            "AND container_id IS NOT NULL", [(self._clock(), a.ip) for a in released])
        return released

    # -- IPv6-only attachments ---------------------------------------------------------------

    _V6_COLUMNS = ("ipv6, COALESCE(egress_ip, ''), eni_id, network, container_id, ifname, pod, "
                   "netns, allocated_at")

    def v6_leases(self, container_id: str | None = None, ifname: str | None = None,
                  network: str | None = None) -> list[V6Lease]:
        """IPv6-only attachments, all or one's (``network``'s only, when given)."""
        sql = f"SELECT {self._V6_COLUMNS} FROM v6leases WHERE 1"
        params: list[Any] = []
        for column, value in (("container_id", container_id), ("ifname", ifname),
                              ("network", network)):
            if value is not None:
                sql += f" AND {column} = ?"  # fixed names, not input
                params.append(value)
        rows = self._conn.execute(sql + " ORDER BY allocated_at, ipv6", params).fetchall()
        return [V6Lease(*row) for row in rows]

    def lease_v6(self, lease: V6Lease) -> None:
        """Record an IPv6-only attachment. Raises KeyError when its IPv6 or egress IPv4 is
        held, or the attachment already has a lease."""
        try:
            self._conn.execute(
                "INSERT INTO v6leases(ipv6, egress_ip, eni_id, network, container_id, ifname, "
                "pod, netns, allocated_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (lease.ipv6, lease.egress_ip or None, *lease[2:]))
        except sqlite3.IntegrityError as exc:
            raise KeyError(str(exc)) from exc
        if lease.egress_ip:
            self._set_meta("egress_last", lease.egress_ip)

    def last_egress_ip(self) -> str:
        """The egress IPv4 handed out last: the next pick starts after it, so a freed address
        is the last to come back (the node's conntrack may still hold its old flows)."""
        return self._meta("egress_last") or ""

    def release_v6(self, container_id: str, ifname: str,
                   network: str | None = None) -> list[V6Lease]:
        """Drop the attachment's IPv6-only lease (idempotent). An IPv6 out of a /80 needs no
        cooldown: the next pick is random among 2**48."""
        gone = self.v6_leases(container_id, ifname, network)
        self._conn.executemany("DELETE FROM v6leases WHERE ipv6 = ?", [(g.ipv6,) for g in gone])
        return gone

    # -- the free pool -----------------------------------------------------------------------

    def add_free(self, ips: Iterable[str], eni_id: str, *, freed_at: float = 0.0,
                 prefix: str = "") -> int:
        """Record IPs newly assigned to ``eni_id`` in EC2 as free (the addresses of ``prefix``
        when one was assigned). ``freed_at`` 0 means usable at once (fresh from EC2: no pod
        ever had them). Known IPs are left as they are."""
        cur = self._conn.executemany(
            "INSERT INTO ips(ip, eni_id, freed_at, prefix) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(ip) DO NOTHING",
            [(ip, eni_id, freed_at, prefix or None) for ip in ips])
        return cur.rowcount

    def free_ips(self, *, ready_before: float | None = None,
                 eni_ids: Iterable[str] | None = None) -> list[FreeIP]:
        """Free IPs, longest-free first (least recently used: spreads reuse). With
        ``ready_before``, only those freed before that time (past their cooldown)."""
        sql = ("SELECT ip, eni_id, freed_at, COALESCE(prefix, '') FROM ips "
               "WHERE container_id IS NULL")
        params: list[Any] = []
        if ready_before is not None:
            sql += " AND freed_at <= ?"
            params.append(ready_before)
        if eni_ids is not None:
            ids = list(eni_ids)
            sql += f" AND eni_id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        rows = self._conn.execute(sql + " ORDER BY freed_at, ip", params).fetchall()
        return [FreeIP(str(r[0]), str(r[1]), float(r[2]), str(r[3])) for r in rows]

    def forget(self, ips: Iterable[str]) -> None:
        """Drop free IPs that are no longer on our ENIs (unassigned, ENI gone). Allocated IPs are
        never dropped here: reconciliation reports those instead."""
        self._conn.executemany("DELETE FROM ips WHERE ip = ? AND container_id IS NULL",
                               [(ip,) for ip in ips])

    def take_free(self, ips: Iterable[str]) -> list[FreeIP]:
        """Remove free IPs from the pool to unassign them in EC2, leaving a tombstone so that a
        lagging metadata listing does not bring them back. Returns what was taken."""
        wanted = set(ips)
        taken = [f for f in self.free_ips() if f.ip in wanted]
        now = self._clock()
        for f in taken:
            self._conn.execute("DELETE FROM ips WHERE ip = ? AND container_id IS NULL", (f.ip,))
            self._conn.execute("INSERT INTO unassigned(ip, at) VALUES(?, ?) ON CONFLICT(ip) "
                               "DO UPDATE SET at = excluded.at", (f.ip, now))
        return taken

    def put_back(self, free: Iterable[FreeIP]) -> None:
        """Undo ``take_free`` for IPs whose unassign failed: they are still on their ENI."""
        for f in free:
            self._conn.execute("DELETE FROM unassigned WHERE ip = ?", (f.ip,))
            self._conn.execute("INSERT INTO ips(ip, eni_id, freed_at, prefix) VALUES(?, ?, ?, ?) "
                               "ON CONFLICT(ip) DO NOTHING",
                               (f.ip, f.eni_id, f.freed_at, f.prefix or None))

    def recently_unassigned(self, since: float) -> set[str]:
        self._conn.execute("DELETE FROM unassigned WHERE at < ?", (since,))
        return {str(r[0]) for r in self._conn.execute("SELECT ip FROM unassigned")}

    def known_ips(self) -> dict[str, str]:
        """Every IP we track, free or allocated, to its ENI."""
        return {str(ip): str(eni) for ip, eni in self._conn.execute("SELECT ip, eni_id FROM ips")}

    # -- ENIs ----------------------------------------------------------------------------------

    def put_eni(self, eni: EniRecord) -> None:
        self._conn.execute(
            "INSERT INTO enis(eni_id, mac, device_index, subnet_id, subnet_cidr, vpc_id, "
            "vpc_cidrs, link, primary_ip, updated, subnet_ipv6_cidr, ipv6_prefixes) "
            "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(eni_id) DO UPDATE SET mac = excluded.mac, "
            "device_index = excluded.device_index, subnet_id = excluded.subnet_id, "
            "subnet_cidr = excluded.subnet_cidr, vpc_id = excluded.vpc_id, "
            "vpc_cidrs = excluded.vpc_cidrs, link = excluded.link, "
            "primary_ip = excluded.primary_ip, updated = excluded.updated, "
            # A view without IPv6 (it was not read) never erases what one with it recorded.
            "subnet_ipv6_cidr = CASE WHEN excluded.subnet_ipv6_cidr = '' THEN "
            "enis.subnet_ipv6_cidr ELSE excluded.subnet_ipv6_cidr END, "
            "ipv6_prefixes = CASE WHEN excluded.ipv6_prefixes = '[]' THEN enis.ipv6_prefixes "
            "ELSE excluded.ipv6_prefixes END",
            (eni.eni_id, eni.mac, eni.device_index, eni.subnet_id, eni.subnet_cidr, eni.vpc_id,
             json.dumps(list(eni.vpc_cidrs)), eni.link, eni.primary_ip, self._clock(),
             eni.subnet_ipv6_cidr, json.dumps(list(eni.ipv6_prefixes))))

    def enis(self) -> list[EniRecord]:
        rows = self._conn.execute(
            "SELECT eni_id, mac, device_index, subnet_id, subnet_cidr, vpc_id, vpc_cidrs, link, "
            "primary_ip, subnet_ipv6_cidr, ipv6_prefixes FROM enis "
            "ORDER BY device_index").fetchall()
        return [EniRecord(r[0], r[1], int(r[2]), r[3], r[4], r[5], tuple(json.loads(r[6])), r[7],
                          r[8], r[9], tuple(json.loads(r[10]))) for r in rows]

    def enis_updated_since(self, since: float) -> set[str]:
        """ENIs recorded (created, or seen again) at or after ``since``."""
        return {str(r[0]) for r in self._conn.execute(
            "SELECT eni_id FROM enis WHERE updated >= ?", (since,))}

    def eni(self, eni_id: str) -> EniRecord | None:
        return next((e for e in self.enis() if e.eni_id == eni_id), None)

    def drop_eni(self, eni_id: str) -> None:
        """Forget an ENI that is gone, with its free IPs (allocated ones stay, for reporting)."""
        self._conn.execute("DELETE FROM ips WHERE eni_id = ? AND container_id IS NULL", (eni_id,))
        self._conn.execute("DELETE FROM enis WHERE eni_id = ?", (eni_id,))

    def ip_counts(self) -> dict[str, int]:
        """Tracked IPs per ENI (free and allocated)."""
        return {str(eni): int(n) for eni, n in
                self._conn.execute("SELECT eni_id, COUNT(*) FROM ips GROUP BY eni_id")}

    # -- in-flight EC2 work --------------------------------------------------------------------

    def start_op(self, kind: str, expected: int, *, eni_id: str = "",
                 device_index: int | None = None) -> int:
        """Record work this process is about to do, with its lease taken (inside the caller's
        transaction: nobody sees the row before its lease is held). The pid is for people."""
        cur = self._conn.execute(
            "INSERT INTO ops(kind, eni_id, device_index, expected, claimed, pid, started) "
            "VALUES(?, ?, ?, ?, 1, ?, ?)",
            (kind, eni_id, device_index, expected, os.getpid(), self._clock()))
        op_id = int(cur.lastrowid or 0)
        ensure_dir(self._lease_dir)
        fd = open_file(os.path.join(self._lease_dir, str(op_id)))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._leases[op_id] = fd
        return op_id

    def ops(self) -> list[Op]:
        """Live ops: rows whose lease is held, younger than the age cap. The others (their
        process died, in whatever pid namespace) are forgotten on the way."""
        live: list[Op] = []
        dead: list[int] = []
        oldest = self._clock() - LEASE_MAX_AGE
        for row in self._conn.execute("SELECT id, kind, eni_id, device_index, expected, claimed, "
                                      "pid, started FROM ops ORDER BY id").fetchall():
            op = Op(*row)
            held = op.id in self._leases or _lease_held(self._lease_path(op.id))
            if held and op.started >= oldest:
                live.append(op)
            else:
                dead.append(op.id)
        if dead:
            self._forget_ops(dead)
        return live

    def op_leases(self) -> list[tuple[Op, bool]]:
        """Every op row, with whether its lease is held; forgets nothing (for the audit)."""
        rows = self._conn.execute("SELECT id, kind, eni_id, device_index, expected, claimed, "
                                  "pid, started FROM ops ORDER BY id").fetchall()
        return [(op, op.id in self._leases or _lease_held(self._lease_path(op.id)))
                for op in (Op(*row) for row in rows)]

    def _drop_leases(self) -> None:
        """Remove every lease file (a new boot, another instance: no holder is left). Not
        shutil.rmtree: importing shutil loads bz2 and lzma on every plugin run."""
        try:
            names = os.listdir(self._lease_dir)
        except FileNotFoundError:
            return
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._lease_dir, name))

    def _lease_path(self, op_id: int) -> str:
        return os.path.join(self._lease_dir, str(op_id))

    def _forget_ops(self, op_ids: list[int]) -> None:
        for op_id in op_ids:
            self._conn.execute("DELETE FROM ops WHERE id = ?", (op_id,))
            fd = self._leases.pop(op_id, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lease_path(op_id))

    def claim_op(self) -> Op | None:
        """Claim one IP of an in-flight op that has unclaimed IPs, if any."""
        for op in self.ops():
            if op.claimed < op.expected:
                self._conn.execute("UPDATE ops SET claimed = claimed + 1 WHERE id = ?", (op.id,))
                return op
        return None

    def claim_op_ip(self, op_id: int) -> None:
        """Claim one IP of in-flight op ``op_id`` (the decision saw it had one unclaimed)."""
        self._conn.execute("UPDATE ops SET claimed = claimed + 1 WHERE id = ?", (op_id,))

    def claim_op_reset(self, op_id: int) -> None:
        """Mark all of an op's IPs unclaimed (a refill: they all go to the pool)."""
        self._conn.execute("UPDATE ops SET claimed = 0 WHERE id = ?", (op_id,))

    def op_running(self, op_id: int) -> bool:
        return any(op.id == op_id for op in self.ops())

    def finish_op(self, op_id: int) -> None:
        self._forget_ops([op_id])

    # -- caches (EC2 answers with a TTL; errors are never cached) ------------------------------

    def cache_get(self, key: str) -> Any | None:
        row = self._conn.execute("SELECT value, expires FROM cache WHERE key = ?",
                                 (key,)).fetchone()
        if row is None or float(row[1]) <= self._clock():
            return None
        return json.loads(row[0])

    def cache_put(self, key: str, value: Any, ttl: float) -> None:
        self._conn.execute(
            "INSERT INTO cache(key, value, expires) VALUES(?, ?, ?) ON CONFLICT(key) "
            "DO UPDATE SET value = excluded.value, expires = excluded.expires",
            (key, json.dumps(value, sort_keys=True), self._clock() + ttl))

    def cache_drop(self, key: str) -> None:
        self._conn.execute("DELETE FROM cache WHERE key = ?", (key,))

    def cache_items(self, prefix: str) -> dict[str, Any]:
        """Unexpired entries whose key starts with ``prefix``, by the rest of the key."""
        rows = self._conn.execute(
            "SELECT key, value FROM cache WHERE substr(key, 1, ?) = ? AND expires > ?",
            (len(prefix), prefix, self._clock())).fetchall()
        return {str(k)[len(prefix):]: json.loads(v) for k, v in rows}

    # -- host-wide token bucket (shared by every plugin process on the node) ------------------

    def take_token(self, name: str, capacity: float, refill_per_s: float) -> float:
        """Take one token from bucket ``name``. Returns 0 when taken, else the seconds to wait
        before one is available (nothing is taken then). Call inside ``transaction()``."""
        now = self._clock()
        row = self._conn.execute("SELECT tokens, updated FROM buckets WHERE name = ?",
                                 (name,)).fetchone()
        tokens = capacity if row is None else min(
            capacity, float(row[0]) + (now - float(row[1])) * refill_per_s)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / refill_per_s
        self._conn.execute(
            "INSERT INTO buckets(name, tokens, updated) VALUES(?, ?, ?) ON CONFLICT(name) "
            "DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
            (name, tokens, now))
        return wait
