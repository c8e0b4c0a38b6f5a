"""The IPAM's invariants, stated once, as pure checks over a ``Snapshot`` of the node: the store,
what EC2 says about the instance's ENIs, the kernel's links. ``cnivpc ipam audit`` reports
every violation (and ``--repair`` fixes those with a safe repair); the allocator checks every
decision (``decision_problems``) before it applies it: an IP it hands out, EC2 work it starts, IPs
it gives back. Those checks restate the rules independently of ``decision``, which makes the
choices: a bug in one is caught by the other (and the property tests run both).

The invariants:

* ``one-holder``: no IP is held by two attachments, nor both held and free.
* ``ip-on-our-eni``: every IP the store holds or offers is assigned, in EC2, to an ENI attached
  to this instance at ``interfaceIndex`` or above; a pod's IPv6 address (dual-stack) is in a
  /80 EC2 has delegated to the ENI its IPv4 is on, and no two pods hold the same; an IPv6-only
  pod's address (``ipv4: false``) is in a /80 of its ENI, attached here at ``interfaceIndex`` or
  above, and its node-local egress IPv4 is no other pod's.
* ``never-primary``: no IP the store holds or offers is the primary IP of any ENI (the node's
  own included, whatever ``interfaceIndex`` is).
* ``eni-tracked``: every ENI cnivpc created for this instance (its tag) is in the store while
  attached here, and deleted once it has stayed detached past ``LEAK_GRACE``.
* ``eni-known``: every ENI the store hands IPs from is attached to this instance in EC2.
* ``eni-ready``: every ENI whose IPs go to pods has its link up, with the node's MTU, and
  DeleteOnTermination set.
* ``bounded-lease``: no record of in-flight EC2 work counts once its process is gone (its lease
  is released by the kernel) or past the age cap; a process still holding one past the cap is
  reported (stuck in EC2 work).

Pure: imports only the stdlib, the config and the value types of the store and ``decision``.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from ...cni.records import Record
from .config import IpamConf
from .decision import AddDecision, Plan, Pool, Release, Start, Take, prefix_mode
from .prefixes import PREFIX_SIZE
from .store import LEASE_MAX_AGE, Allocation, EniRecord, FreeIP, V6Lease

# A detached ENI tagged as ours must be gone within this long: the window between
# CreateNetworkInterface and AttachNetworkInterface is seconds, and the leaked-ENI sweep (every
# GC; cnivpc-gc.timer runs one every 5 minutes) deletes one seen detached twice 5 minutes apart.
LEAK_GRACE = 900.0


class Ec2Eni(Record):
    """One ENI as EC2 describes it."""

    eni_id: str
    status: str  # "in-use", "available", "attaching"...
    instance_id: str  # "" when not attached
    device_index: int | None
    ips: tuple[str, ...]
    primary_ip: str
    delete_on_termination: bool
    ours: bool  # tagged by cnivpc for this instance
    created_at: float | None  # from our tag
    ipv6_prefixes: tuple[str, ...] = ()  # its /80s


class LinkState(Record):
    name: str
    up: bool
    mtu: int


class OpState(Record):
    op_id: int
    kind: str
    started: float
    leased: bool  # its lease is held by a live process


class Snapshot(Record):
    instance_id: str
    interface_index: int
    node_mtu: int  # 0: unknown (no check)
    now: float
    allocations: tuple[Allocation, ...]
    free: tuple[FreeIP, ...]
    enis: tuple[EniRecord, ...]
    ops: tuple[OpState, ...] = ()
    ec2: tuple[Ec2Eni, ...] | None = None  # None: EC2 not asked (those checks are skipped)
    links: dict[str, LinkState] | None = None  # by lower-case MAC; None: not looked at
    v6_leases: tuple[V6Lease, ...] = ()  # IPv6-only attachments


class Violation(Record):
    invariant: str
    subject: str
    detail: str
    repair: str = ""  # what --repair does about it ("" when it must be left to a person)


class _Index:
    __slots__ = ("attached", "ip_eni")

    def __init__(self) -> None:
        self.attached: dict[str, Ec2Eni] = {}  # ENIs attached here
        self.ip_eni: dict[str, Ec2Eni] = {}  # IP -> ENI attached here


def handout_problem(ip: str, eni: EniRecord, *, interface_index: int, primaries: set[str],
                    held: set[str]) -> str | None:
    """Why ``ip`` on ``eni`` must not go to a pod, or None. The decision's own check of the
    invariants it can see without EC2 (the audit adds what only EC2 knows)."""
    if ip in held:
        return f"{ip} is already held"
    if ip in primaries or ip == eni.primary_ip:
        return f"{ip} is an ENI's primary IP"
    if eni.device_index < interface_index:
        return f"{ip} is on {eni.eni_id} at device {eni.device_index}, below interfaceIndex"
    return None


def ipv6_problem(ipv6: str, eni: EniRecord, held: set[str]) -> str | None:
    """Why ``ipv6`` must not go to a pod whose IPv4 is on ``eni``, or None: it is held, or
    not in one of the ENI's /80 prefixes (the VPC delivers it to that ENI only)."""
    if ipv6 in held:
        return f"{ipv6} is already held"
    try:
        address = ipaddress.ip_address(ipv6)
        if not any(address in ipaddress.ip_network(p) for p in eni.ipv6_prefixes):
            return f"{ipv6} is in no IPv6 prefix of {eni.eni_id}"
    except ValueError:
        return f"{ipv6!r} is not an IPv6 address"
    return None


