"""The IPAM store keyed by network too: two networks sharing one dataDir (Multus) never see or
release each other's allocations, and a schema-1 file (no network column) is migrated in place
with its rows kept, unclaimed until a DEL, repeated ADD or GC of some network claims them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cnivpc.plugins.ipam.store import DB_NAME, SCHEMA_VERSION, Store

BOOT = "boot-1"

# The schema-1 ``ips`` table and meta rows, as the previous release created them.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ips (
    ip           TEXT PRIMARY KEY,
    eni_id       TEXT NOT NULL,
    container_id TEXT,
    ifname       TEXT,
    pod          TEXT NOT NULL DEFAULT '',
    netns        TEXT NOT NULL DEFAULT '',
    allocated_at REAL,
    freed_at     REAL,
    CHECK ((container_id IS NULL) = (ifname IS NULL))
);
CREATE INDEX ips_attachment ON ips (container_id, ifname);
INSERT INTO meta VALUES ('schema_version', '1'), ('boot_id', 'boot-1');
INSERT INTO ips VALUES ('10.0.16.5', 'eni-1', 'old', 'eth0', 'default/old', '', 900, NULL);
INSERT INTO ips VALUES ('10.0.16.6', 'eni-1', 'other', 'eth0', 'default/other', '', 901, NULL);
INSERT INTO ips VALUES ('10.0.16.7', 'eni-1', NULL, NULL, '', '', NULL, 0);
"""


def open_store(path: Path) -> Store:
    return Store.open(str(path), boot_id=BOOT, clock=lambda: 1000.0)


def test_two_networks_in_one_store_keep_apart(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        with store.transaction():
            store.add_free(["10.0.16.5", "10.0.16.6", "10.0.16.7"], "eni-1")
            store.allocate("10.0.16.5", "c1", "eth0", network="net-a")
            store.allocate("10.0.16.6", "c1", "net1", network="net-b")
            store.allocate("10.0.16.7", "c2", "net1", network="net-b")
        assert [a.ip for a in store.allocations(network="net-a")] == ["10.0.16.5"]
        assert {a.ip for a in store.allocations(network="net-b")} == {"10.0.16.6", "10.0.16.7"}
        assert store.allocations("c1", "eth0", network="net-b") == []
        with store.transaction():
            # net-b's DEL of an attachment it does not hold releases nothing of net-a's.
            assert store.release("c1", "eth0", network="net-b") == []
            assert [a.ip for a in store.release("c1", "net1", network="net-b")] == ["10.0.16.6"]
        held = {a.ip: a.network for a in store.allocations()}
        assert held == {"10.0.16.5": "net-a", "10.0.16.7": "net-b"}
        # Without a network (the operator's commands) whoever holds it.
        with store.transaction():
            assert [a.ip for a in store.release("c1", "eth0")] == ["10.0.16.5"]
        # A released IP carries no network into its next allocation.
        with store.transaction():
            again = store.allocate("10.0.16.5", "c9", "eth0", network="net-b")
        assert again.network == "net-b"


def test_schema_1_is_migrated_in_place_and_its_rows_are_claimed(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(SCHEMA_1)
    conn.close()
    with open_store(tmp_path) as store:
        rows = {a.ip: (a.container_id, a.network) for a in store.allocations()}
        assert rows == {"10.0.16.5": ("old", ""), "10.0.16.6": ("other", "")}  # kept
        assert [f.ip for f in store.free_ips()] == ["10.0.16.7"]
        assert store._meta("schema_version") == str(SCHEMA_VERSION)
        # Unclaimed rows are visible to any network by their attachment...
        assert [a.ip for a in store.allocations("old", "eth0", network="net-a")] == ["10.0.16.5"]
        with store.transaction():
            store.claim("net-a", "other", "eth0")
            # ... until one claims them: then they are that network's alone.
            assert store.release("other", "eth0", network="net-b") == []
            assert [a.ip for a in store.release("old", "eth0", network="net-b")] == ["10.0.16.5"]
        assert {a.ip: a.network for a in store.allocations()} == {"10.0.16.6": "net-a"}
    # Opening again (a second process, the next plugin run) changes nothing more.
    with open_store(tmp_path) as store:
        assert {a.ip: a.network for a in store.allocations()} == {"10.0.16.6": "net-a"}


def test_a_new_boot_clears_the_network_with_the_allocation(tmp_path: Path) -> None:
    with open_store(tmp_path) as store, store.transaction():
        store.add_free(["10.0.16.5"], "eni-1")
        store.allocate("10.0.16.5", "c1", "eth0", network="net-a")
    with Store.open(str(tmp_path), boot_id="boot-2") as store:
        assert store.allocations() == []
        with store.transaction():
            assert store.allocate("10.0.16.5", "c2", "eth0").network == ""


def test_schema_1_gains_the_prefix_column_and_prefix_rows_round_trip(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(SCHEMA_1)
    conn.close()
    with open_store(tmp_path) as store:
        # Old rows are secondary IPs: no prefix.
        assert {a.prefix for a in store.allocations()} == {""}
        assert [f.prefix for f in store.free_ips()] == [""]
        with store.transaction():
            store.add_free(["10.0.17.16", "10.0.17.17"], "eni-1", prefix="10.0.17.16/28")
            taken = store.allocate("10.0.17.16", "c3", "eth0", network="net")
        assert taken.prefix == "10.0.17.16/28"
        free, held = store.ip_rows()
        assert {f.ip: f.prefix for f in free}["10.0.17.17"] == "10.0.17.16/28"
        assert {a.ip: a.prefix for a in held}["10.0.17.16"] == "10.0.17.16/28"
        with store.transaction():
            store.release("c3", "eth0", network="net")
            gone = store.take_free(["10.0.17.16", "10.0.17.17"])
            store.put_back(gone)  # an unassign EC2 refused: back, prefix and all
        assert {f.ip: f.prefix for f in store.free_ips()}["10.0.17.16"] == "10.0.17.16/28"
