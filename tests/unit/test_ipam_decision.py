"""The IPAM's decisions as pure functions (cnivpc.plugins.ipam.decision), checked against the
invariants' independent statement of the rules (invariants.decision_problems): hand-made pools
for each rule, and hypothesis drawing thousands of pools -- ENIs, free and held IPs, cooldowns,
EC2 work in flight, IPs the metadata stopped listing, limits and subnets -- on which no decision
may break an invariant. No lab, no store, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnivpc.cni.errors import TryAgainLater
from cnivpc.cni.records import replace
from cnivpc.plugins.ipam import decision as rules
from cnivpc.plugins.ipam.config import IpamConf
from cnivpc.plugins.ipam.decision import (
    Claim,
    NoCapacity,
    NoSubnet,
    Plan,
    Pool,
    Read,
    Release,
    Start,
    Take,
    Wait,
)
from cnivpc.plugins.ipam.invariants import decision_problems
from cnivpc.plugins.ipam.node import Limits, Subnet
from cnivpc.plugins.ipam.prefixes import addresses
from cnivpc.plugins.ipam.store import Allocation, EniRecord, FreeIP, Op

NOW = 10_000.0
SUBNET = Subnet("subnet-1", "10.0.0.0/20", 200, {"k": "v"})


def conf(**kw: object) -> IpamConf:
    base: dict[str, object] = {"cniVersion": "1.0.0", "name": "net", "type": "cnivpc-ipam",
                               "reuseIPWait": 60, "warmIPTarget": 2}
    base.update(kw)
    return IpamConf.model_validate(base)


def eni(index: int, link: bool = True) -> EniRecord:
    return EniRecord(f"eni-{index}", f"02:00:00:00:00:0{index}", index, "subnet-1",
                     "10.0.0.0/20", "vpc-1", ("10.0.0.0/16",), f"eth{index}" if link else "",
                     f"10.0.{index}.1")


def free(ip: str, index: int, freed_at: float = 0.0) -> FreeIP:
    return FreeIP(ip, f"eni-{index}", freed_at)


def held(ip: str, index: int, cid: str = "c") -> Allocation:
    return Allocation(ip, f"eni-{index}", cid, "eth0", "", 1.0, "", "net")


def op(op_id: int, kind: str, expected: int, claimed: int, *, index: int | None = None) -> Op:
    return Op(op_id, kind, f"eni-{index}" if kind == "assign" else "",
              index if kind == "create" else None, expected, claimed, 1, NOW - 1)


def pool(**kw: object) -> Pool:
    base: dict[str, object] = dict(now=NOW, enis=(eni(0), eni(1)), free=(), held=(),
                                   limits=Limits(3, 4), subnets=(SUBNET,))
    base.update(kw)
    return Pool(**base)  # type: ignore[arg-type]


# -- each rule on a hand-made pool -----------------------------------------------------------


def test_a_ready_ip_is_taken_longest_free_first_and_passes_the_checks() -> None:
    p = pool(free=(free("10.0.1.5", 1, NOW - 100), free("10.0.1.4", 1, NOW - 500)))
    got = rules.decide_add(p, conf(), observed=False)
    assert got == Take(free("10.0.1.4", 1, NOW - 500), eni(1))
    assert decision_problems(p, conf(), got) == []


def test_an_ip_in_its_cooldown_or_suspect_or_below_interface_index_is_not_taken() -> None:
    c = conf()
    p = pool(free=(free("10.0.1.5", 1, NOW - 10),  # cooling down
                   free("10.0.1.6", 1, 0.0),  # the metadata stopped listing it
                   free("10.0.0.9", 0, 0.0)),  # the boot ENI (interfaceIndex 1)
             suspects=frozenset({"10.0.1.6"}))
    got = rules.decide_add(p, c, observed=True)
    assert got == Start(Plan("assign", 1, eni_id="eni-1"))  # room for one more on eni-1
    assert decision_problems(p, c, got) == []


def test_work_in_flight_with_unclaimed_ips_is_claimed() -> None:
    p = pool(ops=(op(7, "assign", 3, 3, index=1), op(8, "assign", 2, 1, index=1)))
    assert rules.decide_add(p, conf(), observed=False) == Claim(8)


def test_the_eni_being_created_is_waited_for_not_a_second_one() -> None:
    # The pod ENI is full, its creator's IPs are all claimed, a device index is free: the ADD
    # waits for the ENI being created (which has room beyond the IPs it asked for) instead of
    # creating another. This is the rule whose removal no lab test could see.
    full = tuple(held(f"10.0.1.{i}", 1, f"c{i}") for i in range(2, 5))
    p = pool(held=full, limits=Limits(4, 4), ops=(op(3, "create", 1, 1, index=2),))
    assert rules.decide_add(p, conf(), observed=True) == Wait(3)
    start = Start(Plan("create", 3, device_index=3, subnet=SUBNET))
    assert "a second ENI while one is being created" in decision_problems(p, conf(), start)


def test_a_new_eni_needs_a_fresh_view_of_the_instance_and_the_subnets() -> None:
    full = tuple(held(f"10.0.1.{i}", 1, f"c{i}") for i in range(2, 5))
    p = pool(held=full)
    assert isinstance(rules.decide_add(p, conf(), observed=False), Read)
    assert isinstance(rules.decide_add(replace(p, subnets=None), conf(), observed=True), Read)
    assert isinstance(rules.decide_add(replace(p, limits=None), conf(), observed=True), Read)
    got = rules.decide_add(p, conf(), observed=True)
    assert got == Start(Plan("create", 3, device_index=2, subnet=SUBNET))
    assert decision_problems(p, conf(), got) == []


def test_a_full_node_is_no_capacity_only_without_work_in_flight() -> None:
    full = tuple(held(f"10.0.{e}.{i}", e, f"c{e}{i}") for e in (1, 2) for i in range(2, 5))
    p = pool(enis=(eni(0), eni(1), eni(2)), held=full)
    with pytest.raises(NoCapacity, match="all 3 ENIs"):
        rules.decide_add(p, conf(), observed=True)
    busy = replace(p, ops=(op(4, "assign", 1, 1, index=1),))
    assert rules.decide_add(busy, conf(), observed=True) == Wait(4)


def test_no_subnet_with_the_tags_and_a_full_subnet_are_errors() -> None:
    full = tuple(held(f"10.0.1.{i}", 1, f"c{i}") for i in range(2, 5))
    with pytest.raises(NoSubnet):
        rules.decide_add(pool(held=full), conf(subnetTags={"k": "other"}), observed=True)
    empty = (Subnet("subnet-1", "10.0.0.0/20", 0, {}),)
    with pytest.raises(TryAgainLater, match="no free address"):
        rules.decide_add(pool(held=full, subnets=empty), conf(), observed=True)


def test_the_refill_assigns_up_to_the_warm_target_then_starts_the_next_eni() -> None:
    c = conf(warmIPTarget=2, warmENIThreshold=3)
    p = pool(held=(held("10.0.1.2", 1),))
    assert rules.plan_refill(p, c) == Plan("assign", 2, eni_id="eni-1")
    assert rules.refill_due(p, c)
    p2 = pool(held=(held("10.0.1.2", 1),), free=(free("10.0.1.3", 1), free("10.0.1.4", 1)))
    plan = rules.plan_refill(p2, c)  # 2 free + 0 room < threshold 3
    assert plan == Plan("create", 3, device_index=2, subnet=SUBNET)
    assert decision_problems(p2, c, plan) == []
    assert rules.plan_refill(replace(p2, ops=(op(1, "assign", 1, 0, index=1),)), c) is None
    assert not rules.refill_due(replace(p2, ops=(op(1, "assign", 1, 0, index=1),)), c)


def test_del_gives_back_the_surplus_newest_first_never_a_primary_never_below_warm() -> None:
    c = conf(maxFreeIPs=1, warmIPTarget=2)
    p = pool(free=(free("10.0.1.3", 1, 1.0), free("10.0.1.4", 1, 2.0)),
             held=(held("10.0.1.5", 1, "gone"), held("10.0.1.6", 1, "stays")))
    plan = rules.release(p, c, [held("10.0.1.5", 1, "gone")])
    assert plan.unassign == (FreeIP("10.0.1.5", "eni-1", NOW),)
    assert decision_problems(p, c, plan) == []


def test_gc_gives_back_idle_ips_beyond_the_warm_target() -> None:
    c = conf(warmIPTarget=1)
    p = pool(free=(free("10.0.1.3", 1, 1.0), free("10.0.1.4", 1, 2.0), free("10.0.1.1", 1, 0)),
             enis=(eni(0), replace(eni(1), primary_ip="10.0.1.1")))
    assert [f.ip for f in rules.idle(p, c, 100)] == ["10.0.1.4"]


# -- the checks catch what they claim ------------------------------------------------------------


def test_the_checks_refuse_every_kind_of_bad_decision() -> None:
    c = conf(subnetTags={"k": "v"})
    p = pool(free=(free("10.0.1.3", 1, NOW - 5), free("10.0.1.4", 1), free("10.0.0.7", 0)),
             held=(held("10.0.1.2", 1),), suspects=frozenset({"10.0.1.4"}))
    bad_takes = {
        "cooling": Take(free("10.0.1.3", 1, NOW - 5), eni(1)),
        "suspect": Take(free("10.0.1.4", 1), eni(1)),
        "below interfaceIndex": Take(free("10.0.0.7", 0), eni(0)),
        "held": Take(free("10.0.1.2", 1), eni(1)),
        "primary": Take(free("10.0.1.1", 1), eni(1)),
        "unknown eni": Take(free("10.0.9.9", 9), eni(9)),
    }
    for why, take in bad_takes.items():
        assert decision_problems(p, c, take), why
    bad_plans = {
        "assign beyond room": Plan("assign", 3, eni_id="eni-1"),
        "assign to the boot ENI": Plan("assign", 1, eni_id="eni-0"),
        "create at a taken index": Plan("create", 1, device_index=1, subnet=SUBNET),
        "create beyond the limit": Plan("create", 1, device_index=5, subnet=SUBNET),
        "create over an ENI's IPs": Plan("create", 4, device_index=2, subnet=SUBNET),
        "create in an untagged subnet": Plan("create", 1, device_index=2,
                                             subnet=replace(SUBNET, tags={})),
    }
    tight = replace(p, limits=Limits(2, 4))
    for why, plan in bad_plans.items():
        target = tight if why == "create beyond the limit" else p
        assert decision_problems(target, c, plan), why
    assert decision_problems(p, c, [free("10.0.1.2", 1)])  # a held IP given back
    assert decision_problems(p, c, [free("10.0.1.1", 1)])  # a primary given back
    assert decision_problems(p, c, Release((), (free("10.0.1.4", 1), free("10.0.1.3", 1))))


# -- hypothesis: no decision on any pool breaks an invariant -----------------------------------


# -- prefix mode ------------------------------------------------------------------------------


def prefix_rows(prefix: str, index: int, held_n: int = 0,
                freed_at: float = 0.0) -> tuple[list[FreeIP], list[Allocation]]:
    """The 16 addresses of ``prefix`` on eni-<index>: the first ``held_n`` held."""
    ips = addresses(prefix)
    held_rows = [replace(held(ip, index, f"c-{ip}"), prefix=prefix) for ip in ips[:held_n]]
    free_rows = [FreeIP(ip, f"eni-{index}", freed_at, prefix) for ip in ips[held_n:]]
    return free_rows, held_rows


def test_prefix_mode_plans_prefixes_and_counts_slots_not_addresses() -> None:
    c = conf(ipv4Prefixes=True, warmIPTarget=4)
    # One prefix, all 16 held, and one secondary IP: 2 of the 3 slots of eni-1 used.
    free_rows, held_rows = prefix_rows("10.0.1.16/28", 1, held_n=16)
    p = pool(held=(*held_rows, held("10.0.1.5", 1)), free=tuple(free_rows))
    got = rules.decide_add(p, c, observed=True)
    assert got == Start(Plan("assign", 1, eni_id="eni-1", prefixes=True))
    assert got.plan.addresses == 16  # what ADDs may claim of it: a burst shares one call
    assert decision_problems(p, c, got) == []
    assert decision_problems(p, c, Plan("assign", 2, eni_id="eni-1", prefixes=True))
    # The ENI full (3 slots): a new one, filled with prefixes (ipBatchSize 0).
    _, h2 = prefix_rows("10.0.1.32/28", 1, held_n=16)
    full = replace(p, held=(*p.held, *h2))
    got = rules.decide_add(full, c, observed=True)
    assert got == Start(Plan("create", 3, device_index=2, subnet=SUBNET, prefixes=True))
    assert decision_problems(full, c, got) == []
    assert rules.max_pods(c, Limits(3, 4)) == 2 * 3 * 16


def test_prefix_addresses_are_taken_singly_and_a_busy_prefix_is_never_given_back() -> None:
    c = conf(ipv4Prefixes=True, warmIPTarget=0, maxFreeIPs=0)
    free_rows, held_rows = prefix_rows("10.0.1.16/28", 1, held_n=1)
    p = pool(free=tuple(free_rows), held=tuple(held_rows))
    take = rules.decide_add(p, c, observed=False)
    assert isinstance(take, Take) and take.ip.prefix == "10.0.1.16/28"
    assert decision_problems(p, c, take) == []
    # DEL of the one pod: its prefix is not given back by DEL (nor any address alone) ...
    assert rules.release(p, c, list(held_rows)).unassign == ()
    # ... GC gives it back whole once all 16 are idle, and never a part of it.
    assert rules.idle(p, c, 100) == []
    idle_free, _ = prefix_rows("10.0.1.16/28", 1, freed_at=NOW - 500)
    quiet = pool(free=tuple(idle_free))
    back = rules.idle(quiet, c, 100)
    assert sorted(f.ip for f in back) == sorted(addresses("10.0.1.16/28"))
    assert decision_problems(quiet, c, back) == []
    assert decision_problems(quiet, c, back[:15])  # a part of a prefix
    # The warm targets keep it: 16 free addresses are what warmIPTarget 16 asks for.
    assert rules.idle(quiet, conf(ipv4Prefixes=True, warmIPTarget=16), 100) == []
    assert rules.idle(quiet, conf(ipv4Prefixes=True, warmIPTarget=0, warmPrefixTarget=1),
                      100) == []


def test_prefix_mode_refill_keeps_whole_free_prefixes() -> None:
    c = conf(ipv4Prefixes=True, warmIPTarget=2, warmPrefixTarget=1)
    free_rows, held_rows = prefix_rows("10.0.1.16/28", 1, held_n=8)
    p = pool(free=tuple(free_rows), held=tuple(held_rows))
    # 8 free addresses satisfy warmIPTarget, but no prefix is wholly free.
    assert rules.refill_need(p, c) == ("assign", 16)
    assert rules.plan_refill(p, c) == Plan("assign", 1, eni_id="eni-1", prefixes=True)
    assert rules.eni_threshold(c, 3) == 16  # one prefix's worth, not 3/4 of 48 addresses


@st.composite
def pools(draw: st.DrawFn) -> tuple[Pool, IpamConf, bool]:
    prefix_mode = draw(st.booleans())
    c = conf(ipv4Prefixes=prefix_mode, warmPrefixTarget=draw(st.integers(0, 2)),
             interfaceIndex=draw(st.integers(0, 2)),
             reuseIPWait=draw(st.sampled_from([0, 60])),
             warmIPTarget=draw(st.integers(0, 6)),
             warmENIThreshold=draw(st.integers(-1, 12)),
             ipBatchSize=draw(st.integers(0, 4)),
             maxFreeIPs=draw(st.integers(-1, 4)),
             subnetTags=draw(st.sampled_from([{}, {"k": "v"}])))
    limits = Limits(draw(st.integers(2, 5)), draw(st.integers(2, 8)))
    indexes = sorted({0} | set(draw(st.lists(st.integers(1, limits.enis - 1), max_size=4))))
    enis = tuple(eni(i, link=i == 0 or draw(st.booleans())) for i in indexes)
    free_rows: list[FreeIP] = []
    held_rows: list[Allocation] = []
    for e in enis:
        # Up to an ENI's worth of slots (the store never has more than EC2 allows): a slot is
        # a secondary IP, or (in a mixed pool) a prefix of 16 addresses.
        for n in range(draw(st.integers(0, limits.pod_ips_per_eni))):
            if draw(st.booleans()):
                rows_free, rows_held = prefix_rows(f"10.{e.device_index}.{n}.16/28",
                                                   e.device_index, draw(st.integers(0, 16)),
                                                   NOW - draw(st.sampled_from([0, 30, 500])))
                free_rows += rows_free
                held_rows += rows_held
                continue
            ip = f"10.0.{e.device_index}.{n + 2}"
            if draw(st.booleans()):
                free_rows.append(FreeIP(ip, e.eni_id, NOW - draw(st.sampled_from([0, 30, 500]))
                                        if draw(st.booleans()) else 0.0))
            else:
                held_rows.append(held(ip, e.device_index, f"c-{ip}"))
    ops: list[Op] = []
    for op_id in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            target = draw(st.sampled_from(enis))
            expected = draw(st.integers(1, 3))
            ops.append(op(op_id + 1, "assign", expected, draw(st.integers(0, expected)),
                          index=target.device_index))
        else:
            taken = {e.device_index for e in enis} | {o.device_index for o in ops}
            spare = [i for i in range(1, limits.enis) if i not in taken]
            if spare:
                expected = draw(st.integers(1, 3))
                ops.append(op(op_id + 1, "create", expected, draw(st.integers(0, expected)),
                              index=draw(st.sampled_from(spare))))
    suspects = frozenset(draw(st.lists(st.sampled_from([f.ip for f in free_rows] or ["x"]),
                                       max_size=2)))
    subnets = draw(st.sampled_from([None, (SUBNET,), (replace(SUBNET, available=1),),
                                    (replace(SUBNET, tags={}),)]))
    p = Pool(now=NOW, enis=enis, free=tuple(sorted(free_rows, key=lambda f: (f.freed_at, f.ip))),
             held=tuple(held_rows), ops=tuple(ops), suspects=suspects,
             limits=draw(st.sampled_from([limits, None])), subnets=subnets)
    return p, c, draw(st.booleans())


@settings(max_examples=1500, deadline=None)
@given(pools())
def test_no_add_decision_breaks_an_invariant(drawn: tuple[Pool, IpamConf, bool]) -> None:
    p, c, observed = drawn
    try:
        got = rules.decide_add(p, c, observed=observed)
    except NoCapacity:
        # Full only when nothing is ready, nothing is coming, and every slot is used.
        assert not p.ready(c) and not p.ops
        assert p.limits is not None and len(rules.used_device_indexes(p)) >= p.limits.enis
        return
    except (NoSubnet, TryAgainLater):
        assert not p.ready(c)
        return
    assert (isinstance(got, Take)) == bool(p.ready(c))
    assert decision_problems(p, c, got) == []
    if isinstance(got, Start):
        assert not any(o.kind == "create" for o in p.ops) or got.plan.kind == "assign"
        assert got.plan.kind == "assign" or observed


@settings(max_examples=800, deadline=None)
@given(pools())
def test_no_refill_or_give_back_breaks_an_invariant(drawn: tuple[Pool, IpamConf, bool]) -> None:
    p, c, _ = drawn
    try:
        plan = rules.plan_refill(p, c)
    except (NoSubnet, TryAgainLater):
        plan = None
    if isinstance(plan, Plan):
        assert decision_problems(p, c, plan) == []
        assert not p.ops
    for a in p.held[:2]:
        rel = rules.release(p, c, [a])
        assert decision_problems(p, c, rel) == []
        left = len(p.free) + 1 - len(rel.unassign)
        assert not rel.unassign or left >= max(c.max_free_ips, c.warm_ip_target)
    for age in (0, 100, 1000):
        idle = rules.idle(p, c, age)
        assert decision_problems(p, c, idle) == []
        assert not idle or len(p.free) - len(idle) >= min(c.warm_ip_target, len(p.free))


# -- IPv6-only attachments ---------------------------------------------------------------------

V6_SUBNET = Subnet("subnet-6", "10.0.16.0/20", 300, {"k": "v"}, "2001:db8:0:1::/64")


def test_ipv6_only_pods_use_the_lowest_pod_eni_with_ipv6_else_one_new_eni_without_ipv4() -> None:
    c = conf(ipv6=True, ipv4=False, subnetTags={"k": "v"})
    limits = Limits(enis=4, ipv4_per_eni=15)
    with_v6 = [replace(eni(i), subnet_ipv6_cidr="2001:db8::/64") for i in (2, 1)]
    assert rules.v6_eni(pool(enis=(eni(0), *with_v6), limits=limits), c) == with_v6[1]
    # No pod ENI with IPv6: a new one, after reading the subnets, in the subnet with IPv6.
    bare = pool(enis=(eni(0), eni(1)), limits=limits, subnets=None)
    assert isinstance(rules.v6_eni(bare, c), Read)
    plan = rules.v6_eni(replace(bare, subnets=(SUBNET, V6_SUBNET)), c)
    assert plan == Plan("create", 0, device_index=2, subnet=V6_SUBNET)
    assert decision_problems(replace(bare, subnets=(SUBNET, V6_SUBNET)), c, plan) == []
    # The same plan is refused without ipv4: false (no IPv4) and in a subnet without IPv6.
    assert decision_problems(bare, conf(subnetTags={"k": "v"}), plan) != []
    assert decision_problems(bare, c, replace(plan, subnet=SUBNET)) != []
    # One being created is waited for; none with IPv6 among the tagged subnets is an error.
    creating = replace(bare, ops=(op(7, "create", 0, 0, index=2),))
    assert rules.v6_eni(creating, c) == Wait(7)
    with pytest.raises(NoSubnet):
        rules.v6_eni(replace(bare, subnets=(SUBNET,)), c)
    with pytest.raises(NoCapacity):
        rules.v6_eni(pool(enis=tuple(eni(i) for i in range(4)), limits=limits), c)


def test_egress_addresses_go_round_robin_skipping_held_and_the_ranges_ends() -> None:
    cidr = "169.254.172.0/29"  # .1 to .6 usable
    assert rules.pick_egress(cidr, set(), "") == "169.254.172.1"
    assert rules.pick_egress(cidr, set(), "169.254.172.3") == "169.254.172.4"
    assert rules.pick_egress(cidr, {"169.254.172.4"}, "169.254.172.3") == "169.254.172.5"
    assert rules.pick_egress(cidr, set(), "169.254.172.6") == "169.254.172.1"  # wraps
    assert rules.pick_egress(cidr, set(), "10.0.0.1") is not None  # a cursor from another range
    everything = {f"169.254.172.{i}" for i in range(1, 7)}
    assert rules.pick_egress(cidr, everything, "") is None


# -- addresses asked for by name ---------------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(pools(), st.data())
def test_no_requested_address_decision_breaks_an_invariant(
        drawn: tuple[Pool, IpamConf, bool], data: st.DataObject) -> None:
    p, c, _ = drawn
    candidates = [f.ip for f in p.free] + [a.ip for a in p.held] + \
        [e.primary_ip for e in p.enis] + ["10.0.0.1", "10.0.15.255", "10.0.9.99", "10.9.0.9"]
    ip = data.draw(st.sampled_from(candidates))
    holder = next((a for a in p.held if a.ip == ip), None)
    try:
        got = rules.decide_requested(p, c, ip, holder)
    except TryAgainLater:
        assert holder is not None  # only a held address makes the asker wait
        return
    except rules.Unavailable:
        assert holder is None
        return
    assert holder is None
    if isinstance(got, Read):
        assert p.limits is None
        return
    assert decision_problems(p, c, got) == []
    if isinstance(got, Take):
        assert got.ip.ip == ip and got.requested
    else:
        assert got.kind == "assign" and got.ips == (ip,) and got.count == 1
        assert ip not in {f.ip for f in p.free}
