"""The IPAM's decisions applied: the allocator reads the node's pool into one value under the
host lock, asks ``decision`` (pure functions: the rules) what to do, checks the answer against
the invariants (``invariants.decision_problems``) and applies it in the same transaction. The
EC2 calls behind a decision are in ``ec2work``.

The warm pool: an ADD that leaves the pool below its warm level only notes it
(``refill_wanted``, from the same pool value); the plugin answers, then ``refill()`` runs in a
detached child: under the lock it decides one piece of work (an Assign, or the next ENI ahead of
need) and records it as an op under its own lease, so ADDs arriving meanwhile claim its IPs and
wait instead of starting work of their own. ``warm()`` is the same, synchronous, for
``cnivpc ipam warm`` at node start.

The host lock is held for decisions only. Slow EC2 work runs outside it, recorded as an *op* in
the store, so concurrent ADDs wait for its IPs instead of starting more work (a burst of pods
costs one batched call, not one per pod), and ADDs that can be served from the pool are never
queued behind an ENI attach.

Failures never cascade: throttling or a full subnet is reported (code 11 / a clear error), not
answered by creating another ENI (the original's bug). A new ENI whose link never appears in the
kernel is detached and deleted (best effort; tagged, so GC finishes the job).

The shape of one decision: observe the instance outside the lock when a reconciliation is due
(``reconcile.observe``), read what a plan may need outside it too (``_prefetch``), then under
the lock, with the node offline (no network call can happen there: a decision that needs one
answers ``Read`` and the allocator reads outside the lock and decides again), apply the
observation, read the pool, decide, check, write.

Imports the store, the node view (aws/), ``decision``, ``reconcile``, ``invariants``,
``ec2work`` and, lazily, ``net.eni``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

from ...aws.ec2 import Ec2Error
from ...cni import logs
from ...cni.errors import CniError, TryAgainLater
from ...cni.records import replace
from ..hostlock import host_lock
from . import decision as rules
from . import invariants
from . import reconcile as reconciling
from .config import IpamConf
from .decision import Claim, NoCapacity, Plan, Pool, Read, Start, Take, Wait
from .ec2work import Ec2Work, Unassigned
from .node import Node, NotPrefetched
from .reconcile import DOT_TRIED
from .store import Allocation, EniRecord, FreeIP, Store, V6Lease

log = logs.get("ipam")

OP_POLL = 0.05

T = TypeVar("T")


class PlanRefused(CniError):
    """The invariants refused a plan the rules made: a bug, reported instead of acted on."""


def read_pool(store: Store, now: float) -> Pool:
    """The pool as the store has it (no limits or subnets: for read-only commands)."""
    free, held = store.ip_rows()
    return Pool(now=now, enis=tuple(store.enis()), free=tuple(free), held=tuple(held))


class Allocator:
    def __init__(self, conf: IpamConf, store: Store, node: Node, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.conf = conf
        self.store = store
        self.node = node
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        # The EC2 calls behind the decisions: a collaborator that writes the store only
        # through this allocator's decide().
        self.ec2work = Ec2Work(conf, store, node, decide=self.decide, clock=clock, sleep=sleep)
        # Set by acquire(): the pool is below its warm level after this ADD took its IP, or
        # maintenance is pending, so the plugin runs refill() after answering (detached).
        self.refill_wanted = False

    def now(self) -> float:
        """The allocator's clock (wall time: the store's timestamps)."""
        return self._clock()

    # -- locking and reading -----------------------------------------------------------------

    @contextmanager
    def decide(self) -> Iterator[None]:
        """The host lock plus a store transaction: one decision, atomically. No network call
        inside (the node is offline: ``NotPrefetched``): other ADDs, DELs and STATUS wait on
        this lock, and a slow or throttled EC2 must not make them wait."""
        remaining = max(0.05, min(self.conf.lock_timeout, self.node.deadline - self._monotonic()))
        with host_lock(self.conf.lock_path, remaining, holder="another cnivpc-ipam process"), \
                self.store.transaction(), self.node.offline():
            yield

    def pool(self) -> Pool:
        """The node's pool, in one read, under ``decide()``: the store's rows, the live ops,
        the free IPs the metadata stopped listing (see reconcile), and the instance's limits
        when known without a network call. Subnets are added only when a decision asks for
        them (``_decide``)."""
        free, held = self.store.ip_rows()
        limits = instance_type = None
        try:
            instance_type = self.node.identity.instance_type
            limits = self.node.limits()
        except NotPrefetched:
            pass
        return Pool(now=self._clock(), enis=tuple(self.store.enis()), free=tuple(free),
                    held=tuple(held), ops=tuple(self.store.ops()),
                    suspects=frozenset(self.store.cache_items("ip-missing:")),
                    limits=limits, instance_type=instance_type or "")

    def _decide(self, rule: Callable[[Pool], T], pool: Pool) -> tuple[T, Pool]:
        """``rule(pool)``; when it asks for the subnets and they are cached, again with them."""
        answer = rule(pool)
        if isinstance(answer, Read) and pool.subnets is None and pool.enis:
            vpc = pool.enis[0].vpc_id
            try:
                subnets = tuple(self.node.subnets(vpc))
                where = f"{vpc} / {self.node.identity.availability_zone}"
            except NotPrefetched:
                return answer, pool
            pool = replace(pool, subnets=subnets, where=where)
            answer = rule(pool)
        return answer, pool

    def _refuse(self, pool: Pool, what: object) -> None:
        problems = invariants.decision_problems(pool, self.conf, what)  # type: ignore[arg-type]
        if problems:
            log.error("refusing %s: %s", what, "; ".join(problems))
            raise PlanRefused("the IPAM refused its own decision (a bug; nothing was done)",
                              "; ".join(problems))

    def _check_deadline(self, what: str) -> None:
        if self._monotonic() >= self.node.deadline:
            raise TryAgainLater(f"IPAM ADD ran out of time while {what}",
                                f"deadline of {self.conf.timeout:.0f}s passed; retry")

    # -- ADD -------------------------------------------------------------------------------------

    def acquire(self, container_id: str, ifname: str, pod: str, netns: str = "",
                network: str | None = None, *, want: str | None = None,
                want6: str | None = None) -> tuple[Allocation, EniRecord]:
        """An IP for the attachment of ``network`` (``decision.decide_add`` says how; ``want``,
        an address the runtime asked for: ``decision.decide_requested``), and with ``ipv6`` an
        IPv6 address on the same ENI (``want6``, or a random one of its /80)."""
        alloc, eni = self._acquire_ipv4(container_id, ifname, pod, netns, network, want)
        if self.conf.ipv6 and not alloc.ipv6:
            return self._dual_stack(alloc, eni, want6)
        return alloc, eni

    def _dual_stack(self, alloc: Allocation, eni: EniRecord,
                    want6: str | None = None) -> tuple[Allocation, EniRecord]:
        """The attachment's IPv6 address, out of a /80 of the ENI its IPv4 is on (the ipvlan
        slave shares that ENI's MAC: the VPC delivers to that ENI only). A record from before
        ``ipv6`` was set lacks the subnet's IPv6 CIDR: a view of the instance with IPv6 first;
        an ENI without a /80 gets one (one EC2 call, outside the lock)."""
        if not eni.subnet_ipv6_cidr:
            obs = reconciling.observe(self.node, self.conf, self._clock())
            with self.decide():
                reconciling.apply(self.store, self.conf, obs, self._clock())
                eni = self.store.eni(eni.eni_id) or eni
            if not eni.subnet_ipv6_cidr:
                raise CniError(f"subnet {eni.subnet_id} of {eni.eni_id} has no IPv6 CIDR",
                               "ipv6 needs subnets with an IPv6 /64 (and a VPC with IPv6)",
                               code=7)
        if not eni.ipv6_prefixes:
            self.ec2work.assign_ipv6_prefix(eni)
        try:
            with self.decide():
                eni = self.store.eni(eni.eni_id) or eni
                ipv6 = self._choose_ipv6(eni, want6)
                problem = "no IPv6 prefix" if ipv6 is None else invariants.ipv6_problem(
                    ipv6, eni, self._held_ipv6())
                if ipv6 is None or problem is not None:
                    raise PlanRefused("no IPv6 address for the pod", problem or "")
                try:
                    self.store.set_ipv6(alloc.ip, ipv6)
                except KeyError as exc:
                    raise TryAgainLater(f"the attachment of {alloc.ip} changed meanwhile",
                                        str(exc)) from exc
        except rules.Unavailable:
            # Nothing held after a refusal: the IPv4 this ADD took goes back, in a decision of
            # its own (the refused one rolled back, its writes with it).
            self.release(alloc.container_id, alloc.ifname, alloc.network or None)
            raise
        log.info("IPv6 %s on %s for %s", ipv6, eni.eni_id, alloc.ip)
        return replace(alloc, ipv6=ipv6), eni

    def _choose_ipv6(self, eni: EniRecord, want6: str | None) -> str | None:
        """Under ``decide()``: the pod's IPv6 on ``eni``, dual-stack or IPv6-only: ``want6``
        when the runtime asked for one (free and in a /80 of the ENI, else ``Unavailable``),
        or a random free address of its /80s (None when it has none)."""
        held = self._held_ipv6()
        if want6:
            problem = invariants.ipv6_problem(want6, eni, held)
            if problem is not None:
                raise rules.Unavailable(f"the requested IPv6 {want6} cannot be had: {problem}",
                                        f"it must be free and in a /80 of {eni.eni_id}: "
                                        f"{', '.join(eni.ipv6_prefixes) or 'none yet'}")
            return want6
        return rules.pick_ipv6(eni.ipv6_prefixes, held, int.from_bytes(os.urandom(8), "big"))

    def _held_ipv6(self) -> set[str]:
        """Every pod IPv6 of the node: dual-stack and IPv6-only (another network may be the
        other kind, with the same ``dataDir``)."""
        return {a.ipv6 for a in self.store.allocations() if a.ipv6} | \
            {lease.ipv6 for lease in self.store.v6_leases()}

    def acquire_v6(self, container_id: str, ifname: str, pod: str, netns: str,
                   network: str, want6: str | None = None) -> tuple[V6Lease, EniRecord]:
        """An IPv6-only attachment (``ipv4: false``): an IPv6 out of a /80 of a pod ENI with
        IPv6 (``v6_eni``), and a node-local egress IPv4 (``decision.pick_egress``). A repeated
        ADD gets its lease back."""
        with self.decide():
            held = self.store.v6_leases(container_id, ifname, network)
            known = self.store.eni(held[0].eni_id) if held else None
            if held and known is not None:
                log.info("attachment already holds %s (a repeated ADD)", held[0].ipv6)
                return held[0], known
        eni, _ = self.v6_eni()
        return self._lease_v6(eni, container_id, ifname, pod, netns, network, want6)

    def v6_eni(self) -> tuple[EniRecord, Plan | None]:
        """The pod ENI IPv6-only pods take their addresses from (``decision.v6_eni``: the
        lowest with IPv6; a new one, with no secondary IPv4, when there is none), with a /80
        (one Assign when it has none); the ENI it created, if it did. What ``cnivpc ipam warm``
        does in this mode: no IPv4 pool to fill."""
        must_observe = False
        created: Plan | None = None
        while True:
            self._check_deadline("waiting for an ENI for IPv6 pods")
            wait_for: int | None = None
            own: tuple[int, Plan] | None = None
            unread: str | None = None
            eni: EniRecord | None = None
            obs = self._observe(always=must_observe)
            must_observe = False
            with self.decide():
                if obs is not None:
                    reconciling.apply(self.store, self.conf, obs, self._clock())
                choice, pool = self._decide(partial(rules.v6_eni, conf=self.conf), self.pool())
                if isinstance(choice, EniRecord):
                    eni = choice
                elif isinstance(choice, Wait):
                    wait_for = choice.op_id
                elif isinstance(choice, Plan):
                    self._refuse(pool, choice)
                    op_id = self.store.start_op(choice.kind, 0, device_index=choice.device_index)
                    own = op_id, choice
                else:
                    unread = choice.what
            if eni is not None:
                if not eni.ipv6_prefixes:
                    self.ec2work.assign_ipv6_prefix(eni)  # one EC2 call, outside the lock
                    with self.decide():
                        eni = self.store.eni(eni.eni_id) or eni
                return eni, created
            must_observe = self._follow(unread, wait_for, own)
            if own is not None:
                created = own[1]

    def _lease_v6(self, eni: EniRecord, container_id: str, ifname: str, pod: str, netns: str,
                  network: str, want6: str | None = None) -> tuple[V6Lease, EniRecord]:
        egress_range = self.conf.egress_ipv4_range
        with self.decide():
            eni = self.store.eni(eni.eni_id) or eni
            leases = self.store.v6_leases()
            ipv6 = self._choose_ipv6(eni, want6)
            egress = ""
            if egress_range is not None:
                egress = rules.pick_egress(egress_range,
                                           {x.egress_ip for x in leases if x.egress_ip},
                                           self.store.last_egress_ip()) or ""
                if not egress:
                    raise NoCapacity(f"every address of egressIPv4Range {egress_range} is "
                                     "held", f"{len(leases)} IPv6-only pods on this node")
            if ipv6 is None:
                raise PlanRefused("no IPv6 address for the pod", f"{eni.eni_id} has no /80")
            lease = V6Lease(ipv6, egress, eni.eni_id, network, container_id, ifname, pod, netns,
                            self._clock())
            problem = invariants.v6_lease_problem(
                lease, eni, leases, interface_index=self.conf.interface_index,
                egress_range=egress_range)
            if problem is not None:
                raise PlanRefused("the IPAM refused its own decision (a bug; nothing was done)",
                                  problem)
            try:
                self.store.lease_v6(lease)
            except KeyError as exc:
                raise TryAgainLater("another ADD took the address meanwhile", str(exc)) from exc
        log.info("IPv6-only %s (egress %s) on %s", ipv6, egress or "none", eni.eni_id)
        return lease, eni

    def _acquire_ipv4(self, container_id: str, ifname: str, pod: str, netns: str,
                      network: str | None, want: str | None = None
                      ) -> tuple[Allocation, EniRecord]:
        if want is not None:
            return self._acquire_requested(container_id, ifname, pod, netns, network, want)
        must_observe = False
        while True:
            self._check_deadline("waiting for an IP")
            wait_for: int | None = None
            own: tuple[int, Plan] | None = None
            got: tuple[Allocation, EniRecord] | None = None
            unread: str | None = None
            obs = self._observe(always=must_observe)
            must_observe = False
            with self.decide():
                held = self.store.allocations(container_id, ifname, network)
                if held:
                    if network is not None:
                        self.store.claim(network, container_id, ifname)
                    eni = self.store.eni(held[0].eni_id)
                    if eni is not None:
                        log.info("attachment already holds %s (a repeated ADD)", held[0].ip)
                        return held[0], eni
                if obs is not None:
                    reconciling.apply(self.store, self.conf, obs, self._clock())
                pool = self.pool()
                rule = partial(rules.decide_add, conf=self.conf, observed=obs is not None)
                choice, pool = self._decide(rule, pool)
                while isinstance(choice, Take):
                    problems = invariants.decision_problems(pool, self.conf, choice)
                    if not problems:
                        break
                    # Never reached by construction; if it is, the pool is wrong, not the
                    # pod's IP: forget it and decide again.
                    log.error("not handing out %s: %s (forgetting it)", choice.ip.ip,
                              "; ".join(problems))
                    self.store.forget([choice.ip.ip])
                    pool = pool.without_free(choice.ip.ip)
                    choice, pool = self._decide(rule, pool)
                if isinstance(choice, Take):
                    alloc = self.store.allocate(choice.ip.ip, container_id, ifname, pod, netns,
                                                network)
                    got = alloc, choice.eni
                    after = replace(pool.without_free(alloc.ip), held=(*pool.held, alloc))
                    self.refill_wanted = rules.refill_due(after, self.conf) or \
                        self.maintenance_due()
                elif isinstance(choice, Claim):
                    self.store.claim_op_ip(choice.op_id)
                    wait_for = choice.op_id
                elif isinstance(choice, Wait):
                    wait_for = choice.op_id
                elif isinstance(choice, Start):
                    self._refuse(pool, choice)
                    op_id = self.store.start_op(choice.plan.kind, choice.plan.addresses,
                                                eni_id=choice.plan.eni_id,
                                                device_index=choice.plan.device_index)
                    own = op_id, choice.plan
                else:
                    unread = choice.what
            if got is not None:
                return got
            must_observe = self._follow(unread, wait_for, own)

    def _follow(self, unread: str | None, wait_for: int | None,
                own: tuple[int, Plan] | None) -> bool:
        """What a decision loop does outside the lock once it decided (one of the three): read
        what the decision lacked, wait for another process's EC2 work, or run its own. True
        when the next decision must observe the instance first (after a read)."""
        if unread is not None:
            log.debug("reading %s before deciding again", unread)
            self._prefetch()
            return True
        if wait_for is not None:
            self._wait_op(wait_for)
        elif own is not None:
            self._run_op(*own, best_effort=False)
        return False

    def _acquire_requested(self, container_id: str, ifname: str, pod: str, netns: str,
                           network: str | None, want: str) -> tuple[Allocation, EniRecord]:
        """ADD asking for ``want`` by name (``decision.decide_requested``): taken from the
        pool, or assigned to its subnet's pod ENI and recorded as this attachment's in the
        same decision (no other ADD can take it in between); never another address."""
        obs = self._observe(always=True)  # the pool must be right about this very address
        self._prefetch(obs)
        with self.decide():
            if obs is not None:
                reconciling.apply(self.store, self.conf, obs, self._clock())
            first = not self.pool().eligible(self.conf) and \
                not self.store.allocations(container_id, ifname, network)
        if first:
            # The node's first pod ENI, in the subnet any pod's would be in (the tag-matching
            # one with the most room: the address must be in it), with one secondary IP only,
            # so there is a slot left for the address asked for.
            lean = self.conf.model_copy(update={"ip_batch_size": 1, "warm_ip_target": 0})
            Allocator(lean, self.store, self.node, clock=self._clock, monotonic=self._monotonic,
                      sleep=self._sleep).grow(1, new_eni=True)
            obs = None
        plan: Plan | None = None
        with self.decide():
            held = self.store.allocations(container_id, ifname, network)
            if held:
                eni = self.store.eni(held[0].eni_id)
                if eni is not None:
                    if held[0].ip != want:
                        log.warning("attachment already holds %s (asked for %s): kept",
                                    held[0].ip, want)
                    return held[0], eni
            if obs is not None:
                reconciling.apply(self.store, self.conf, obs, self._clock())
            pool = self.pool()
            holder = next((a for a in pool.held if a.ip == want), None)
            choice = rules.decide_requested(pool, self.conf, want, holder)
            if isinstance(choice, Take):
                return self._take_requested(pool, choice, container_id, ifname, pod, netns,
                                            network)
            if isinstance(choice, Read):  # read just before: it failed
                raise TryAgainLater(f"cannot read {choice.what} now", "see the log; retry")
            self._refuse(pool, choice)
            plan = choice
        self.ec2work.assign_addresses(plan)
        with self.decide():
            self.store.add_free(plan.ips, plan.eni_id)
            pool = self.pool()
            eni_now = next((e for e in pool.enis if e.eni_id == plan.eni_id), None)
            free = next((f for f in pool.free if f.ip == want), None)
            if eni_now is None or free is None:
                # Another ADD asking for the same address got it first (or the ENI went).
                raise TryAgainLater(f"the requested IP {want} was taken meanwhile",
                                    "another attachment holds it now")
            return self._take_requested(pool, Take(free, eni_now, requested=True),
                                        container_id, ifname, pod, netns, network)

    def _take_requested(self, pool: Pool, take: Take, container_id: str, ifname: str, pod: str,
                        netns: str, network: str | None) -> tuple[Allocation, EniRecord]:
        """Under ``decide()``: the requested address to the attachment, once the invariants
        agree (a refusal is an error: never another address instead)."""
        self._refuse(pool, take)
        alloc = self.store.allocate(take.ip.ip, container_id, ifname, pod, netns, network)
        log.info("requested %s on %s", alloc.ip, take.eni.eni_id)
        return alloc, take.eni

    def maintenance_due(self) -> bool:
        """An adopted ENI's DeleteOnTermination is still to be ensured (and was not tried in
        the last minute): the refill after the answer does it, off the pod's path."""
        return bool(self.store.cache_items("dot-pending:")) and \
            self.store.cache_get(DOT_TRIED) is None

    def grow(self, count: int, *, new_eni: bool = False) -> Plan:
        """Add ``count`` IPs to the pool now (the operator's ``cnivpc ipam grow``/``new-eni``)."""
        obs = reconciling.observe(self.node, self.conf, self._clock())
        self._prefetch(obs)
        with self.decide():
            reconciling.apply(self.store, self.conf, obs, self._clock())
            plan, pool = self._decide(
                lambda p: rules.plan_grow(p, self.conf, count, new_eni=new_eni), self.pool())
            if isinstance(plan, Read):
                raise TryAgainLater(f"cannot read {plan.what} now", "see the log; retry")
            self._refuse(pool, plan)
            op_id = self.store.start_op(plan.kind, plan.addresses, eni_id=plan.eni_id,
                                        device_index=plan.device_index)
            self.store.claim_op_reset(op_id)
        self._run_op(op_id, plan, best_effort=False)
        return plan

    # -- the warm pool: refill after an ADD's answer, and ``cnivpc ipam warm`` -----------------

    def refill(self) -> Plan | None:
        """Bring the pool toward its warm level with one piece of EC2 work (an Assign, or the
        next ENI), recorded as an op under this process's lease so concurrent ADDs claim its IPs
        instead of starting work of their own. Runs after an ADD's answer, in a detached child
        (``cni.afterwards``): failures are logged, never raised."""
        if not self.conf.ipv4:
            # IPv6-only pods: no IPv4 pool to refill; only the maintenance.
            self.ec2work.settle_delete_on_termination()
            return None
        try:
            # Off the answer's path: a fresh view of the instance first (see decide_add).
            obs = reconciling.observe(self.node, self.conf, self._clock())
            self._prefetch(obs)
            with self.decide():
                reconciling.apply(self.store, self.conf, obs, self._clock())
                planned = self._plan_refill()
        except (CniError, Ec2Error) as exc:
            log.warning("refilling the IP pool: %s", exc)
            return None
        if planned is not None:
            self._run_op(*planned, best_effort=True)
        # Maintenance after the pool's own work: pods may be waiting for that.
        self.ec2work.settle_delete_on_termination()
        return planned[1] if planned is not None else None

    def warm(self, max_steps: int = 8) -> list[Plan]:
        """``cnivpc ipam warm``: bring the pool up to its warm level now, synchronously (waiting
        for EC2 work in flight first). Idempotent: a warm pool costs no EC2 mutation. Errors
        (throttling, a full subnet) are raised; a node that cannot hold more is not one."""
        if not self.conf.ipv4:
            # IPv6-only pods: no IPv4 pool, only their ENI and its /80.
            _, created = self.v6_eni()
            self.ec2work.settle_delete_on_termination()
            return [created] if created is not None else []
        done: list[Plan] = []
        for _ in range(max_steps):
            wait_for: int | None = None
            planned: tuple[int, Plan] | None = None
            obs = reconciling.observe(self.node, self.conf, self._clock())
            self._prefetch(obs)
            with self.decide():
                reconciling.apply(self.store, self.conf, obs, self._clock())
                ops = self.store.ops()
                if ops:
                    wait_for = ops[0].id
                else:
                    planned = self._plan_refill(strict=True)
            if wait_for is not None:
                self._wait_op(wait_for)
                continue
            if planned is None:
                break
            self._run_op(*planned, best_effort=False)
            done.append(planned[1])
        self.ec2work.settle_delete_on_termination()
        return done

    def _plan_refill(self, *, strict: bool = False) -> tuple[int, Plan] | None:
        """Under the lock: ``decision.plan_refill`` on the pool, recorded as an op, or None.
        Without ``strict``, errors (a full subnet, throttling) are logged and give None."""
        pool = self.pool()
        try:
            plan, pool = self._decide(lambda p: rules.plan_refill(p, self.conf), pool)
            if isinstance(plan, Read):
                raise TryAgainLater(f"cannot read {plan.what} now", "see the log; retry")
        except (CniError, Ec2Error) as exc:
            err = exc.as_cni() if isinstance(exc, Ec2Error) else exc
            if strict:
                raise err from exc
            log.warning("cannot refill the IP pool now: %s", err)
            return None
        if plan is None:
            return None
        self._refuse(pool, plan)
        op_id = self.store.start_op(plan.kind, plan.addresses, eni_id=plan.eni_id,
                                    device_index=plan.device_index)
        # Nobody waits on a refill: its IPs all go to the pool (ADDs that find none claim them).
        self.store.claim_op_reset(op_id)
        assert pool.limits is not None  # a plan is only made with them
        free, room = rules.pool_level(pool, self.conf, pool.limits.pod_ips_per_eni)
        log.info("refilling the pool (%d free, room for %d on attached ENIs): %s of %d %s%s",
                 free, room, plan.kind, plan.count, "prefixes" if plan.prefixes else "IPs",
                 f" on {plan.eni_id}" if plan.eni_id else f" at device {plan.device_index}")
        return op_id, plan

    # -- waiting for and running EC2 work ----------------------------------------------------------

    def _wait_op(self, op_id: int) -> None:
        log.info("waiting for EC2 work #%d started by another ADD", op_id)
        while True:
            with self.store.transaction():
                if not self.store.op_running(op_id):
                    return
            self._check_deadline("waiting for another ADD's EC2 work")
            self._sleep(OP_POLL)

    def _run_op(self, op_id: int, plan: Plan, *, best_effort: bool) -> None:
        try:
            if plan.kind == "assign":
                self.ec2work.assign(plan)
            else:
                self.ec2work.create(plan)
        except CniError as exc:
            if not best_effort:
                raise
            log.warning("refilling the IP pool failed (the pod still got an IP): %s", exc)
        finally:
            with self.decide():
                self.store.finish_op(op_id)

    # -- reconciliation with the metadata ------------------------------------------------------

    def _reconcile_due(self) -> bool:
        """``reconcileInterval`` 0 means every decision reconciles (it meant once a second)."""
        if self.conf.reconcile_interval <= 0:
            return True
        last = self.store.cache_get("reconciled-at")
        return last is None or not self.store.enis()

    def _observe(self, *, always: bool = False) -> reconciling.Observation | None:
        """Read the instance for a reconciliation, outside the lock, when one is due (or
        ``always``). When it cannot be read and the store knows ENIs, the decision goes on
        without it (the pool serves; EC2 or the metadata being down must not fail pods that a
        free IP can serve); with nothing known, the error is the answer."""
        if not (always or self._reconcile_due()):
            return None
        try:
            return reconciling.observe(self.node, self.conf, self._clock())
        except (CniError, Ec2Error) as exc:
            if not self.store.enis():
                raise
            log.warning("cannot reconcile with the instance now (deciding from the store): %s",
                        exc)
            return None

    def _prefetch(self, obs: reconciling.Observation | None = None) -> None:
        """What a plan needs from the network (the instance's limits, the subnets for a new
        ENI), read outside the lock so the decision under it makes no call. The VPC is the boot
        ENI's: from the store, or from an observation not applied yet (a fresh node)."""
        self.node.limits()  # never fails: a built-in table or a guess stands in
        vpcs = [e.vpc_id for e in self.store.enis()[:1]]
        vpcs += [s.meta.vpc_id for s in (obs.enis if obs else ()) if s.meta.device_number == 0]
        if vpcs:
            try:
                self.node.subnets(vpcs[0])
            except (CniError, Ec2Error) as exc:
                # Only a new ENI needs them: the decision raises this if it comes to that.
                log.info("cannot read the subnets now: %s", exc)

    def remove_eni(self, eni_id: str, *, force: bool) -> list[Allocation]:
        """Detach and delete one of the node's pod ENIs (the operator's ``ipam remove-eni``).
        Refuses the boot ENI always, and an ENI whose IPs pods hold unless ``force`` (then those
        allocations are released: the pods lose their network). Returns what was released."""
        obs = reconciling.observe(self.node, self.conf, self._clock())
        with self.decide():
            reconciling.apply(self.store, self.conf, obs, self._clock())
            record = self.store.eni(eni_id)
            if record is None:
                raise CniError(f"{eni_id} is not an ENI of this node", code=7)
            if record.device_index == 0:
                raise CniError(f"{eni_id} is the boot ENI: cnivpc never removes it", code=7)
            held = [a for a in self.store.allocations() if a.eni_id == eni_id]
            v6 = [x for x in self.store.v6_leases() if x.eni_id == eni_id]
            if (held or v6) and not force:
                users = [(x.pod, x.container_id) for x in held]
                users += [(x.pod, x.container_id) for x in v6]
                raise CniError(f"{len(users)} pod(s) use {eni_id}: "
                               + ", ".join(pod or cid[:12] for pod, cid in users), code=7)
            for alloc in held:
                self.store.release(alloc.container_id, alloc.ifname)
            for lease in v6:
                self.store.release_v6(lease.container_id, lease.ifname)
            self.store.take_free([f.ip for f in self.store.free_ips(eni_ids=[eni_id])])
            self.store.drop_eni(eni_id)
        answer = self.node.ec2.call("DescribeNetworkInterfaces", NetworkInterfaceIds=[eni_id])
        attachment = answer["NetworkInterfaces"][0].get("Attachment", {}).get("AttachmentId")
        if attachment:
            self.ec2work.detach_and_delete(eni_id, attachment)
        else:
            self.ec2work.delete_quietly(eni_id)
        return held

    # -- DEL and GC: giving IPs back -------------------------------------------------------------

    def release(self, container_id: str, ifname: str,
                network: str | None = None) -> list[Allocation]:
        """Free the attachment's IPs: ``network``'s only when given (see ``Store.release``);
        then give back the surplus ``decision.release`` names."""
        with self.decide():
            held = self.store.allocations(container_id, ifname, network)
            pool = self.pool()
            plan = rules.release(pool, self.conf, held)
            unassign = self._safe_to_give_back(
                list(plan.unassign),
                lambda ips: invariants.decision_problems(
                    pool, self.conf, rules.Release(plan.released, tuple(ips))))
            released = self.store.release(container_id, ifname, network)
            surplus = self.store.take_free([f.ip for f in unassign])
        if surplus:
            self.ec2work.unassign(surplus)
        return released

    def release_v6(self, container_id: str, ifname: str,
                   network: str | None = None) -> list[V6Lease]:
        """Drop the attachment's IPv6-only lease (idempotent; nothing goes back to EC2: the
        /80 stays with its ENI for the next pod)."""
        with self.decide():
            return self.store.release_v6(container_id, ifname, network)

    @staticmethod
    def _safe_to_give_back(ips: list[FreeIP],
                           problems_of: Callable[[list[FreeIP]], list[str]]) -> list[FreeIP]:
        """``ips`` to give back, minus any the invariants refuse, each judged alone then
        (keeping an IP is always safe; giving one back that a pod holds is not)."""
        problems = problems_of(ips)
        if not problems:
            return ips
        log.error("not giving back IPs: %s", "; ".join(problems))
        return [f for f in ips if not problems_of([f])]

    def trim_idle(self, max_age: float) -> Unassigned:
        """GC: unassign free IPs idle longer than ``max_age`` seconds (``decision.idle``)."""
        if self.conf.skip_deallocation or max_age <= 0:
            return Unassigned()
        with self.decide():
            pool = self.pool()
            idle = self._safe_to_give_back(
                rules.idle(pool, self.conf, max_age),
                lambda ips: invariants.decision_problems(pool, self.conf, ips))
            taken = self.store.take_free([f.ip for f in idle])
        return self.ec2work.unassign(taken)
