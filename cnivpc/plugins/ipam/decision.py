"""The IPAM's decisions as pure functions: one ``Pool`` (the node's pool, read once under the
host lock) and the config in, a decision out. No store, no network, no clock: the allocator
reads the pool, calls one of these, checks what it returns against the invariants
(``invariants.decision_problems``: an independent statement of the same rules) and applies it
in the same transaction. So every rule of the IPAM can be tested without a lab, property-tested
with hypothesis, and read in one place.

What ADD does, in order (``decide_add``): a free IP past its cooldown on an ENI at
``interfaceIndex`` or above → take it (the warm path); EC2 work in flight with IPs nobody
claimed → claim one and wait for it; otherwise plan work (``plan_capacity``): a batched Assign
on the eligible ENI with the most room, or a new ENI at the lowest free device index. A new ENI
is planned only one at a time (an ENI being created has room beyond the IPs it was asked for, so
a second ADD waits for it instead of creating another) and only on a fresh view of the instance
(an ENI attached by a killed process holds a device index the store does not know). The node is
full (``NoCapacity``) only when no work is in flight.

The warm pool (``refill_need``, ``plan_refill``): below ``warmIPTarget`` free IPs with room on
an attached ENI → an Assign of the difference; free IPs plus that room below the ENI threshold
(``warmENIThreshold``) → the next ENI, ahead of need.

Giving back (``release``, ``idle``): DEL unassigns free IPs above ``maxFreeIPs`` (never below
``warmIPTarget``), newest-freed first; GC unassigns IPs idle past ``freeIPMaxAge`` beyond the warm
target; neither ever touches an ENI's primary IP.

Prefix mode (``ipv4Prefixes``): an ENI's IPv4 slots (all but the primary IP's) each hold a
secondary IP or a /28 prefix of 16 addresses, and room is counted in slots (``slots_used``).
Work is planned in prefixes (``Plan.prefixes``; ``count`` is then prefixes, the op expects 16
addresses per prefix, so a burst of 16 pods shares one call); pods take single addresses, as in
secondary mode. A prefix is only given back whole, by GC, when all 16 addresses are free and idle
(never by DEL: that is the pod's critical path).

Imports only the stdlib, ``cni.errors`` and the value types of the store, the node and the config.
"""

from __future__ import annotations

import ipaddress
from math import ceil

from ...cni.errors import CniError, TryAgainLater
from ...cni.records import Record, replace
from .config import IpamConf
from .node import Limits, Subnet
from .prefixes import PREFIX_SIZE
from .store import Allocation, EniRecord, FreeIP, Op


class NoCapacity(CniError):
    """Every ENI this node may have is full: no IP can be had without freeing one."""

    code = 100


class Unavailable(CniError):
    """The address the runtime asked for (CNI_ARGS ``IP=``, ``runtimeConfig.ips``) cannot be
    this pod's on this node: in no pod ENI's subnet, an ENI's primary, reserved by AWS, or
    another ENI's in the VPC."""

    code = 101


class NoSubnet(CniError):
    """No subnet matches ``subnetTags`` for a new ENI (a configuration or AWS-side problem)."""


class Plan(Record):
    """EC2 work to do: ``assign`` ``count`` IPs to ``eni_id``, or ``create`` an ENI with
    ``count`` IPs in ``subnet`` at ``device_index``."""

    kind: str
    count: int  # IPs, or prefixes when ``prefixes``
    eni_id: str = ""
    device_index: int | None = None
    subnet: Subnet | None = None
    prefixes: bool = False
    ips: tuple[str, ...] = ()  # an Assign of these very addresses (asked for by a runtime)

    @property
    def addresses(self) -> int:
        """Addresses the work brings (what ADDs may claim of it)."""
        return self.count * PREFIX_SIZE if self.prefixes else self.count


