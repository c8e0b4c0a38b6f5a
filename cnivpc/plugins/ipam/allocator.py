"""The IPAM's decisions (the EC2 calls behind them are in ``ec2work``).

ADD, in order: the attachment already holds an IP (a retried ADD) → the same IP; a free IP past
its cooldown on an ENI at ``interfaceIndex`` or above → take it (the warm path: no metadata, no
EC2, no botocore); EC2 work already in flight with IPs nobody claimed → claim one and wait for
it; otherwise start work: a batched AssignPrivateIpAddresses on an ENI with room, or a new ENI
(its IPs requested in the CreateNetworkInterface call itself).

The warm pool: an ADD that leaves the pool below its warm level (``warmIPTarget`` free IPs, and
``warmENIThreshold`` free IPs plus room on attached ENIs) only notes it (``refill_wanted``, a
store-only check); the plugin answers, then ``refill()`` runs in a detached child: under the
lock it decides one piece of work (an Assign, or the next ENI ahead of need) and records it as
an op under its own lease, so ADDs arriving meanwhile claim its IPs and wait instead of starting
work of their own. ``warm()`` is the same, synchronous, for ``cnivpc ipam warm`` at node start.

The host lock is held for decisions only. Slow EC2 work runs outside it, recorded as an *op* in
the store, so concurrent ADDs wait for its IPs instead of starting more work (a burst of pods
costs one batched call, not one per pod), and ADDs that can be served from the pool are never
queued behind an ENI attach.

Failures never cascade: throttling or a full subnet is reported (code 11 / a clear error), not
answered by creating another ENI (the original's bug). A new ENI whose link never appears in the
kernel is detached and deleted (best effort; tagged, so GC finishes the job).

The shape of one decision: observe the instance outside the lock when a reconciliation is due
(``reconcile.observe``), read what a plan may need outside it too (``_prefetch``), then under
the lock, with the node offline (no network call can happen there: ``NotPrefetched``), apply the
observation, decide from the store, check each IP against the invariants
(``invariants.handout_problem``) and write it in one transaction. EC2 work runs after, through
the ``Ec2Work`` collaborator.

Imports the store, the node view (aws/), ``reconcile``, ``invariants``, ``ec2work`` and, lazily,
``net.eni``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ...aws.ec2 import Ec2Error
from ...aws.errors import AwsError
from ...cni.errors import CniError, TryAgainLater
from ..hostlock import host_lock
from . import invariants
from . import reconcile as reconciling
from .config import IpamConf
from .ec2work import DOT_TRIED, Ec2Work, Plan, Unassigned
from .node import Node, NotPrefetched, Subnet
from .store import Allocation, EniRecord, FreeIP, Store

log = logging.getLogger("cnivpc.ipam")

OP_POLL = 0.05


class NoCapacity(CniError):
    """Every ENI this node may have is full: no IP can be had without freeing one."""

    code = 100


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
        # Set by acquire(): the pool is below its warm level after this ADD took its IP, so
        # the plugin runs refill() after answering (in a detached child).
        self.refill_wanted = False

    def now(self) -> float:
        """The allocator's clock (wall time: the store's timestamps)."""
        return self._clock()

    # -- locking -------------------------------------------------------------------------------

    @contextmanager
    def decide(self) -> Iterator[None]:
        """The host lock plus a store transaction: one decision, atomically. No network call
        inside (the node is offline: ``NotPrefetched``): other ADDs, DELs and STATUS wait on
        this lock, and a slow or throttled EC2 must not make them wait."""
        remaining = max(0.05, min(self.conf.lock_timeout, self.node.deadline - self._monotonic()))
        with host_lock(self.conf.lock_path, remaining, holder="another cnivpc-ipam process"), \
                self.store.transaction(), self.node.offline():
            yield

    def _check_deadline(self, what: str) -> None:
        if self._monotonic() >= self.node.deadline:
            raise TryAgainLater(f"IPAM ADD ran out of time while {what}",
                                f"deadline of {self.conf.timeout:.0f}s passed; retry")

    # -- ADD -------------------------------------------------------------------------------------

    def acquire(self, container_id: str, ifname: str, pod: str, netns: str = "",
                network: str | None = None) -> tuple[Allocation, EniRecord]:
        """An IP for the attachment of ``network`` (see the module docstring for the
        order)."""
        must_observe = False
        while True:
            self._check_deadline("waiting for an IP")
            wait_for: int | None = None
            own: tuple[int, Plan] | None = None
            got: tuple[Allocation, EniRecord] | None = None
            unread: NotPrefetched | None = None
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
                got = self._take_ready(container_id, ifname, pod, netns, network)
                if got is not None:
                    # ... or maintenance is pending (an adopted ENI's DeleteOnTermination):
                    # the refill after the answer does it, off the pod's path.
                    self.refill_wanted = self._refill_due() or (
                        bool(self.store.cache_items("dot-pending:"))
                        and self.store.cache_get(DOT_TRIED) is None)
                else:
                    op = self.store.claim_op()
                    if op is not None:
                        wait_for = op.id
                    else:
                        try:
                            wait_for, own = self._start_or_wait(observed=obs is not None)
                        except NotPrefetched as exc:
                            unread = exc
            if got is not None:
                return got
            if unread is not None:
                log.debug("reading %s before deciding again", unread)
                self._prefetch()
                must_observe = True
            elif wait_for is not None:
                self._wait_op(wait_for)
            elif own is not None:
                self._run_op(*own, best_effort=False)

    def _start_or_wait(self, observed: bool) -> tuple[int | None, tuple[int, Plan] | None]:
        """No IP ready and none coming for us: start EC2 work, or wait for work in flight
        that will make room. One new ENI at a time: an ENI being created has room beyond the
        IPs it was asked for (with a small ``ipBatchSize``), so a second ADD waits for it and
        assigns there instead of creating another ENI; and the node is only full (NoCapacity)
        when no work is in flight. A new ENI is only planned on a fresh view of the instance
        (``observed``): an ENI attached by a process killed before recording it holds a device
        index the store does not know (and IPs it can adopt)."""
        ops = self.store.ops()
        try:
            plan = self._plan(needed=1)
        except NoCapacity:
            if not ops:
                raise
            return ops[0].id, None
        creating = [op for op in ops if op.kind == "create"]
        if plan.kind == "create" and creating:
            return creating[0].id, None
        if plan.kind == "create" and not observed:
            raise NotPrefetched("a view of the instance before creating an ENI")
        op_id = self.store.start_op(plan.kind, plan.count, eni_id=plan.eni_id,
                                    device_index=plan.device_index)
        return None, (op_id, plan)

    def grow(self, count: int, *, new_eni: bool = False) -> Plan:
        """Add ``count`` IPs to the pool now (the operator's ``cnivpc ipam grow``/``new-eni``)."""
        obs = reconciling.observe(self.node, self.conf, self._clock())
        self._prefetch(obs)
        with self.decide():
            reconciling.apply(self.store, self.conf, obs, self._clock())
            plan = self._plan(needed=count, new_eni=new_eni)
            if plan.kind == "assign":
                plan = Plan("assign", min(count, plan.count), eni_id=plan.eni_id)
            op_id = self.store.start_op(plan.kind, plan.count, eni_id=plan.eni_id,
                                        device_index=plan.device_index)
            self.store.claim_op_reset(op_id)
        self._run_op(op_id, plan, best_effort=False)
        return plan

    def _eligible(self) -> list[EniRecord]:
        return [e for e in self.store.enis()
                if e.device_index >= self.conf.interface_index and e.link]

    def _take_ready(self, container_id: str, ifname: str, pod: str, netns: str,
                    network: str | None = None) -> tuple[Allocation, EniRecord] | None:
        enis = {e.eni_id: e for e in self._eligible()}
        ready = self.store.free_ips(ready_before=self._clock() - self.conf.reuse_ip_wait,
                                    eni_ids=enis)
        if ready:
            suspects = self.store.cache_items("ip-missing:")  # see reconcile
            ready = [f for f in ready if f.ip not in suspects]
        if not ready:
            return None
        # Longest-free first (spreads reuse); among equals the lowest device index, so pods pack
        # onto few ENIs and a surplus ENI can be given back.
        ready.sort(key=lambda f: (f.freed_at, enis[f.eni_id].device_index, f.ip))
        primaries = self._primaries()
        held = {a.ip for a in self.store.allocations()}
        for best in ready:
            problem = invariants.handout_problem(best.ip, enis[best.eni_id],
                                                 interface_index=self.conf.interface_index,
                                                 primaries=primaries, held=held)
            if problem is None:
                break
            # Never reached by construction; if it is, the pool is wrong, not the pod's IP.
            log.error("not handing out %s: %s (forgetting it)", best.ip, problem)
            self.store.forget([best.ip])
        else:
            return None
        alloc = self.store.allocate(best.ip, container_id, ifname, pod, netns, network)
        return alloc, enis[alloc.eni_id]

    def _ready_count(self) -> int:
        return len(self.store.free_ips(ready_before=self._clock() - self.conf.reuse_ip_wait,
                                       eni_ids=[e.eni_id for e in self._eligible()]))

    # -- the warm pool: refill after an ADD's answer, and ``cnivpc ipam warm`` -----------------

    def eni_threshold(self, per_eni: int) -> int:
        """``warmENIThreshold`` resolved: below this many free IPs plus room on attached ENIs,
        the next ENI is started ahead of need (see the config's docstring)."""
        if self.conf.warm_ip_target <= 0:
            return 0
        if self.conf.warm_eni_threshold >= 0:
            return self.conf.warm_eni_threshold
        return max(self.conf.warm_ip_target, per_eni * 3 // 4)

    def pool_level(self, per_eni: int) -> tuple[int, int]:
        """(free IPs, room for more IPs on attached ENIs), over ENIs whose IPs go to pods."""
        eligible = self._eligible()
        free = len(self.store.free_ips(eni_ids=[e.eni_id for e in eligible]))
        counts = self.store.ip_counts()
        room = sum(max(0, per_eni - counts.get(e.eni_id, 0)) for e in eligible)
        return free, room

    def _refill_due(self) -> bool:
        """Cheap (store only, no IMDS or EC2): is the pool below its warm level with no EC2
        work in flight? The refill itself decides again, under the lock, in its own process."""
        if self.conf.warm_ip_target <= 0 or self.store.ops():
            return False
        limits = self.node.cached_limits()
        if limits is None:
            return True  # unknown yet: let the refill read them
        free, room = self.pool_level(limits.pod_ips_per_eni)
        need = self._warm_need(free, room, limits.pod_ips_per_eni)
        return need is not None and (need[0] == "assign" or len(self.store.enis()) < limits.enis)

    def _warm_need(self, free: int, room: int, per_eni: int) -> tuple[str, int] | None:
        """What keeps a pool of ``free`` IPs (``room`` more on attached ENIs) from its warm
        level: ("assign", IPs short of ``warmIPTarget``) when an attached ENI has room,
        ("eni", 1) when free IPs plus room are below the ENI threshold
        (``warmENIThreshold``), None when it is warm."""
        if free < self.conf.warm_ip_target and room > 0:
            return "assign", self.conf.warm_ip_target - free
        if free + room < self.eni_threshold(per_eni):
            return "eni", 1
        return None

    def refill(self) -> Plan | None:
        """Bring the pool toward its warm level with one piece of EC2 work (an Assign, or the
        next ENI), recorded as an op under this process's lease so concurrent ADDs claim its IPs
        instead of starting work of their own. Runs after an ADD's answer, in a detached child
        (``cni.afterwards``): failures are logged, never raised."""
        try:
            # Off the answer's path: a fresh view of the instance first (see _start_or_wait).
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
        """Under the lock: the one piece of work that brings the pool toward its warm level,
        recorded as an op, or None. An Assign when fewer than ``warmIPTarget`` IPs are free and
        an attached ENI has room; the next ENI when the free IPs plus that room are below the
        ENI threshold (``warmENIThreshold``). Nothing while other work is in flight. Without
        ``strict``, errors (a full subnet, throttling) are logged and give None."""
        if self.conf.warm_ip_target <= 0 or self.store.ops():
            return None
        try:
            limits = self.node.limits()
            free, room = self.pool_level(limits.pod_ips_per_eni)
            need = self._warm_need(free, room, limits.pod_ips_per_eni)
            if need is None:
                return None
            kind, needed = need
            plan = self._plan(needed=needed, new_eni=kind == "eni")
        except NoCapacity:
            return None
        except (CniError, Ec2Error) as exc:
            err = exc.as_cni() if isinstance(exc, Ec2Error) else exc
            if strict:
                raise err from exc
            log.warning("cannot refill the IP pool now: %s", err)
            return None
        op_id = self.store.start_op(plan.kind, plan.count, eni_id=plan.eni_id,
                                    device_index=plan.device_index)
        # Nobody waits on a refill: its IPs all go to the pool (ADDs that find none claim them).
        self.store.claim_op_reset(op_id)
        log.info("refilling the pool (%d free, room for %d on attached ENIs): %s of %d IPs%s",
                 free, room, plan.kind, plan.count,
                 f" on {plan.eni_id}" if plan.eni_id else f" at device {plan.device_index}")
        return op_id, plan

    def _plan(self, needed: int, *, new_eni: bool = False) -> Plan:
        """Where more IPs come from: an ENI with room, else (or with ``new_eni``) a new ENI,
        else NoCapacity."""
        limits = self.node.limits()
        counts = self.store.ip_counts()
        ops = self.store.ops()
        pending = {op.eni_id: op.expected for op in ops if op.kind == "assign"}
        candidates = []
        for eni in [] if new_eni else self._eligible():
            room = (limits.pod_ips_per_eni - counts.get(eni.eni_id, 0)
                    - pending.get(eni.eni_id, 0))
            if room > 0:
                candidates.append((room, -eni.device_index, eni))
        if candidates:
            room, _, eni = max(candidates, key=lambda c: (c[0], c[1]))
            return Plan("assign", self._batch(room, needed), eni_id=eni.eni_id)
        used = {e.device_index for e in self.store.enis()}
        used |= {op.device_index for op in ops if op.kind == "create"
                 and op.device_index is not None}
        if len(used) >= limits.enis:
            raise NoCapacity(
                f"no free IP on this node: all {limits.enis} ENIs of a "
                f"{self.node.identity.instance_type} are in use and full",
                f"{self._max_pods(limits.enis, limits.pod_ips_per_eni)} pod IPs with "
                f"interfaceIndex {self.conf.interface_index}; free a pod or use a larger type")
        device_index = next(i for i in range(max(1, self.conf.interface_index), 1000)
                            if i not in used)
        subnet = self._subnet_for_new_eni()
        count = limits.pod_ips_per_eni if self.conf.ip_batch_size == 0 else min(
            self.conf.ip_batch_size, limits.pod_ips_per_eni)
        return Plan("create", min(count, max(1, subnet.available)),
                    device_index=device_index, subnet=subnet)

    def _max_pods(self, enis: int, per_eni: int) -> int:
        return max(0, enis - self.conf.interface_index) * per_eni

    def _batch(self, room: int, needed: int) -> int:
        if self.conf.ip_batch_size > 0:
            return min(self.conf.ip_batch_size, room)
        want = max(needed, 1) + max(0, self.conf.warm_ip_target - self._ready_count())
        return max(1, min(room, want))

    def _subnet_for_new_eni(self) -> Subnet:
        boot = self.ec2work._boot_eni()
        tags = self.conf.subnet_tags
        subnets = [s for s in self.node.subnets(boot.vpc_id)
                   if all(s.tags.get(k) == v for k, v in tags.items())]
        if not subnets:
            raise AwsError("no subnet for a new ENI",
                           f"no subnet in {boot.vpc_id} / {self.node.identity.availability_zone}"
                           f" has the tags {tags}")
        best = subnets[0]
        if best.available <= 0:
            raise TryAgainLater(f"subnet {best.subnet_id} ({best.cidr}) has no free address",
                                "every tag-matching subnet in this AZ is full")
        return best


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
            if held and not force:
                raise CniError(f"{len(held)} pod(s) use {eni_id}: "
                               + ", ".join(a.pod or a.container_id[:12] for a in held), code=7)
            for alloc in held:
                self.store.release(alloc.container_id, alloc.ifname)
            self.store.take_free([f.ip for f in self.store.free_ips(eni_ids=[eni_id])])
            self.store.drop_eni(eni_id)
        answer = self.node.ec2.call("DescribeNetworkInterfaces", NetworkInterfaceIds=[eni_id])
        attachment = answer["NetworkInterfaces"][0].get("Attachment", {}).get("AttachmentId")
        if attachment:
            self.ec2work.detach_and_delete(eni_id, attachment)
        else:
            self.ec2work.delete_quietly(eni_id)
        return held

    # -- GC ------------------------------------------------------------------------------------

    # -- DEL -----------------------------------------------------------------------------------

    def release(self, container_id: str, ifname: str,
                network: str | None = None) -> list[Allocation]:
        """Free the attachment's IPs: ``network``'s only when given (see ``Store.release``)."""
        with self.decide():
            released = self.store.release(container_id, ifname, network)
            surplus = self._take_surplus()
        if surplus:
            self.ec2work.unassign(surplus)
        return released

    def _take_surplus(self) -> list[FreeIP]:
        """Free IPs above ``maxFreeIPs`` (and ``warmIPTarget``), newest-freed first, never an
        ENI's primary IP. ENIs are never given back here: a spare ENI is not churned."""
        if self.conf.skip_deallocation or self.conf.max_free_ips < 0:
            return []
        free = self.store.free_ips()
        # Never below the warm target: the next ADD's refill would assign them right back.
        extra = len(free) - max(self.conf.max_free_ips, self.conf.warm_ip_target)
        if extra <= 0:
            return []
        primaries = self._primaries()
        newest_first = [f for f in reversed(free) if f.ip not in primaries]
        return self.store.take_free([f.ip for f in newest_first[:extra]])

    def _primaries(self) -> set[str]:
        return {e.primary_ip for e in self.store.enis()}

    def trim_idle(self, max_age: float) -> Unassigned:
        """GC: unassign free IPs idle longer than ``max_age`` seconds, keeping ``warmIPTarget``
        of them and every ENI's primary."""
        if self.conf.skip_deallocation or max_age <= 0:
            return Unassigned()
        with self.decide():
            primaries = self._primaries()
            free = [f for f in self.store.free_ips() if f.ip not in primaries]
            idle = [f for f in free if f.freed_at <= self._clock() - max_age]
            keep = max(0, self.conf.warm_ip_target - (len(free) - len(idle)))
            taken = self.store.take_free([f.ip for f in idle[keep:]])
        return self.ec2work.unassign(taken)
