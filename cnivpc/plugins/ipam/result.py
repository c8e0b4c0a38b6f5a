"""The IPAM result for one allocation: the ENI's link as the only interface (the ipvlan plugin's
master), the IP with its subnet's prefix length, the subnet gateway (network + 1, AWS's
router), a route via it for every VPC CIDR (secondary ones too), peered VPC CIDRs and
``routeToCidrs``, and the VPC resolver (primary CIDR base + 2) as DNS. An IPv6-only
attachment's result (``build_v6``): its IPv6 with the default route via the VPC router, and its
node-local egress IPv4 with no route at all (cnivpc-ptp routes IPv4 through the node).

Pure: no I/O. Imports the wire models (``cni.models``, compiled: no pydantic).
"""

from __future__ import annotations

import ipaddress

from ...cni.models import DNS, Interface, IPConfig, Result, Route
from .store import Allocation, EniRecord, V6Lease


def gateway_of(subnet_cidr: str) -> str:
    return str(ipaddress.ip_network(subnet_cidr, strict=False).network_address + 1)


def dns_of(vpc_cidrs: tuple[str, ...]) -> list[str]:
    if not vpc_cidrs:
        return []
    return [str(ipaddress.ip_network(vpc_cidrs[0], strict=False).network_address + 2)]


# The VPC router's IPv6 address on every link (the subnet /64 is not on-link for an address
# EC2 delivers to one ENI, so the next hop is the router's link-local) [inf: AWS's VPC router
# answers IPv6 at a link-local address and at the subnet's base + 1].
ROUTER_IPV6 = "fe80::1"


def build(alloc: Allocation, eni: EniRecord, extra_cidrs: list[str]) -> Result:
    prefix = ipaddress.ip_network(eni.subnet_cidr, strict=False).prefixlen
    gateway = gateway_of(eni.subnet_cidr)
    destinations: list[str] = []
    for cidr in [*eni.vpc_cidrs, *extra_cidrs]:
        net = str(ipaddress.ip_network(cidr, strict=False))
        if net not in destinations:  # a peer or routeToCidrs entry may repeat a VPC CIDR
            destinations.append(net)
    ips = [IPConfig(address=f"{alloc.ip}/{prefix}", gateway=gateway, interface=0)]
    routes = [Route(dst=dst, gw=gateway) for dst in destinations]
    if alloc.ipv6:
        # Dual-stack: the pod's own IPv6, VPC and internet alike, over the ENI (no NAT: the
        # VPC's IPv6 is public, the egress-only gateway keeps inbound out).
        ips.append(IPConfig(address=f"{alloc.ipv6}/128", gateway=ROUTER_IPV6, interface=0))
        routes.append(Route(dst="::/0", gw=ROUTER_IPV6))
    return Result(
        interfaces=[Interface(name=eni.link)],
        ips=ips,
        routes=routes,
        dns=DNS(nameservers=dns_of(eni.vpc_cidrs)),
    )


def build_v6(lease: V6Lease, eni: EniRecord) -> Result:
    """An IPv6-only attachment: its IPv6 /128 and ``::/0`` via the VPC router over the ENI; its
    egress IPv4 as a /32 with no gateway and no route (ipvlan puts it on the pod's interface,
    cnivpc-ptp sends IPv4 over the veth to the node, which masquerades it); the VPC resolver
    stays the DNS server (reached over IPv4 through the node)."""
    ips = [IPConfig(address=f"{lease.ipv6}/128", gateway=ROUTER_IPV6, interface=0)]
    if lease.egress_ip:
        ips.append(IPConfig(address=f"{lease.egress_ip}/32", interface=0))
    return Result(interfaces=[Interface(name=eni.link)], ips=ips,
                  routes=[Route(dst="::/0", gw=ROUTER_IPV6)],
                  dns=DNS(nameservers=dns_of(eni.vpc_cidrs)))