class Pool(Record):
    """The node's pool as one decision sees it, read in one go under the host lock."""

    now: float
    enis: tuple[EniRecord, ...]  # by device index
    free: tuple[FreeIP, ...]  # longest-free first
    held: tuple[Allocation, ...]
    ops: tuple[Op, ...] = ()  # live in-flight EC2 work (their leases are held)
    # Free IPs the metadata stopped listing; reconciliation confirms or drops them.
    suspects: frozenset[str] = frozenset()
    limits: Limits | None = None  # None: unknown without a network read
    subnets: tuple[Subnet, ...] | None = None  # candidates for a new ENI; None: not read
    instance_type: str = ""  # for messages
    where: str = ""  # "<vpc> / <az>", for messages

    def eligible(self, conf: IpamConf) -> list[EniRecord]:
        """ENIs whose IPs go to pods: at ``interfaceIndex`` or above, with a kernel link."""
        return [e for e in self.enis if e.device_index >= conf.interface_index and e.link]

    def primaries(self) -> frozenset[str]:
        return frozenset(e.primary_ip for e in self.enis if e.primary_ip)

    def slots_used(self) -> dict[str, int]:
        """IPv4 slots used per ENI (the primary IP's aside): one per secondary IP, one per
        prefix, however many of its addresses are tracked."""
        rows = [(f.eni_id, f.prefix) for f in self.free] + \
            [(a.eni_id, a.prefix) for a in self.held]
        seen: set[tuple[str, str]] = set()
        used: dict[str, int] = {}
        for eni_id, prefix in rows:
            if prefix:
                if (eni_id, prefix) in seen:
                    continue
                seen.add((eni_id, prefix))
            used[eni_id] = used.get(eni_id, 0) + 1
        return used

    def whole_free_prefixes(self) -> dict[str, list[FreeIP]]:
        """Prefixes none of whose addresses a pod holds, with their (16) free rows."""
        busy = {a.prefix for a in self.held if a.prefix}
        found: dict[str, list[FreeIP]] = {}
        for f in self.free:
            if f.prefix and f.prefix not in busy:
                found.setdefault(f.prefix, []).append(f)
        return {p: rows for p, rows in found.items() if len(rows) == PREFIX_SIZE}

    def ready(self, conf: IpamConf) -> list[FreeIP]:
        """Free IPs a pod may take now: past their cooldown, on an eligible ENI, not suspect."""
        eligible = {e.eni_id for e in self.eligible(conf)}
        cutoff = self.now - conf.reuse_ip_wait
        return [f for f in self.free if f.eni_id in eligible and f.freed_at <= cutoff
                and f.ip not in self.suspects]

    def without_free(self, ip: str) -> Pool:
        return replace(self, free=tuple(f for f in self.free if f.ip != ip))


# -- ADD -----------------------------------------------------------------------------------------


class Take(Record):
    """Hand ``ip`` (free, on ``eni``) to the pod: no EC2 work."""

    ip: FreeIP
    eni: EniRecord
    # The address the runtime asked for: taken even in its cooldown (the cooldown keeps a
    # freed address from another pod; one asked for by name is that workload's choice).
    requested: bool = False


class Claim(Record):
    """Claim one unclaimed IP of in-flight work ``op_id``, then wait for it."""

    op_id: int


class Wait(Record):
    """Wait for in-flight work ``op_id`` (it makes room), then decide again."""

    op_id: int


class Start(Record):
    """Start EC2 work: record ``plan`` as an op under this process's lease, run it, decide
    again."""

    plan: Plan


class Read(Record):
    """The decision needs ``what`` from the network: read it outside the lock, decide again."""

    what: str


AddDecision = Take | Claim | Wait | Start | Read


