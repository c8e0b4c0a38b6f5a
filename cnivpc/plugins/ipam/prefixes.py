"""IPv4 prefix delegation's arithmetic: EC2 delegates /28 prefixes (16 addresses) to an ENI,
one per IPv4 slot; every address of a prefix is usable by a pod (EC2 only delegates a /28 that
is wholly free in the subnet, so none is the subnet's network, router, DNS, reserved or
broadcast address, nor any ENI's primary IP).

Imports only the stdlib.
"""

from __future__ import annotations

import ipaddress

PREFIX_SIZE = 16  # addresses in a /28, the only IPv4 prefix size EC2 delegates to an ENI


def addresses(prefix: str) -> list[str]:
    """The 16 addresses of ``prefix`` ("10.0.1.16/28"), in order."""
    net = ipaddress.IPv4Network(prefix)
    return [str(net.network_address + i) for i in range(net.num_addresses)]


def by_address(prefixes: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Each address of ``prefixes`` to its prefix."""
    return {ip: p for p in prefixes for ip in addresses(p)}