def v6_lease_problem(lease: V6Lease, eni: EniRecord | None, leases: list[V6Lease], *,
                     interface_index: int, egress_range: str | None) -> str | None:
    """Why ``lease`` (an IPv6-only attachment about to be recorded) must not be, or None: its
    IPv6 or egress IPv4 is another lease's, its IPv6 is in no /80 of an ENI whose IPs go to pods,
    or its egress IPv4 is outside ``egressIPv4Range`` (or the range's first or last address)."""
    if eni is None or eni.eni_id != lease.eni_id:
        return f"{lease.eni_id} is not an ENI of the pool"
    if eni.device_index < interface_index:
        return f"{eni.eni_id} is at device {eni.device_index}, below interfaceIndex"
    problem = ipv6_problem(lease.ipv6, eni, {x.ipv6 for x in leases})
    if problem is not None:
        return problem
    if lease.egress_ip:
        if lease.egress_ip in {x.egress_ip for x in leases}:
            return f"egress {lease.egress_ip} is already held"
        if egress_range is None:
            return f"egress {lease.egress_ip} with no egressIPv4Range"
        net = ipaddress.IPv4Network(egress_range)
        address = ipaddress.ip_address(lease.egress_ip)
        if address not in net or address in (net.network_address, net.broadcast_address):
            return f"egress {lease.egress_ip} is not a usable address of {egress_range}"
    return None


def decision_problems(pool: Pool, conf: IpamConf,
                      decision: AddDecision | Plan | Release | list[FreeIP]) -> list[str]:
    """Why ``decision``, taken on ``pool``, would break an invariant ([] when it would not):
    an IP handed out (``Take``), EC2 work started (``Start``/``Plan``), IPs given back to EC2
    (``Release``, or the list GC unassigns)."""
    if isinstance(decision, Take):
        return _take_problems(pool, conf, decision)
    if isinstance(decision, Start):
        decision = decision.plan
    if isinstance(decision, Plan):
        return _plan_problems(pool, conf, decision)
    if isinstance(decision, Release):
        freed = {a.ip for a in decision.released}
        free = {f.ip for f in pool.free} | freed
        problems = _give_back_problems(pool, list(decision.unassign), free, pool.held, freed)
        left = len(free) - len(decision.unassign)
        if decision.unassign and left < conf.warm_ip_target:
            problems.append(f"giving back {len(decision.unassign)} IPs leaves {left} free, "
                            f"below warmIPTarget {conf.warm_ip_target}")
        return problems
    if isinstance(decision, list):
        return _give_back_problems(pool, decision, {f.ip for f in pool.free}, pool.held, set())
    return []