def decide_add(pool: Pool, conf: IpamConf, *, observed: bool) -> AddDecision:
    """What an ADD whose attachment holds no IP does next (see the module docstring).
    ``observed``: the pool reflects a view of the instance read for this decision."""
    take = pick_ready(pool, conf)
    if take is not None:
        return take
    for op in pool.ops:
        if op.claimed < op.expected:
            return Claim(op.id)
    try:
        plan = plan_capacity(pool, conf, needed=1)
    except NoCapacity:
        if not pool.ops:
            raise
        return Wait(pool.ops[0].id)
    creating = [op for op in pool.ops if op.kind == "create"]
    if isinstance(plan, Read):
        if creating and pool.limits is not None:
            # A new ENI is what is missing (the subnets are read only for one), and one is
            # being created: wait for it rather than read the subnets for nothing.
            return Wait(creating[0].id)
        return plan
    if plan.kind == "create" and creating:
        return Wait(creating[0].id)
    if plan.kind == "create" and not observed:
        return Read("a view of the instance before creating an ENI")
    return Start(plan)


def decide_requested(pool: Pool, conf: IpamConf, ip: str,
                     holder: Allocation | None) -> Take | Plan | Read:
    """ADD asking for ``ip`` by name: that address or an error, never another one. Held by
    another attachment (``holder``): TryAgainLater (a restart DELs before it ADDs again; a
    held address is never handed out twice). Free in the pool: taken, even cooling. Else,
    when an ENI whose IPs go to pods has its subnet and a free slot: an Assign of that very
    address (EC2 refuses one another ENI has). Else ``Unavailable``."""
    if holder is not None:
        raise TryAgainLater(f"the requested IP {ip} is held by "
                            f"{holder.pod or holder.container_id[:12]} ({holder.ifname})",
                            "its pod must be deleted first")
    enis = {e.eni_id: e for e in pool.eligible(conf)}
    if ip in pool.primaries():
        raise Unavailable(f"the requested IP {ip} is an ENI's primary IP",
                          "cnivpc never gives a pod an ENI's primary IP")
    free = next((f for f in pool.free if f.ip == ip), None)
    if free is not None:
        if free.eni_id not in enis or ip in pool.suspects:
            raise Unavailable(f"the requested IP {ip} is not usable on this node now",
                              f"it is on {free.eni_id}, which does not serve pods, or the "
                              "metadata no longer lists it")
        return Take(free, enis[free.eni_id], requested=True)
    address = ipaddress.IPv4Address(ip)
    homes = [e for e in enis.values() if address in ipaddress.ip_network(e.subnet_cidr)]
    if not homes:
        raise Unavailable(f"the requested IP {ip} is in the subnet of no pod ENI of this node",
                          "subnets: " + (", ".join(sorted({e.subnet_cidr for e in enis.values()}))
                                         or "none yet (no pod ENI)"))
    subnet = ipaddress.ip_network(homes[0].subnet_cidr)
    # AWS keeps a subnet's first four addresses and its last one.
    if int(address) - int(subnet.network_address) < 4 or address == subnet.broadcast_address:
        raise Unavailable(f"the requested IP {ip} is reserved by AWS in {subnet}")
    if pool.limits is None:
        return Read(f"the limits of {pool.instance_type or 'the instance type'}")
    per_eni = pool.limits.pod_ips_per_eni
    for eni in sorted(homes, key=lambda e: e.device_index):
        if slot_room(pool, conf, eni.eni_id, per_eni) > 0:
            return Plan("assign", 1, eni_id=eni.eni_id, ips=(ip,))
    raise Unavailable(f"no free slot for the requested IP {ip}",
                      f"every pod ENI in {subnet} holds its {per_eni} addresses; give back a "
                      "free one first (cnivpc ipam free, then cnivpc ipam unassign IP)")


def pick_ready(pool: Pool, conf: IpamConf) -> Take | None:
    """The free IP a pod gets now, if any: longest-free first (spreads reuse), among equals the
    lowest device index (pods pack onto few ENIs, so a surplus ENI can be given back)."""
    enis = {e.eni_id: e for e in pool.eligible(conf)}
    ready = pool.ready(conf)
    if not ready:
        return None
    best = min(ready, key=lambda f: (f.freed_at, enis[f.eni_id].device_index, f.ip))
    return Take(best, enis[best.eni_id])


