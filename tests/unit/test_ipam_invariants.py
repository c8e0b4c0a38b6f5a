"""The IPAM's invariants as pure checks (cnivpc.plugins.ipam.invariants): each one caught on a
crafted snapshot, none on consistent ones (hypothesis draws them)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cnivpc.plugins.ipam.invariants import (
    LEAK_GRACE,
    Ec2Eni,
    LinkState,
    OpState,
    Snapshot,
    handout_problem,
    violations,
)
from cnivpc.plugins.ipam.store import LEASE_MAX_AGE, Allocation, EniRecord, FreeIP

ME = "i-me"
BOOT = EniRecord("eni-boot", "02:00:00:00:00:00", 0, "subnet-1", "10.0.0.0/20", "vpc-1",
                 ("10.0.0.0/16",), "eth0", "10.0.0.10")
POD = EniRecord("eni-pod", "02:00:00:00:00:01", 1, "subnet-1", "10.0.0.0/20", "vpc-1",
                ("10.0.0.0/16",), "eth1", "10.0.0.20")
POD_IPS = tuple(f"10.0.0.{i}" for i in range(21, 35))


def ec2(pod_ips: tuple[str, ...] = POD_IPS, dot: bool = True) -> tuple[Ec2Eni, ...]:
    return (Ec2Eni("eni-boot", "in-use", ME, 0, ("10.0.0.10",), "10.0.0.10", True, False, None),
            Ec2Eni("eni-pod", "in-use", ME, 1, ("10.0.0.20", *pod_ips), "10.0.0.20", dot, True,
                   1000.0))


LINKS = {"02:00:00:00:00:00": LinkState("eth0", True, 9001),
         "02:00:00:00:00:01": LinkState("eth1", True, 9001)}


def snap(allocs: tuple[Allocation, ...] = (), free: tuple[FreeIP, ...] = (),
         **kw: object) -> Snapshot:
    base: dict[str, object] = dict(instance_id=ME, interface_index=1, node_mtu=9001, now=5000.0,
                                   allocations=allocs, free=free, enis=(BOOT, POD), ec2=ec2(),
                                   links=LINKS)
    base.update(kw)
    return Snapshot(**base)  # type: ignore[arg-type]


def alloc(ip: str, cid: str = "c1") -> Allocation:
    return Allocation(ip, "eni-pod", cid, "eth0", "", 1.0, "", "net")


def names(s: Snapshot) -> list[str]:
    return sorted(v.invariant for v in violations(s))


def test_a_consistent_node_has_no_violation() -> None:
    assert violations(snap((alloc(POD_IPS[0]),), (FreeIP(POD_IPS[1], "eni-pod", 0.0),))) == []


def test_each_invariant_is_caught() -> None:
    assert names(snap((alloc("10.0.0.20"),))) == ["never-primary"]
    assert names(snap(free=(FreeIP("10.0.0.10", "eni-pod", 0.0),))) == [
        "ip-on-our-eni", "never-primary"]  # the node's own IP, on no pod ENI
    assert names(snap((alloc("10.0.9.9"),))) == ["ip-on-our-eni"]
    assert names(snap((alloc(POD_IPS[0]), alloc(POD_IPS[0], "c2")))) == ["one-holder"]
    assert names(snap(ec2=ec2(dot=False))) == ["eni-ready"]
    down = {**LINKS, "02:00:00:00:00:01": LinkState("eth1", False, 1500)}
    assert names(snap(links=down)) == ["eni-ready"]
    assert names(snap(enis=(BOOT, POD), ec2=ec2()[:1])) == ["eni-known"]
    stray = Ec2Eni("eni-x", "in-use", ME, 2, ("10.0.0.40",), "10.0.0.40", True, True, 1.0)
    assert names(snap(ec2=(*ec2(), stray))) == ["eni-tracked"]
    leaked = Ec2Eni("eni-y", "available", "", None, ("10.0.0.41",), "10.0.0.41", False, True,
                    5000.0 - LEAK_GRACE - 1)
    young = Ec2Eni("eni-z", "available", "", None, ("10.0.0.42",), "10.0.0.42", False, True,
                   5000.0 - 10)
    assert names(snap(ec2=(*ec2(), leaked, young))) == ["eni-tracked"]
    stuck = OpState(1, "create", 5000.0 - LEASE_MAX_AGE - 1, True)
    dead = OpState(2, "create", 4990.0, False)  # inert: its process is gone
    assert names(snap(ops=(stuck, dead))) == ["bounded-lease"]


def test_handout_problem() -> None:
    assert handout_problem(POD_IPS[0], POD, interface_index=1, primaries=set(), held=set()) is None
    assert "held" in str(handout_problem(POD_IPS[0], POD, interface_index=1, primaries=set(),
                                         held={POD_IPS[0]}))
    assert "primary" in str(handout_problem("10.0.0.20", POD, interface_index=1,
                                            primaries=set(), held=set()))
    assert handout_problem("10.0.0.11", BOOT, interface_index=0, primaries=set(),
                           held=set()) is None  # interfaceIndex 0: the boot ENI's secondaries
    assert "below" in str(handout_problem("10.0.0.11", BOOT, interface_index=1,
                                          primaries=set(), held=set()))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POD_IPS), unique=True, max_size=len(POD_IPS)),
       st.integers(min_value=0, max_value=len(POD_IPS)))
def test_any_split_of_the_pod_ips_into_held_and_free_is_consistent(ips: list[str],
                                                                    held: int) -> None:
    allocs = tuple(alloc(ip, f"c{n}") for n, ip in enumerate(ips[:held]))
    free = tuple(FreeIP(ip, "eni-pod", 0.0) for ip in ips[held:])
    assert violations(snap(allocs, free)) == []
    # ... and taking any IP away from EC2 is caught.
    if ips:
        assert "ip-on-our-eni" in names(snap(allocs, free, ec2=ec2(
            tuple(ip for ip in POD_IPS if ip != ips[0]))))


def test_a_pods_ipv6_must_be_in_a_80_of_its_enis_and_held_once() -> None:
    from cnivpc.cni.records import replace

    pod_eni = replace(ec2()[1], ipv6_prefixes=("2600:1f18:1:100:1234::/80",))
    inside = replace(alloc(POD_IPS[0]), ipv6="2600:1f18:1:100:1234::7")
    assert violations(snap((inside,), ec2=(ec2()[0], pod_eni))) == []
    outside = replace(alloc(POD_IPS[0]), ipv6="2600:1f18:1:100:9999::7")
    assert names(snap((outside,), ec2=(ec2()[0], pod_eni))) == ["ip-on-our-eni"]
    twice = (inside, replace(alloc(POD_IPS[1], "c2"), ipv6=inside.ipv6))
    assert names(snap(twice, ec2=(ec2()[0], pod_eni))) == ["one-holder"]
