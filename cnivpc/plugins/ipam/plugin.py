"""The IPAM plugin's five handlers (``cnivpc-ipam``, first in the chain): add, delete, check,
status, gc. Each reads as a short story over the allocator, the store and the node view.

ADD returns the ENI's link as the only interface (the ipvlan plugin's master); when it left the
pool below its warm level, the refill runs after the answer (``refill``, in a detached child:
see ``cni.afterwards``), so no pod waits for it. DEL releases by
(network, container ID, ifname): no netns, no prevResult and no EC2 needed, repeatable. EC2
failures never fail DEL (the pool keeps the IP; GC retries the unassign).

Every handler works on its own network's allocations only (``conf.name``; see ``store`` for
rows from before the network key): a second network using cnivpc-ipam on the same node
(Multus) is never touched. GC without a valid-attachments list refuses before anything else.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable

from ...aws.ec2 import Ec2Error
from ...aws.errors import MetadataUnavailable
from ...aws.metadata import Metadata
from ...cni import logs
from ...cni.args import PodRef, requested_ips
from ...cni.errors import CniError, InvalidConfig, PluginNotAvailable
from ...cni.models import Result
from ...cni.plugin import Plugin, Request
from . import config
from . import result as results
from .allocator import Allocator
from .config import IpamConf
from .decision import NoCapacity
from .node import Node
from .store import EniRecord, Store

log = logs.get("ipam")


def _open(conf: IpamConf) -> tuple[Store, Node]:
    store = Store.open(conf.data_dir)
    deadline = time.monotonic() + conf.timeout

    def limiter(name: str, capacity: float, refill: float) -> float:
        with store.transaction():
            return store.take_token(name, capacity, refill)

    return store, Node(store, deadline=deadline, metadata=Metadata(), limiter=limiter)


def _log_calls(node: Node) -> None:
    """One line per invocation that used EC2: what `cnivpc status` and the tests count."""
    if node.ec2_calls:
        log.info("EC2 calls: %s", node.ec2_calls)


def _extra_cidrs(conf: IpamConf, node: Node, vpc_id: str) -> list[str]:
    extra = list(conf.route_to_cidrs)
    if conf.route_to_vpc_peers:
        extra = node.peer_cidrs(vpc_id) + extra
    if conf.route_service_prefix_lists:
        try:
            extra += node.service_cidrs(conf.route_service_prefix_lists)
        except (CniError, Ec2Error) as exc:
            # The pod still works: its service traffic takes the node's NAT until the lists
            # can be read (the next ADD asks again).
            log.warning("cannot read the service prefix lists %s (%s): no service routes for "
                        "this pod", ", ".join(conf.route_service_prefix_lists), exc)
    return extra


def _check_families(conf: IpamConf) -> None:
    problem = config.family_problem(conf)
    if problem is not None:
        raise InvalidConfig(*problem)


def add(req: Request[IpamConf]) -> Result:
    conf, cmd = req.conf, req.cmd
    _check_families(conf)
    pod = str(PodRef.from_cni_args(cmd.args))
    want, want6 = _requested(conf, cmd.args)
    if not conf.ipv4:
        return _add_v6(req, pod, want6)
    store, node = _open(conf)
    with store:
        allocator = Allocator(conf, store, node)
        alloc, eni = allocator.acquire(cmd.container_id, cmd.ifname, pod, cmd.netns,
                                       network=conf.name, want=want, want6=want6)
        log.info("ADD %s %s -> %s on %s (%s)", cmd.container_id[:12], pod or "-", alloc.ip,
                 eni.eni_id, eni.link)
        result = results.build(alloc, eni, _extra_cidrs(conf, node, eni.vpc_id))
        _log_calls(node)
    if allocator.refill_wanted:
        # The pool is below its warm level: refill it once the pod has its answer.
        req.after_answer(lambda: refill(conf))
    return result


def _requested(conf: IpamConf, raw_args: str) -> tuple[str | None, str | None]:
    """The IPv4 and the IPv6 the runtime asks for (``cni.args.requested_ips``), at most one of
    each family, and only of a family this pod gets from the VPC: code 7 otherwise."""
    wanted = requested_ips(raw_args, conf.runtime_config)
    by_family: dict[int, str] = {}
    for ip in wanted:
        if ip.version in by_family:
            raise InvalidConfig(f"more than one IPv{ip.version} requested: "
                                f"{by_family[ip.version]} and {ip}",
                                "cnivpc gives a pod one address of each family")
        by_family[ip.version] = str(ip)
    if 4 in by_family and not conf.ipv4:
        raise InvalidConfig(f"IPv4 {by_family[4]} requested of IPv6-only pods (ipv4: false)",
                            "their IPv4 is node-local, from egressIPv4Range")
    if 6 in by_family and not conf.ipv6:
        raise InvalidConfig(f"IPv6 {by_family[6]} requested, but ipv6 is off")
    return by_family.get(4), by_family.get(6)


def _add_v6(req: Request[IpamConf], pod: str, want6: str | None) -> Result:
    """IPv6-only (``ipv4: false``): no pool to keep warm; the refill after the answer only
    does the maintenance (``Allocator.refill``)."""
    conf, cmd = req.conf, req.cmd
    store, node = _open(conf)
    with store:
        allocator = Allocator(conf, store, node)
        lease, eni = allocator.acquire_v6(cmd.container_id, cmd.ifname, pod, cmd.netns,
                                          network=conf.name, want6=want6)
        log.info("ADD %s %s -> %s (egress %s) on %s (%s)", cmd.container_id[:12], pod or "-",
                 lease.ipv6, lease.egress_ip or "none", eni.eni_id, eni.link)
        _log_calls(node)
        due = allocator.maintenance_due()
    if due:
        # An ENI still lacks DeleteOnTermination: settle it once the pod has its answer.
        req.after_answer(lambda: refill(conf))
    return results.build_v6(lease, eni)


def refill(conf: IpamConf) -> None:
    """The pool refill after an ADD's answer (run by ``cni.afterwards``, normally in a detached
    child): its own store connection and deadline, its own ``EC2 calls`` log line."""
    store, node = _open(conf)
    with store:
        plan = Allocator(conf, store, node).refill()
        if plan is not None:
            log.info("pool refill: %s of %d IPs done", plan.kind, plan.count)
        _log_calls(node)


def delete(req: Request[IpamConf]) -> None:
    conf, cmd = req.conf, req.cmd
    store, node = _open(conf)
    with store:
        allocator = Allocator(conf, store, node)
        released = allocator.release(cmd.container_id, cmd.ifname, network=conf.name)
        # Whatever the config says now: the attachment may be from before a change of ipv4.
        leases = allocator.release_v6(cmd.container_id, cmd.ifname, network=conf.name)
    _log_calls(node)
    for alloc in released:
        log.info("DEL %s released %s from %s", cmd.container_id[:12], alloc.ip, alloc.eni_id)
    for lease in leases:
        log.info("DEL %s released %s (egress %s) from %s", cmd.container_id[:12], lease.ipv6,
                 lease.egress_ip or "none", lease.eni_id)
    if not released and not leases:
        log.info("DEL %s: nothing held (already released)", cmd.container_id[:12])


def check(req: Request[IpamConf]) -> None:
    """The attachment holds an IP, it is the one in prevResult, and its ENI still has it."""
    conf, cmd = req.conf, req.cmd
    _check_families(conf)
    store, node = _open(conf)
    with store:
        if not conf.ipv4:
            _check_v6(req, store, node)
            return
        held = store.allocations(cmd.container_id, cmd.ifname, network=conf.name)
        if not held:
            raise CniError(f"no IP is allocated to container {cmd.container_id} {cmd.ifname}",
                           "the IPAM store has no such attachment", code=7)
        _check_prev_result(req, {held[0].ip, held[0].ipv6})
        eni = store.eni(held[0].eni_id)
        if eni is None:
            raise CniError(f"ENI {held[0].eni_id} holding {held[0].ip} is gone", code=7)
        on_eni = _ips_on_eni(node, eni.mac)
        if held[0].ip not in on_eni:
            # The metadata may lag a fresh assign: ask EC2, the truth, before failing.
            on_eni = set(node.eni_ips(eni.eni_id))
        if held[0].ip not in on_eni:
            raise CniError(f"{held[0].ip} is no longer assigned to {eni.eni_id}",
                           "it was removed outside cnivpc; delete the pod", code=7)
        if held[0].ipv6:  # dual-stack: its IPv6 too
            _check_ipv6_on_eni(node, eni, held[0].ipv6)


def _check_v6(req: Request[IpamConf], store: Store, node: Node) -> None:
    """An IPv6-only attachment: it holds a lease, prevResult has its addresses, and its ENI
    still has the /80 its IPv6 is in (the metadata, then EC2 when the metadata lags)."""
    conf, cmd = req.conf, req.cmd
    leases = store.v6_leases(cmd.container_id, cmd.ifname, network=conf.name)
    if not leases:
        raise CniError(f"no IPv6 is allocated to container {cmd.container_id} {cmd.ifname}",
                       "the IPAM store has no such attachment", code=7)
    lease = leases[0]
    _check_prev_result(req, {lease.ipv6, lease.egress_ip})
    eni = store.eni(lease.eni_id)
    if eni is None:
        raise CniError(f"ENI {lease.eni_id} holding {lease.ipv6} is gone", code=7)
    _check_ipv6_on_eni(node, eni, lease.ipv6)


def _check_ipv6_on_eni(node: Node, eni: EniRecord, ipv6: str) -> None:
    """The ENI still has a /80 holding ``ipv6``: the metadata says so, or (it may lag a fresh
    assign) EC2 does."""
    address = ipaddress.ip_address(ipv6)

    def covered(prefixes: Iterable[str]) -> bool:
        return any(address in ipaddress.ip_network(p) for p in prefixes)

    try:
        listed = node.metadata.interface(eni.mac, ipv6=True).ipv6_prefixes
    except CniError:
        listed = ()
    if not covered(listed) and not covered(node.eni_ipv6_prefixes(eni.eni_id)):
        raise CniError(f"{ipv6} is in no IPv6 prefix of {eni.eni_id} any more",
                       "its /80 was removed outside cnivpc; delete the pod", code=7)


def _ips_on_eni(node: Node, mac: str) -> set[str]:
    try:
        return set(node.metadata.interface(mac).ipv4s)
    except CniError:
        return set()


def _check_prev_result(req: Request[IpamConf], held: set[str]) -> None:
    """prevResult, when given, has every address the IPAM holds for the attachment (its
    IPv4 and IPv6; "" for one it has not)."""
    prev = req.prev_result
    if prev is None:
        return
    ips = {str(ip.ip) for ip in prev.ips}
    mine = held - {""}
    if ips and not mine <= ips:
        raise InvalidConfig(f"prevResult has {sorted(ips)} but the IPAM holds {sorted(mine)}")


def status(req: Request[IpamConf]) -> None:
    """Ready when the metadata answers and an IP can be had: one is free, or there is room for
    more (then EC2 must be usable). It never warms the pool: runtimes call STATUS often and
    expect a fast, read-only answer, and EC2 throttling must not turn into "not ready";
    ``cnivpc ipam warm`` (at node start) and ADD's background refill keep the pool warm."""
    conf = req.conf
    _check_families(conf)
    store, node = _open(conf)
    with store:
        try:
            identity = node.identity
        except MetadataUnavailable as exc:
            raise PluginNotAvailable("instance metadata is unusable", str(exc)) from exc
        if store.free_ips() or (not conf.ipv4 and any(
                e.ipv6_prefixes for e in store.enis() if e.device_index >= conf.interface_index)):
            return
        try:
            limits = node.limits()
            node.ec2.call("DescribeNetworkInterfaces", MaxResults=5, Filters=[
                {"Name": "attachment.instance-id", "Values": [identity.instance_id]}])
        except CniError as exc:
            raise PluginNotAvailable("no free IP and EC2 is unusable", str(exc)) from exc
        except Exception as exc:  # botocore: missing credentials and the like
            raise PluginNotAvailable("no free IP and EC2 is unusable", repr(exc)) from exc
        ours = [e for e in store.enis() if e.device_index >= conf.interface_index]
        counts = store.ip_counts()
        room = sum(limits.pod_ips_per_eni - counts.get(e.eni_id, 0) for e in ours)
        room += (limits.enis - len(store.enis())) * limits.pod_ips_per_eni
        full = sum(counts.get(e.eni_id, 0) for e in ours)
        if room <= 0:
            raise PluginNotAvailable("no IP capacity left on this node",
                                     f"{full} IPs in use on {len(ours)} ENIs")