def plan_capacity(pool: Pool, conf: IpamConf, needed: int, *,
                  new_eni: bool = False) -> Plan | Read:
    """Where ``needed`` more IPs come from: the eligible ENI with the most room (an Assign),
    else (or with ``new_eni``) a new ENI at the lowest free device index, else NoCapacity."""
    limits = pool.limits
    if limits is None:
        return Read(f"the limits of {pool.instance_type or 'the instance type'}")
    per_eni = limits.pod_ips_per_eni  # slots: IPs, or prefixes in prefix mode
    prefixes = prefix_mode(conf, limits)
    candidates = []
    for eni in [] if new_eni else pool.eligible(conf):
        room = slot_room(pool, conf, eni.eni_id, per_eni)
        if room > 0:
            candidates.append((room, -eni.device_index, eni))
    if candidates:
        room, _, eni = max(candidates, key=lambda c: (c[0], c[1]))
        return Plan("assign", batch(pool, conf, room, needed), eni_id=eni.eni_id,
                    prefixes=prefixes)
    used = used_device_indexes(pool)
    if len(used) >= limits.enis:
        raise NoCapacity(
            f"no free IP on this node: all {limits.enis} ENIs of a "
            f"{pool.instance_type or 'this instance type'} are in use and full",
            f"{max_pods(conf, limits)} pod IPs with interfaceIndex {conf.interface_index}; "
            "free a pod or use a larger type")
    device_index = next(i for i in range(max(1, conf.interface_index), 1000) if i not in used)
    if pool.subnets is None:
        return Read("the subnets for a new ENI")
    subnet = subnet_for_new_eni(pool, conf)
    count = per_eni if conf.ip_batch_size == 0 else min(conf.ip_batch_size, per_eni)
    fits = subnet.available // PREFIX_SIZE if prefixes else subnet.available
    return Plan("create", min(count, max(1, fits)), device_index=device_index, subnet=subnet,
                prefixes=prefixes)


def slot_room(pool: Pool, conf: IpamConf, eni_id: str, per_eni: int) -> int:
    """Free IPv4 slots on an ENI: its slots less those used and those work in flight will
    use (several Assigns may be in flight; an op expects addresses: 16 per prefix)."""
    pending = 0
    for op in pool.ops:
        if op.kind == "assign" and op.eni_id == eni_id:
            pending += ceil(op.expected / PREFIX_SIZE) if prefix_mode(conf, pool.limits) \
                else op.expected
    return per_eni - pool.slots_used().get(eni_id, 0) - pending


def used_device_indexes(pool: Pool) -> set[int]:
    """Device indexes taken: by a known ENI, or by an ENI being created."""
    used = {e.device_index for e in pool.enis}
    used |= {op.device_index for op in pool.ops
             if op.kind == "create" and op.device_index is not None}
    return used


def prefix_mode(conf: IpamConf, limits: Limits | None) -> bool:
    """Whether work is planned in prefixes: ``ipv4Prefixes``, unless the instance type is
    known to take none (not Nitro-based: EC2 would refuse them, or refuse to attach an ENI
    holding some)."""
    return conf.ipv4_prefixes and (limits is None or limits.nitro is not False)


def max_pods(conf: IpamConf, limits: Limits) -> int:
    """Pod IPs the node can hold: ENIs at ``interfaceIndex`` and above, each without its
    primary IP (16 per slot in prefix mode)."""
    per_slot = PREFIX_SIZE if prefix_mode(conf, limits) else 1
    return max(0, limits.enis - conf.interface_index) * limits.pod_ips_per_eni * per_slot


