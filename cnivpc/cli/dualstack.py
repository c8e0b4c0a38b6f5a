"""Both address families in the operator's commands (dual-stack, the IPAM's ``ipv6``): an
address an operator types, in either family, made canonical; the attachment holding one (by its
IPv4 or its IPv6); the IPv6 counts ``status`` shows; an instance type's IPv6 facts from
DescribeInstanceTypes (the IPAM's cached limits hold only what its decisions need: IPv4).

Imports the IPAM's store types and cni.errors only; EC2 only through a Node it is handed (no
botocore at import time).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from ..cni.errors import CniError
from ..plugins.ipam.store import Allocation, EniRecord, V6Lease
from .exits import EXIT_USAGE, CliError


def canonical(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address an operator typed, in either family. A prefix length is accepted and
    dropped (``ipam addresses`` prints ``2600:1f18::5/128``, an operator pastes it); the store
    keeps IPv6 compressed, so ``2600:1f18:0::05`` must find the same holder."""
    try:
        return ipaddress.ip_interface(text.strip()).ip
    except ValueError as exc:
        raise CliError(f"{text!r} is not an IP address",
                       "give a pod's IPv4 or IPv6 address (see 'cnivpc ipam allocations')",
                       EXIT_USAGE) from exc


def as_allocation(lease: V6Lease) -> Allocation:
    """An IPv6-only attachment (``ipv4: false``) as the listings show one: no VPC IPv4 (``ip``
    is ""), its IPv6; its node-local egress IPv4 is shown apart (``egress``)."""
    return Allocation("", lease.eni_id, lease.container_id, lease.ifname, lease.pod,
                      lease.allocated_at, lease.netns, lease.network, "", lease.ipv6)


def attachments(store: Any) -> list[Allocation]:
    """Every pod attachment of the node: those of the IPv4 pool (dual-stack ones with their
    IPv6), then the IPv6-only ones (``as_allocation``)."""
    return [*store.allocations(), *(as_allocation(x) for x in store.v6_leases())]


def egress(store: Any) -> dict[tuple[str, str], str]:
    """(container ID, ifname) -> the node-local egress IPv4 of an IPv6-only attachment."""
    return {(x.container_id, x.ifname): x.egress_ip for x in store.v6_leases() if x.egress_ip}


def release(allocator: Any, alloc: Allocation) -> None:
    """Release one attachment as its DEL would: from the IPv4 pool, or its IPv6-only lease."""
    network = alloc.network or None
    if alloc.ip:
        allocator.release(alloc.container_id, alloc.ifname, network)
    else:
        allocator.release_v6(alloc.container_id, alloc.ifname, network)


def holder(allocations: Iterable[Allocation], ip: str) -> Allocation | None:
    """The attachment holding ``ip`` (canonical text), as its IPv4 or as its IPv6."""
    return next((a for a in allocations if ip in (a.ip, a.ipv6)), None)


def both(alloc: Allocation) -> str:
    """An attachment's addresses for a sentence: ``10.0.1.5`` or ``10.0.1.5 and 2600::5``
    (whichever it has: a lease of one family only names that one)."""
    return " and ".join(ip for ip in (alloc.ip, alloc.ipv6) if ip)


def shown(enabled: bool, values: Iterable[Any]) -> bool:
    """Whether a table gets its IPv6 column(s): when ``ipv6`` is on, or anything has IPv6
    (an ENI or a pod from when it was on). An IPv4-only node's tables stay as they were."""
    return enabled or any(values)


def counts(enabled: bool, allocations: Sequence[Allocation],
           enis: Sequence[EniRecord]) -> dict[str, Any]:
    """``status``'s IPv6 line: pods with an IPv6 and without, pod ENIs with a /80."""
    with_v6 = [a for a in allocations if a.ipv6]
    return {"enabled": enabled, "pods": len(with_v6),
            "pods_without": len(allocations) - len(with_v6),
            "ipv6_only": sum(1 for a in allocations if not a.ip),
            "enis": len(enis), "enis_with_prefix": sum(1 for e in enis if e.ipv6_prefixes),
            "prefixes": sum(len(e.ipv6_prefixes) for e in enis)}


def vpc_ipv6_cidrs(node: Any, mac: str) -> list[str]:
    """The VPC's IPv6 CIDRs as the metadata gives them on the ENI ``mac`` (none: no key).
    Nothing routes them apart: a pod's IPv6 all leaves over its ipvlan leg, the VPC's and the
    internet's alike; they are shown so an operator sees the VPC has IPv6 at all."""
    body = node.metadata.get_optional(f"meta-data/network/interfaces/macs/{mac}/"
                                      "vpc-ipv6-cidr-blocks") or ""
    return [c for c in body.split() if ":" in c]


def type_ipv6(node: Any, instance_type: str) -> tuple[dict[str, Any], str]:
    """``{"ipv6_per_eni", "ipv6_supported"}`` of ``instance_type`` from DescribeInstanceTypes
    (one call), and "" -- or both None and why EC2 could not say (the built-in table has no
    IPv6 column, and a guess would be worse than none)."""
    unknown: dict[str, Any] = {"ipv6_per_eni": None, "ipv6_supported": None}
    try:
        answer = node.ec2.call("DescribeInstanceTypes", InstanceTypes=[instance_type])
        net = answer["InstanceTypes"][0]["NetworkInfo"]
    except CniError as exc:  # Ec2Error is one
        return unknown, str(exc)
    except (KeyError, IndexError):
        return unknown, f"EC2 has no network facts for {instance_type}"
    supported = bool(net.get("Ipv6Supported", False))
    per_eni = net.get("Ipv6AddressesPerInterface")
    if not supported:
        per_eni = 0  # a type without IPv6 takes none, whatever else the answer says
    return {"ipv6_per_eni": None if per_eni is None else int(per_eni),
            "ipv6_supported": supported}, ""
