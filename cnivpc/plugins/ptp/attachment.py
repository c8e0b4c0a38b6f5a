"""One attachment (network, container ID, CNI_IFNAME) and the facts ADD, CHECK, DEL and GC
derive from it and from prevResult: its object names, the pod IPs, the per-pod table routes.
No I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ...cni.errors import InvalidConfig
from ...cni.types import Result
from . import naming

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Attachment:
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


def table_routes(prev: Result, ips: list[IPAddress]) -> list[tuple[IPNetwork, IPAddress]]:
    """(destination, via) for the per-pod table: every prevResult route, sorted by
    destination, via the pod's first IP of the same family (routes of a family the pod has no
    IP in are skipped)."""
    first = {v: next((ip for ip in ips if ip.version == v), None) for v in (4, 6)}
    out: list[tuple[IPNetwork, IPAddress]] = []
    for route in sorted(prev.routes, key=lambda r: r.dst):
        dst = ipaddress.ip_network(route.dst, strict=False)
        via = first[dst.version]
        if via is not None and (dst, via) not in out:
            out.append((dst, via))
    return out