def batch(pool: Pool, conf: IpamConf, room: int, needed: int) -> int:
    """IPs (prefixes, in prefix mode) to ask for in one Assign on an ENI with ``room`` slots:
    ``ipBatchSize`` when set, else what is needed plus what brings the ready pool up to
    ``warmIPTarget``."""
    if conf.ip_batch_size > 0:
        return min(conf.ip_batch_size, room)
    want = max(needed, 1) + max(0, conf.warm_ip_target - len(pool.ready(conf)))
    if prefix_mode(conf, pool.limits):
        want = ceil(want / PREFIX_SIZE)
    return max(1, min(room, want))


def subnet_for_new_eni(pool: Pool, conf: IpamConf) -> Subnet:
    """The tag-matching subnet with the most free addresses (``pool.subnets`` is sorted so)."""
    tags = conf.subnet_tags
    subnets = [s for s in pool.subnets or () if s.has_tags(tags)]
    if not subnets:
        raise NoSubnet("no subnet for a new ENI",
                       f"no subnet in {pool.where or 'the VPC and AZ'} has the tags {tags}")
    best = subnets[0]
    if best.available <= 0:
        raise TryAgainLater(f"subnet {best.subnet_id} ({best.cidr}) has no free address",
                            "every tag-matching subnet in this AZ is full")
    return best


# -- the warm pool -------------------------------------------------------------------------------


