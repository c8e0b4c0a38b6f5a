"""The IPAM store: allocations keyed by attachment, cooldown ordering, boot voiding, caches,
the shared token bucket, permissions and crash safety (a real SQLite file in tmp_path)."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from cnivpc.cni.errors import TryAgainLater
from cnivpc.plugins.hostlock import host_lock
from cnivpc.plugins.ipam.store import Store


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def open_store(path: Path, clock: Clock, boot: str = "boot-1") -> Store:
    return Store.open(str(path), boot_id=boot, clock=clock)


def test_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "state"
    with open_store(data, Clock()) as store, store.transaction():
        store.add_free(["10.0.1.5"], "eni-1")
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    for name in os.listdir(data):
        assert stat.S_IMODE(os.stat(data / name).st_mode) == 0o600, name


def test_allocate_release_by_attachment(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock) as store:
        with store.transaction():
            store.add_free(["10.0.1.5", "10.0.1.6"], "eni-1")
            alloc = store.allocate("10.0.1.5", "cid1", "eth0", pod="default/web")
        assert alloc.eni_id == "eni-1"
        assert [a.ip for a in store.allocations("cid1", "eth0")] == ["10.0.1.5"]
        with pytest.raises(KeyError):
            store.allocate("10.0.1.5", "cid2", "eth0")  # already held
        clock.now += 5
        with store.transaction():
            released = store.release("cid1", "eth0")
            again = store.release("cid1", "eth0")
        assert [a.ip for a in released] == ["10.0.1.5"]
        assert again == []
        assert store.allocations() == []


def test_cooldown_and_lru_order(tmp_path: Path) -> None:
    clock = Clock(2000.0)
    with open_store(tmp_path, clock) as store:
        with store.transaction():
            store.add_free(["10.0.1.7"], "eni-1")  # fresh from EC2: freed_at 0
            store.add_free(["10.0.1.5", "10.0.1.6"], "eni-1")
            store.allocate("10.0.1.5", "a", "eth0")
            store.allocate("10.0.1.6", "b", "eth0")
        clock.now = 2010.0
        with store.transaction():
            store.release("b", "eth0")
        clock.now = 2020.0
        with store.transaction():
            store.release("a", "eth0")
        ready = store.free_ips(ready_before=clock.now - 60)
        assert [f.ip for f in ready] == ["10.0.1.7"]
        order = store.free_ips()
        assert [f.ip for f in order] == ["10.0.1.7", "10.0.1.6", "10.0.1.5"]
        clock.now = 2075.0
        assert [f.ip for f in store.free_ips(ready_before=clock.now - 60)] == [
            "10.0.1.7", "10.0.1.6"]


def test_new_boot_voids_allocations(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock, boot="boot-1") as store, store.transaction():
        store.add_free(["10.0.1.5"], "eni-1")
        store.allocate("10.0.1.5", "a", "eth0")
    with open_store(tmp_path, clock, boot="boot-1") as store:
        assert len(store.allocations()) == 1
    with open_store(tmp_path, clock, boot="boot-2") as store:
        assert store.allocations() == []
        assert [f.ip for f in store.free_ips(ready_before=clock.now)] == ["10.0.1.5"]
        assert store.boot_id == "boot-2"


def test_forget_never_drops_allocated(tmp_path: Path) -> None:
    with open_store(tmp_path, Clock()) as store:
        with store.transaction():
            store.add_free(["10.0.1.5", "10.0.1.6"], "eni-1")
            store.allocate("10.0.1.5", "a", "eth0")
            store.forget(["10.0.1.5", "10.0.1.6"])
        assert store.known_ips() == {"10.0.1.5": "eni-1"}


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with open_store(tmp_path, Clock()) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.add_free(["10.0.1.5"], "eni-1")
            raise RuntimeError("crash between steps")
        assert store.known_ips() == {}


def test_cache_ttl(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock) as store:
        store.cache_put("subnets", [{"id": "subnet-1"}], ttl=300)
        assert store.cache_get("subnets") == [{"id": "subnet-1"}]
        clock.now += 301
        assert store.cache_get("subnets") is None


def test_token_bucket_refills(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock) as store:
        waits = [store.take_token("mutating", capacity=3, refill_per_s=2) for _ in range(4)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert waits[3] == pytest.approx(0.5)
        clock.now += 0.5
        assert store.take_token("mutating", capacity=3, refill_per_s=2) == 0.0


def _allocate_one(args: tuple[str, int]) -> str | None:
    data, n = args
    store = Store.open(data, boot_id="boot-1")
    try:
        with store.transaction():
            free = store.free_ips()
            if not free:
                return None
            return store.allocate(free[0].ip, f"c{n}", "eth0").ip
    finally:
        store.close()


def test_concurrent_processes_never_share_an_ip(tmp_path: Path) -> None:
    ips = [f"10.0.1.{i}" for i in range(10, 26)]
    with open_store(tmp_path, Clock(), boot="boot-1") as store, store.transaction():
        store.add_free(ips, "eni-1")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(8) as pool:
        got = pool.map(_allocate_one, [(str(tmp_path), n) for n in range(24)])
    taken = [ip for ip in got if ip is not None]
    assert sorted(taken) == sorted(ips)  # every IP handed out exactly once
    assert got.count(None) == 8


def test_host_lock_times_out_with_try_again(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "ipam.lock")
    with host_lock(path, timeout=1.0):
        with pytest.raises(TryAgainLater) as err, host_lock(path, timeout=0.05):
            pass
        assert err.value.code == 11
    with host_lock(path, timeout=0.05):  # released on exit
        pass


def test_ipv6_only_leases_are_unique_released_by_attachment_and_void_after_a_boot(
        tmp_path: Path) -> None:
    from cnivpc.plugins.ipam.store import V6Lease

    clock = Clock()
    a = V6Lease("2001:db8::a", "169.254.172.1", "eni-1", "net", "c1", "eth0", "p", "", 1.0)
    with open_store(tmp_path, clock, boot="boot-1") as store, store.transaction():
        store.lease_v6(a)
        for clash in (a._replace(container_id="c2"),  # the same IPv6
                      a._replace(ipv6="2001:db8::b", container_id="c2"),  # the same egress
                      a._replace(ipv6="2001:db8::b", egress_ip="169.254.172.2")):  # same pod
            with pytest.raises(KeyError):
                store.lease_v6(clash)
        store.lease_v6(a._replace(ipv6="2001:db8::c", egress_ip="", container_id="c3"))
        assert store.last_egress_ip() == "169.254.172.1"  # a lease without egress moves nothing
        assert [x.container_id for x in store.v6_leases(network="net")] == ["c1", "c3"]
        assert store.release_v6("c1", "eth0", "other-net") == []  # another network's: kept
        assert store.release_v6("c1", "eth0", "net") == [a]
        assert store.release_v6("c1", "eth0", "net") == []  # idempotent
    with open_store(tmp_path, clock, boot="boot-1") as store:
        assert [x.container_id for x in store.v6_leases()] == ["c3"]
    with open_store(tmp_path, clock, boot="boot-2") as store:
        assert store.v6_leases() == []  # no pod survives a reboot