def _take_problems(pool: Pool, conf: IpamConf, take: Take) -> list[str]:
    ip, eni = take.ip.ip, take.eni
    problems = []
    known = {e.eni_id: e for e in pool.enis}
    free = {f.ip: f for f in pool.free}
    if ip not in free:
        problems.append(f"{ip} is not a free IP of the pool")
    elif free[ip].eni_id != eni.eni_id:
        problems.append(f"{ip} is on {free[ip].eni_id}, not {eni.eni_id}")
    elif free[ip].freed_at > pool.now - conf.reuse_ip_wait and not take.requested:
        problems.append(f"{ip} was freed {pool.now - free[ip].freed_at:.0f}s ago, within "
                        f"reuseIPWait {conf.reuse_ip_wait:.0f}s")
    if known.get(eni.eni_id) != eni:
        problems.append(f"{eni.eni_id} is not an ENI of the pool")
    elif not eni.link:
        problems.append(f"{eni.eni_id} has no kernel link")
    if ip in pool.suspects:
        problems.append(f"{ip} is no longer listed by the metadata")
    if take.ip.prefix and not _in_prefix(ip, take.ip.prefix):
        problems.append(f"{ip} is not an address of its prefix {take.ip.prefix}")
    problem = handout_problem(ip, eni, interface_index=conf.interface_index,
                              primaries=set(pool.primaries()),
                              held={a.ip for a in pool.held})
    if problem is not None:
        problems.append(problem)
    return problems