def eni_threshold(conf: IpamConf, per_eni: int, limits: Limits | None = None) -> int:
    """``warmENIThreshold`` resolved: below this many free IPs plus room on attached ENIs, the
    next ENI is started ahead of need (see the config's docstring). In prefix mode one
    prefix's worth: another prefix is one call on an ENI with a free slot."""
    if conf.warm_ip_target <= 0:
        return 0
    if conf.warm_eni_threshold >= 0:
        return conf.warm_eni_threshold
    if prefix_mode(conf, limits):
        return max(conf.warm_ip_target, PREFIX_SIZE)
    return max(conf.warm_ip_target, per_eni * 3 // 4)


def pool_level(pool: Pool, conf: IpamConf, per_eni: int) -> tuple[int, int]:
    """(free IPs, room for more IPs on attached ENIs), over ENIs whose IPs go to pods; in
    prefix mode the room is 16 addresses per free slot."""
    eligible = pool.eligible(conf)
    ids = {e.eni_id for e in eligible}
    free = sum(1 for f in pool.free if f.eni_id in ids)
    used = pool.slots_used()
    room = sum(max(0, per_eni - used.get(e.eni_id, 0)) for e in eligible)
    return free, room * (PREFIX_SIZE if prefix_mode(conf, pool.limits) else 1)


def refill_need(pool: Pool, conf: IpamConf) -> tuple[str, int] | None:
    """What keeps the pool from its warm level: ("assign", IPs short of ``warmIPTarget``) when
    an attached ENI has room, ("eni", 1) when free IPs plus room are below the ENI threshold,
    None when it is warm, when warm-keeping is off, or when EC2 work is in flight (its IPs are
    coming). Needs the limits."""
    if conf.warm_ip_target <= 0 or pool.ops or pool.limits is None:
        return None
    per_eni = pool.limits.pod_ips_per_eni
    free, room = pool_level(pool, conf, per_eni)
    if free < conf.warm_ip_target and room > 0:
        return "assign", conf.warm_ip_target - free
    if prefix_mode(conf, pool.limits) and room > 0:
        whole = len(pool.whole_free_prefixes())
        if whole < conf.warm_prefix_target:
            return "assign", (conf.warm_prefix_target - whole) * PREFIX_SIZE
    if free + room < eni_threshold(conf, per_eni, pool.limits):
        return "eni", 1
    return None


def refill_due(pool: Pool, conf: IpamConf) -> bool:
    """Cheap, for the warm path: should a refill run after this ADD's answer? Unknown limits
    say yes (the refill reads them); an ENI is only wanted while the node may have another."""
    if conf.warm_ip_target <= 0 or pool.ops:
        return False
    if pool.limits is None:
        return True
    need = refill_need(pool, conf)
    return need is not None and (need[0] == "assign" or len(pool.enis) < pool.limits.enis)


def plan_refill(pool: Pool, conf: IpamConf) -> Plan | Read | None:
    """The one piece of work that brings the pool toward its warm level, or None (warm, work
    in flight, or the node is full). Errors other than a full node (no subnet, a full subnet)
    are raised for the caller to log or report."""
    if conf.warm_ip_target <= 0 or pool.ops:
        return None
    if pool.limits is None:
        return Read(f"the limits of {pool.instance_type or 'the instance type'}")
    need = refill_need(pool, conf)
    if need is None:
        return None
    kind, needed = need
    try:
        return plan_capacity(pool, conf, needed=needed, new_eni=kind == "eni")
    except NoCapacity:
        return None


def plan_grow(pool: Pool, conf: IpamConf, count: int, *, new_eni: bool) -> Plan | Read:
    """The operator's ``ipam grow`` (an Assign of at most ``count``) or ``ipam new-eni``."""
    plan = plan_capacity(pool, conf, needed=count, new_eni=new_eni)
    if isinstance(plan, Plan) and plan.kind == "assign":
        return replace(plan, count=min(count, plan.count))
    return plan


# -- dual-stack: the attachment's IPv6 address ---------------------------------------------------


def pick_ipv6(prefixes: tuple[str, ...], held: set[str], draw: int) -> str | None:
    """An IPv6 address for a pod out of the ENI's /80 prefixes, none of ``held``; ``draw`` is
    a random number (the caller's). A /80 has 2**48 addresses: a random pick is never one a
    recent pod had (the cooldown IPv4 needs, for free), and collisions are only retried.
    None when the ENI has no prefix."""
    nets = [ipaddress.IPv6Network(p) for p in prefixes]
    if not nets:
        return None
    for attempt in range(16):
        net = nets[(draw + attempt) % len(nets)]
        span = net.num_addresses - 2  # neither the prefix's first nor its last address
        address = str(net.network_address + 1 + (draw * (attempt + 1) + attempt) % span)
        if address not in held:
            return address
    return None


# -- IPv6-only attachments (``ipv4: false``) -------------------------------------------------


def v6_eni(pool: Pool, conf: IpamConf) -> EniRecord | Plan | Wait | Read:
    """The ENI an IPv6-only pod's address comes from: the lowest pod ENI whose subnet has an
    IPv6 CIDR (one /80 serves any number of pods: a second ENI buys nothing); while an ENI is
    being created, wait for it; else a new ENI with no secondary IPv4 (``count`` 0) in the
    tag-matching subnet with IPv6 and the most free addresses."""
    ready = [e for e in pool.eligible(conf) if e.subnet_ipv6_cidr]
    if ready:
        return min(ready, key=lambda e: e.device_index)
    creating = [op for op in pool.ops if op.kind == "create"]
    if creating:
        return Wait(creating[0].id)
    limits = pool.limits
    if limits is None:
        return Read(f"the limits of {pool.instance_type or 'the instance type'}")
    used = used_device_indexes(pool)
    if len(used) >= limits.enis:
        raise NoCapacity(f"no ENI for IPv6 pods: all {limits.enis} ENIs of a "
                         f"{pool.instance_type or 'this instance type'} are in use, none at "
                         f"interfaceIndex {conf.interface_index} or above in a subnet with IPv6",
                         "give a pod ENI's subnet an IPv6 CIDR, or free a device index")
    if pool.subnets is None:
        return Read("the subnets for a new ENI")
    subnets = [s for s in pool.subnets if s.has_tags(conf.subnet_tags) and s.ipv6_cidr]
    if not subnets:
        raise NoSubnet("no subnet with IPv6 for a new ENI",
                       f"no subnet in {pool.where or 'the VPC and AZ'} has the tags "
                       f"{conf.subnet_tags} and an IPv6 CIDR")
    device_index = next(i for i in range(max(1, conf.interface_index), 1000) if i not in used)
    return Plan("create", 0, device_index=device_index, subnet=subnets[0])


def pick_egress(cidr: str, held: set[str], last: str) -> str | None:
    """A node-local IPv4 for an IPv6-only pod's egress: the first address of ``cidr`` after
    ``last`` (round robin, wrapping) that is not ``held``, never the range's first or last
    address. None when every one is held."""
    net = ipaddress.IPv4Network(cidr)
    first, size = int(net.network_address) + 1, net.num_addresses - 2
    try:
        start = (int(ipaddress.IPv4Address(last)) - first + 1) % size
    except ValueError:
        start = 0
    for step in range(size):
        address = str(ipaddress.IPv4Address(first + (start + step) % size))
        if address not in held:
            return address
    return None


# -- giving IPs back -----------------------------------------------------------------------------


class Release(Record):
    """DEL: the attachment's IPs become free; ``unassign`` are then given back to EC2."""

    released: tuple[Allocation, ...]
    unassign: tuple[FreeIP, ...]


def release(pool: Pool, conf: IpamConf, held: list[Allocation]) -> Release:
    """DEL of an attachment holding ``held``: they are freed now (their cooldown starts), then
    free IPs above ``maxFreeIPs`` (and ``warmIPTarget``) are unassigned, newest-freed first.
    ENIs are never given back here: a spare ENI is not churned."""
    freed = tuple(FreeIP(a.ip, a.eni_id, pool.now, a.prefix) for a in held)
    gone = {a.ip for a in held}
    after = replace(pool, free=(*pool.free, *freed),
                    held=tuple(a for a in pool.held if a.ip not in gone))
    return Release(tuple(held), tuple(surplus(after, conf)))


def surplus(pool: Pool, conf: IpamConf) -> list[FreeIP]:
    """Free IPs above ``maxFreeIPs`` (never below ``warmIPTarget``: the next ADD's refill would
    assign them right back), newest-freed first, never an ENI's primary IP."""
    if conf.skip_deallocation or conf.max_free_ips < 0:
        return []
    extra = len(pool.free) - max(conf.max_free_ips, conf.warm_ip_target)
    if extra <= 0:
        return []
    primaries = pool.primaries()
    # A prefix's address cannot be given back alone (GC gives back whole idle prefixes).
    newest_first = sorted((f for f in pool.free if f.ip not in primaries and not f.prefix),
                          key=lambda f: (f.freed_at, f.ip), reverse=True)
    return newest_first[:extra]


def idle(pool: Pool, conf: IpamConf, max_age: float) -> list[FreeIP]:
    """GC: free IPs idle longer than ``max_age`` seconds, never an ENI's primary. Enough of the
    longest idle stay for ``warmIPTarget`` free IPs to remain."""
    if conf.skip_deallocation or max_age <= 0:
        return []
    primaries = pool.primaries()
    free = sorted((f for f in pool.free if f.ip not in primaries),
                  key=lambda f: (f.freed_at, f.ip))
    cutoff = pool.now - max_age
    singles = [f for f in free if not f.prefix]
    old = [f for f in singles if f.freed_at <= cutoff]
    keep = max(0, conf.warm_ip_target - (len(free) - len(old)))
    chosen = old[keep:]
    # Whole prefixes whose 16 addresses are all idle (and past their cooldown), the longest
    # idle first, while the warm targets stay met without them.
    left = len(free) - len(chosen)
    whole = pool.whole_free_prefixes()
    kept_whole = len(whole)
    idle_prefixes = sorted(
        (rows for rows in whole.values()
         if all(f.freed_at <= min(cutoff, pool.now - conf.reuse_ip_wait) for f in rows)),
        key=lambda rows: (max(f.freed_at for f in rows), rows[0].prefix))
    for rows in idle_prefixes:
        if left - len(rows) < conf.warm_ip_target or kept_whole - 1 < conf.warm_prefix_target:
            break
        chosen += rows
        left -= len(rows)
        kept_whole -= 1
    return chosen
