"""One attachment (network, container ID, CNI_IFNAME) and the facts ADD, CHECK, DEL and GC
derive from it and from prevResult: its object names, the pod IPs, the per-pod table routes.
No I/O.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from ...cni.errors import InvalidConfig
from ...cni.models import Result
from . import naming

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class Attachment(NamedTuple):
    network: str
    container_id: str
    ifname: str

    @property
    def host_veth(self) -> str:
        return naming.host_veth_name(self.container_id, self.ifname)

    @property
    def alias(self) -> str:
        return naming.veth_alias(self.network, self.container_id, self.ifname)

    @property
    def chain(self) -> str:
        return naming.masq_chain(self.network, self.container_id)

    @property
    def comment(self) -> str:
        return naming.masq_comment(self.network, self.container_id)


def require_prev(prev: Result | None) -> Result:
    if prev is None:
        raise InvalidConfig("cnivpc-ptp must be called as a chained plugin",
                            "prevResult with the pod IPs is required (put the IPAM and "
                            "ipvlan plugins before it in the conflist)")
    return prev


def pod_ips(prev: Result, ifname: str) -> list[IPAddress]:
    """The pod's addresses: prevResult IPs that belong to CNI_IFNAME (or to no interface in
    particular). An IP explicitly on another named interface is not ours to route."""
    ips: list[IPAddress] = []
    for ipc in prev.ips:
        idx = ipc.interface
        if idx is not None and 0 <= idx < len(prev.interfaces) \
                and prev.interfaces[idx].name != ifname:
            continue
        if ipc.ip not in ips:
            ips.append(ipc.ip)
    if not ips:
        raise InvalidConfig("prevResult has no IP address for the pod",
                            f"no ips[] entry for interface {ifname}")
    return ips


# (destination, next hop or None for an on-link route)
RouteSpec = tuple[IPNetwork, IPAddress | None]
DEFAULT = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def table_routes(prev: Result, ips: list[IPAddress]) -> list[tuple[IPNetwork, IPAddress]]:
    """(destination, via) for the per-pod table: every prevResult route, sorted by
    destination, via the pod's first IPv4 (IPv6: via the pod veth's link-local); routes of a
    family the pod has no IP in are skipped."""
    via: dict[int, IPAddress | None] = {
        4: next((ip for ip in ips if ip.version == 4), None),
        6: naming.POD_LINK_LOCAL.ip if any(ip.version == 6 for ip in ips) else None}
    out: list[tuple[IPNetwork, IPAddress]] = []
    for route in sorted(prev.routes, key=lambda r: r.dst):
        dst = ipaddress.ip_network(route.dst, strict=False)
        hop = via[dst.version]
        if hop is not None and (dst, hop) not in out:
            out.append((dst, hop))
    return out


def direct_families(prev: Result) -> set[int]:
    """Families whose default route comes with prevResult: the pod's traffic of that family
    leaves by its main interface (the ipvlan slave: dual-stack IPv6 over the ENI with the pod's
    own, public address), so the veth carries only the pod<->node path for it: no default via
    the node, no masquerading."""
    return {net.version for net in (ipaddress.ip_network(r.dst, strict=False)
                                     for r in prev.routes) if net.prefixlen == 0}


def pod_routes(host_addrs: list[IPAddress], gateway4: IPAddress | None,
               families: set[int], direct: set[int] | frozenset[int] = frozenset()
               ) -> list[RouteSpec]:
    """Routes on the pod's veth: every host address as an on-link /32 and the default via
    ``gateway4`` (the host's primary IPv4); for IPv6, the host's global addresses and the
    default via the host veth's link-local (the host's own link-locals belong to its link).
    No default for a family in ``direct`` (see ``direct_families``)."""
    out: list[RouteSpec] = []
    if 4 in families and gateway4 is not None:
        out += [(ipaddress.ip_network(a), None) for a in host_addrs if a.version == 4]
        if 4 not in direct:
            out.append((DEFAULT[4], gateway4))
    if 6 in families:
        hop = naming.HOST_LINK_LOCAL.ip
        out += [(ipaddress.ip_network(a), hop) for a in host_addrs
                if a.version == 6 and not a.is_link_local]
        if 6 not in direct:
            out.append((DEFAULT[6], hop))
    return out


def host_routes(ips: list[IPAddress]) -> list[RouteSpec]:
    """Routes on the host veth to the pod's addresses (IPv6 via the pod's link-local)."""
    return [(ipaddress.ip_network(ip), None if ip.version == 4 else naming.POD_LINK_LOCAL.ip)
            for ip in ips]