def gc(req: Request[IpamConf]) -> None:
    """Release this network's allocations of attachments the runtime no longer knows, unassign
    IPs idle longer than ``freeIPMaxAge``, and delete leaked ENIs (ours, detached, confirmed
    twice). Without the valid-attachments list it refuses and does nothing at all (an empty
    list is another matter: nothing of this network is valid). Every part is attempted; the
    first failure is reported at the end, as the spec asks."""
    conf = req.conf
    valid = req.valid_attachments.require()
    store, node = _open(conf)
    errors: list[CniError] = []
    with store:
        allocator = Allocator(conf, store, node)
        # Only rows this network holds: another network's (Multus) are not in our list and
        # not ours to judge; unclaimed rows of schema 1 are left to DEL (see ``store``).
        held = store.allocations()
        mine = {(a.container_id, a.ifname) for a in held if a.network == conf.name}
        v6_mine = {(x.container_id, x.ifname) for x in store.v6_leases(network=conf.name)}
        # An unclaimed row the runtime lists as valid for this network is this network's.
        with store.transaction():
            for container_id, ifname in {(a.container_id, a.ifname) for a in held
                                         if not a.network} & valid:
                store.claim(conf.name, container_id, ifname)
        for container_id, ifname in sorted(mine - valid):
            for alloc in allocator.release(container_id, ifname, network=conf.name):
                log.info("GC released %s of gone container %s", alloc.ip, container_id[:12])
        for container_id, ifname in sorted(v6_mine - valid):
            for lease in allocator.release_v6(container_id, ifname, network=conf.name):
                log.info("GC released %s of gone container %s", lease.ipv6, container_id[:12])
        for part in (lambda: allocator.trim_idle(conf.free_ip_max_age),
                     lambda: allocator.ec2work.leaked_enis(delete=True),
                     allocator.ec2work.settle_delete_on_termination):
            try:
                part()
            except (CniError, Ec2Error) as exc:
                log.error("GC: %s", exc)
                errors.append(exc.as_cni() if isinstance(exc, Ec2Error) else exc)
        _log_calls(node)
    if errors:
        raise errors[0]


PLUGIN = Plugin(name="cnivpc-ipam", conf_model=IpamConf, add=add, delete=delete, check=check,
                status=status, gc=gc)

__all__ = ["PLUGIN", "NoCapacity"]
