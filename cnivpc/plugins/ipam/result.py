"""The IPAM result for one allocation: the ENI's link as the only interface (the ipvlan plugin's
master), the IP with its subnet's prefix length, the subnet gateway (network + 1, AWS's
router), a route via it for every VPC CIDR (secondary ones too), peered VPC CIDRs and
``routeToCidrs``, and the VPC resolver (primary CIDR base + 2) as DNS.

Pure: no I/O. Imports the wire models (``cni.models``, compiled: no pydantic).
"""

from __future__ import annotations

import ipaddress

from ...cni.models import DNS, Interface, IPConfig, Result, Route
from .store import Allocation, EniRecord


def gateway_of(subnet_cidr: str) -> str:
    return str(ipaddress.ip_network(subnet_cidr, strict=False).network_address + 1)


def dns_of(vpc_cidrs: tuple[str, ...]) -> list[str]:
    if not vpc_cidrs:
        return []
    return [str(ipaddress.ip_network(vpc_cidrs[0], strict=False).network_address + 2)]


def build(alloc: Allocation, eni: EniRecord, extra_cidrs: list[str]) -> Result:
    prefix = ipaddress.ip_network(eni.subnet_cidr, strict=False).prefixlen
    gateway = gateway_of(eni.subnet_cidr)
    destinations: list[str] = []
    for cidr in [*eni.vpc_cidrs, *extra_cidrs]:
        net = str(ipaddress.ip_network(cidr, strict=False))
        if net not in destinations:  # a peer or routeToCidrs entry may repeat a VPC CIDR
            destinations.append(net)
    return Result(
        interfaces=[Interface(name=eni.link)],
        ips=[IPConfig(address=f"{alloc.ip}/{prefix}", gateway=gateway, interface=0)],
        routes=[Route(dst=dst, gw=gateway) for dst in destinations],
        dns=DNS(nameservers=dns_of(eni.vpc_cidrs)),
    )