def _plan_problems(pool: Pool, conf: IpamConf, plan: Plan) -> list[str]:
    limits = pool.limits
    if limits is None:
        return ["EC2 work planned without the instance's limits"]
    per_eni = limits.pod_ips_per_eni
    # An ENI for IPv6-only pods carries no secondary IPv4 (``ipv4: false``).
    if plan.count < (0 if plan.kind == "create" and not conf.ipv4 else 1):
        return [f"{plan.kind} of {plan.count} IPs"]
    if plan.kind == "assign":
        eni = next((e for e in pool.enis if e.eni_id == plan.eni_id), None)
        if eni is None or eni.device_index < conf.interface_index or not eni.link:
            return [f"assign to {plan.eni_id}, which is not an ENI whose IPs go to pods"]
        mode = prefix_mode(conf, limits)
        if plan.ips:  # addresses asked for by name: secondary IPs in either mode
            home = ipaddress.ip_network(eni.subnet_cidr)
            outside = [ip for ip in plan.ips if ipaddress.ip_address(ip) not in home]
            if plan.prefixes or plan.count != len(plan.ips) or outside:
                return [f"assign of {list(plan.ips)} to {eni.eni_id} in {home}"]
            if set(plan.ips) & (pool.primaries() | {a.ip for a in pool.held}
                                | {f.ip for f in pool.free}):
                return [f"assign of {list(plan.ips)}, which the pool already has"]
        elif plan.prefixes != mode:
            return [f"assign of {'prefixes' if plan.prefixes else 'IPs'} in the other mode"]
        used = _slots(pool, eni.eni_id)
        coming = sum(-(-op.expected // PREFIX_SIZE) if mode else op.expected
                     for op in pool.ops if op.kind == "assign" and op.eni_id == eni.eni_id)
        if used + coming + plan.count > per_eni:
            return [f"assign {plan.count} to {eni.eni_id}, which uses {used} slots and "
                    f"{coming} coming, of {per_eni}"]
        return []
    if plan.kind != "create":
        return [f"unknown work {plan.kind!r}"]
    problems = []
    taken = [e.device_index for e in pool.enis]
    taken += [op.device_index for op in pool.ops
              if op.kind == "create" and op.device_index is not None]
    if any(op.kind == "create" for op in pool.ops):
        problems.append("a second ENI while one is being created")
    if plan.device_index is None or plan.device_index in taken:
        problems.append(f"a new ENI at device {plan.device_index}, which is taken")
    elif plan.device_index < max(1, conf.interface_index):
        problems.append(f"a new ENI at device {plan.device_index}, below interfaceIndex")
    if len(set(taken)) + 1 > limits.enis:
        problems.append(f"a new ENI beyond the {limits.enis} the instance type allows")
    if plan.count > per_eni:
        problems.append(f"a new ENI with {plan.count} IPs, above the {per_eni} allowed")
    subnet = plan.subnet
    if subnet is None or not subnet.has_tags(conf.subnet_tags):
        problems.append("a new ENI in a subnet without the subnetTags")
    elif not conf.ipv4 and not subnet.ipv6_cidr:
        problems.append(f"a new ENI for IPv6-only pods in {subnet.subnet_id}, which has no IPv6")
    return problems


def _v6_lease_violations(snap: Snapshot, index: _Index, found: list[Violation]) -> None:
    """IPv6-only attachments: one holder per IPv6 and per egress IPv4 (the store's UNIQUE
    says so too: this catches an IPv6 also held dual-stack), and each IPv6 in a /80 EC2 has
    delegated to its ENI, attached here at ``interfaceIndex`` or above."""
    dual = {a.ipv6 for a in snap.allocations if a.ipv6}
    for lease in snap.v6_leases:
        who = f"held by {lease.pod or lease.container_id[:12]} ({lease.ifname})"
        if lease.ipv6 in dual:
            found.append(Violation("one-holder", lease.ipv6, f"{lease.ipv6} ({who}) is also "
                                   "a dual-stack pod's"))
        if snap.ec2 is None:
            continue
        eni = index.attached.get(lease.eni_id)
        if eni is None or eni.device_index is None or \
                eni.device_index < snap.interface_index:
            found.append(Violation("ip-on-our-eni", lease.ipv6, f"{lease.ipv6} ({who}) is on "
                                   f"{lease.eni_id}, which is not a pod ENI attached here"))
        elif not any(ipaddress.ip_address(lease.ipv6) in ipaddress.ip_network(p)
                     for p in eni.ipv6_prefixes):
            found.append(Violation("ip-on-our-eni", lease.ipv6, f"{lease.ipv6} ({who}) is in no "
                                   f"IPv6 prefix of {lease.eni_id}"))


def _in_prefix(ip: str, prefix: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(prefix)
    except ValueError:
        return False


def _slots(pool: Pool, eni_id: str) -> int:
    """IPv4 slots an ENI uses in ``pool``: its secondary IPs plus its distinct prefixes."""
    rows = [(f.ip, f.prefix) for f in pool.free if f.eni_id == eni_id]
    rows += [(a.ip, a.prefix) for a in pool.held if a.eni_id == eni_id]
    return len({prefix or ip for ip, prefix in rows})


def _give_back_problems(pool: Pool, ips: list[FreeIP], free: set[str],
                        held: tuple[Allocation, ...], freed: set[str]) -> list[str]:
    problems = []
    # A prefix goes back whole or not at all: EC2 unassigns the /28, every address with it.
    giving = {f.ip for f in ips}
    members: dict[str, set[str]] = {}
    rows = [(f.prefix, f.ip) for f in pool.free] + [(a.prefix, a.ip) for a in pool.held]
    for prefix, ip in rows:
        if prefix:
            members.setdefault(prefix, set()).add(ip)
    for prefix in {f.prefix for f in ips if f.prefix}:
        if not members.get(prefix, set()) <= giving or len(members.get(prefix, ())) != PREFIX_SIZE:
            problems.append(f"giving back prefix {prefix} with some of its addresses kept")
    primaries = pool.primaries()
    holders = {a.ip for a in held} - freed
    for f in ips:
        if f.ip in primaries:
            problems.append(f"giving back {f.ip}, an ENI's primary IP")
        if f.ip in holders:
            problems.append(f"giving back {f.ip}, which a pod holds")
        elif f.ip not in free:
            problems.append(f"giving back {f.ip}, which is not in the pool")
    return problems


def violations(snap: Snapshot) -> list[Violation]:
    """Every invariant violation in ``snap``, in the order of the module docstring."""
    found: list[Violation] = []
    index = _Index()
    for e in snap.ec2 or ():
        if e.instance_id == snap.instance_id:
            index.attached[e.eni_id] = e
            for ip in e.ips:
                index.ip_eni[ip] = e

    counts = Counter([a.ip for a in snap.allocations] + [f.ip for f in snap.free])
    for ip, n in sorted(counts.items()):
        if n > 1:
            found.append(Violation("one-holder", ip, f"the store has {ip} {n} times "
                                   "(held and free, or held twice)"))

    primaries = {e.primary_ip for e in snap.enis if e.primary_ip}
    primaries |= {e.primary_ip for e in snap.ec2 or () if e.primary_ip}
    tracked = [(a.ip, f"held by {a.pod or a.container_id[:12]} ({a.ifname})", False)
               for a in snap.allocations] + [(f.ip, "free", True) for f in snap.free]
    for ip, what, free in tracked:
        if ip in primaries:
            found.append(Violation("never-primary", ip, f"{ip} ({what}) is an ENI's primary IP",
                                   "forget it (free)" if free else ""))
        if snap.ec2 is None:
            continue
        eni = index.ip_eni.get(ip)
        if eni is None:
            found.append(Violation("ip-on-our-eni", ip, f"{ip} ({what}) is on no ENI attached "
                                   "to this instance in EC2", "forget it (free)" if free else ""))
        elif eni.device_index is None or eni.device_index < snap.interface_index:
            found.append(Violation("ip-on-our-eni", ip, f"{ip} ({what}) is on {eni.eni_id} at "
                                   f"device {eni.device_index}, below interfaceIndex "
                                   f"{snap.interface_index}", "forget it (free)" if free else ""))

    v6_holders = Counter(a.ipv6 for a in snap.allocations if a.ipv6)
    for v6, n in sorted(v6_holders.items()):
        if n > 1:
            found.append(Violation("one-holder", v6, f"{n} pods hold {v6}"))
    if snap.ec2 is not None:
        for a in snap.allocations:
            eni = index.ip_eni.get(a.ip)
            if a.ipv6 and eni is not None and not any(
                    ipaddress.ip_address(a.ipv6) in ipaddress.ip_network(p)
                    for p in eni.ipv6_prefixes):
                found.append(Violation("ip-on-our-eni", a.ipv6, f"{a.ipv6} (held by "
                                       f"{a.pod or a.container_id[:12]}) is in no IPv6 prefix "
                                       f"of {eni.eni_id}, which holds its IPv4 {a.ip}"))

    _v6_lease_violations(snap, index, found)

    known = {e.eni_id for e in snap.enis}
    if snap.ec2 is not None:
        for e in snap.ec2:
            if not e.ours:
                continue
            if e.instance_id == snap.instance_id and e.eni_id not in known:
                found.append(Violation("eni-tracked", e.eni_id, f"{e.eni_id} (ours, device "
                                       f"{e.device_index}) is attached but not in the store",
                                       "reconcile (adopt it)"))
            elif not e.instance_id and e.status == "available":
                age = snap.now - e.created_at if e.created_at is not None else None
                if age is None or age >= LEAK_GRACE:
                    found.append(Violation("eni-tracked", e.eni_id, f"{e.eni_id} (ours) is "
                                           "detached" + (f", created {age:.0f}s ago"
                                                         if age is not None else ""),
                                           "delete it"))
        for r in snap.enis:
            if r.eni_id not in index.attached:
                found.append(Violation("eni-known", r.eni_id, f"{r.eni_id} ({r.mac}) is in the "
                                       "store but not attached to this instance in EC2",
                                       "reconcile (forget it)"))

    pod_enis = [r for r in snap.enis if r.device_index >= max(1, snap.interface_index)]
    for r in pod_enis:
        if snap.links is not None:
            link = snap.links.get(r.mac.lower())
            if link is None:
                found.append(Violation("eni-ready", r.eni_id, f"{r.eni_id} ({r.mac}) has no "
                                       "link in the kernel", "reconcile"))
            elif not link.up or (snap.node_mtu and link.mtu != snap.node_mtu):
                found.append(Violation("eni-ready", r.eni_id, f"{r.eni_id} ({link.name}) is "
                                       f"{'up' if link.up else 'DOWN'} with MTU {link.mtu} "
                                       f"(the node's: {snap.node_mtu})",
                                       "bring it up with the node's MTU"))
        attached = index.attached.get(r.eni_id)
        if attached is not None and not attached.delete_on_termination:
            found.append(Violation("eni-ready", r.eni_id, f"{r.eni_id} is not "
                                   "DeleteOnTermination: terminating the instance leaks it",
                                   "set DeleteOnTermination"))

    for op in snap.ops:
        # A row whose lease is gone is inert (every reader skips and the next writer forgets
        # it): the killed process blocks nothing. One still held past the cap is a process
        # stuck in EC2 work for that long, which no decision waits for any more.
        if op.leased and snap.now - op.started > LEASE_MAX_AGE:
            found.append(Violation("bounded-lease", f"op {op.op_id}", f"{op.kind} started "
                                   f"{snap.now - op.started:.0f}s ago and its process still "
                                   f"holds it, past the {LEASE_MAX_AGE:.0f}s cap",
                                   "forget it"))
    return found
