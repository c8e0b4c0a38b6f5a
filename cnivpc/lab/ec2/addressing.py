"""IPv4 address bookkeeping of a subnet and of an ENI, computed from moto's state.

Owns :class:`SubnetIpv4` (what is used / free / reserved in one subnet, and the allocator) and
:func:`ipv4_slots_used` (how many of an ENI's per-interface IPv4 slots are taken).

Why not moto's own numbers: moto allocates ENI addresses with ``random_private_ip`` (may return the
network, reserved or broadcast address, or one already in use) and launches from a separate
sequential generator that ignores ENI addresses; neither checks anything. Here the truth is "every
private IPv4 of every ENI in the subnet", recomputed per call (cheap at lab sizes).

AWS reserves 5 addresses per subnet: network, +1 (router), +2 (DNS), +3 (future) and broadcast.

SEAM (later issue: prefix delegation and IPv6). An ENI's IPv4 slots are "primary + secondary IPs +
IPv4 /28 prefixes" (aws-reference.md §3.3/3.4); :func:`ipv4_slots_used` is the one place that sum
lives, and ``SubnetIpv4.used`` is where a prefix's 16 addresses would be added. IPv6 gets a sibling
class (``SubnetIpv6``) with the /80-prefix and per-ENI IPv6 limit; nothing IPv4-specific needs to
change for it. Stdlib plus duck-typed moto objects (no moto import).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from . import errors

RESERVED_LOW = 4  # network, router, DNS, "future use"
RESERVED_TOTAL = 5  # ... plus broadcast


def eni_ipv4s(eni: Any) -> list[str]:
    """Every private IPv4 of a moto ENI, primary first."""
    out: list[str] = []
    for item in eni.private_ip_addresses:
        addr = item.get("PrivateIpAddress")
        if addr and addr not in out:
            if item.get("Primary"):
                out.insert(0, addr)
            else:
                out.append(addr)
    if eni.private_ip_address and eni.private_ip_address not in out:
        out.insert(0, eni.private_ip_address)
    return out


def ipv4_slots_used(eni: Any) -> int:
    """Per-ENI IPv4 slots in use: addresses (+ IPv4 prefixes once delegation exists)."""
    return len(eni_ipv4s(eni))


class SubnetIpv4:
    """One subnet's IPv4 space as the lab sees it right now."""

    def __init__(self, backend: Any, subnet: Any) -> None:
        self.subnet = subnet
        self.network = ipaddress.IPv4Network(subnet.cidr_block)
        self.owner: dict[ipaddress.IPv4Address, str] = {}
        for eni in list(backend.enis.values()):
            if eni.subnet is not None and eni.subnet.id == subnet.id:
                for addr in eni_ipv4s(eni):
                    self.owner[ipaddress.IPv4Address(addr)] = eni.id
        # Subnet CIDR reservations (CreateSubnetCidrReservation) are never auto-assigned.
        self.cidr_reserved = {
            ip
            for ip in getattr(subnet, "_reserved_ips", set())
            if isinstance(ip, ipaddress.IPv4Address)
        }

    # -- reserved / used ------------------------------------------------------------------------
    def aws_reserved(self, addr: ipaddress.IPv4Address) -> bool:
        offset = int(addr) - int(self.network.network_address)
        return offset < RESERVED_LOW or addr == self.network.broadcast_address

    @property
    def free_count(self) -> int:
        return (
            self.network.num_addresses
            - RESERVED_TOTAL
            - len(self.owner)
            - len(self.cidr_reserved - set(self.owner))
        )

    def _candidates(self) -> Iterator[ipaddress.IPv4Address]:
        first = int(self.network.network_address) + RESERVED_LOW
        last = int(self.network.broadcast_address) - 1
        for value in range(first, last + 1):
            addr = ipaddress.IPv4Address(value)
            if addr not in self.owner and addr not in self.cidr_reserved:
                yield addr

    def allocate(self, count: int) -> list[str]:
        """``count`` free addresses, lowest first; marks them used in this view. All or nothing."""
        picked: list[ipaddress.IPv4Address] = []
        for addr in self._candidates():
            if len(picked) == count:
                break
            picked.append(addr)
        if len(picked) < count:
            raise errors.insufficient_free_addresses()
        for addr in picked:
            self.owner[addr] = "(allocating)"
        return [str(a) for a in picked]

    def check_explicit(
        self, addresses: Iterable[str], *, eni_id: str | None, allow_reassignment: bool
    ) -> list[str]:
        """Validate caller-chosen addresses; returns those currently owned by *other* ENIs."""
        moved: list[str] = []
        seen: set[ipaddress.IPv4Address] = set()
        for raw in addresses:
            try:
                addr = ipaddress.IPv4Address(raw)
            except ValueError:
                raise errors.address_malformed(raw) from None
            if addr not in self.network:
                raise errors.address_not_in_subnet(raw, self.subnet.id)
            if self.aws_reserved(addr):
                raise errors.address_reserved(raw)
            if addr in seen:
                raise errors.address_in_use()
            seen.add(addr)
            owner = self.owner.get(addr)
            if owner is None:
                continue
            if owner == eni_id or not allow_reassignment:
                raise errors.address_in_use()
            moved.append(raw)
        return moved
