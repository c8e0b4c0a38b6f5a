"""IPv4 address bookkeeping of a subnet and of an ENI, computed from moto's state.

Owns :class:`SubnetIpv4` (what is used / free / reserved in one subnet, the address allocator
and the /28 prefix allocator), :func:`eni_ipv4s`, :func:`eni_prefixes` and
:func:`ipv4_slots_used` (how many of an ENI's per-interface IPv4 slots are taken).

Why not moto's own numbers: moto allocates ENI addresses with ``random_private_ip`` (may return the
network, reserved or broadcast address, or one already in use) and launches from a separate
sequential generator that ignores ENI addresses; neither checks anything. moto knows nothing of
IPv4 prefixes either. Here the truth is "every private IPv4 of every ENI in the subnet, plus every
address of every /28 prefix an ENI holds", recomputed per call (cheap at lab sizes).

AWS reserves 5 addresses per subnet: network, +1 (router), +2 (DNS), +3 (future) and broadcast.

Prefix delegation: an ENI's prefixes live on moto's ENI object as ``ipv4_prefixes`` (a list of
``{"Ipv4Prefix": "10.0.16.32/28"}``, the shape moto's serializer renders as ``ipv4PrefixSet`` in
DescribeNetworkInterfaces). A prefix is an aligned /28 whose 16 addresses are all free: none is
AWS-reserved, an ENI's IP or part of another prefix. Subnet CIDR reservations
(``CreateSubnetCidrReservation``) steer automatic picks: ``prefix`` ones are where automatic
prefixes go first, ``explicit`` ones are never handed out automatically (neither IPs nor
prefixes); caller-chosen addresses and prefixes may lie in either.

SEAM (IPv6): a sibling class (``SubnetIpv6``) with the /80-prefix and the per-ENI IPv6 limit;
nothing IPv4-specific needs to change for it. Stdlib plus duck-typed moto objects (no moto
import).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from . import errors

RESERVED_LOW = 4  # network, router, DNS, "future use"
RESERVED_TOTAL = 5  # ... plus broadcast
PREFIX_LEN = 28  # the only IPv4 prefix length EC2 delegates

Addr = ipaddress.IPv4Address
Net = ipaddress.IPv4Network


def eni_ipv4s(eni: Any) -> list[str]:
    """Every private IPv4 of a moto ENI, primary first (prefix addresses not included)."""
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


def eni_prefixes(eni: Any) -> list[str]:
    """The IPv4 /28 prefixes delegated to a moto ENI, in assignment order."""
    out: list[str] = []
    for item in list(getattr(eni, "ipv4_prefixes", None) or []):
        prefix = item.get("Ipv4Prefix") if isinstance(item, dict) else str(item)
        if prefix and prefix not in out:
            out.append(str(prefix))
    return out


def set_eni_prefixes(eni: Any, prefixes: Iterable[str]) -> None:
    """Replace the ENI's prefix list (the shape moto's serializer renders)."""
    eni.ipv4_prefixes = [{"Ipv4Prefix": p} for p in prefixes]


def ipv4_slots_used(eni: Any) -> int:
    """Per-ENI IPv4 slots in use: one per address (primary included) and one per /28 prefix."""
    return len(eni_ipv4s(eni)) + len(eni_prefixes(eni))


def _reservations(subnet: Any) -> list[tuple[Net, str]]:
    # Read moto's reservation objects, not ``subnet._reserved_ips``: moto never takes a deleted
    # reservation's addresses out of that set.
    out: list[tuple[Net, str]] = []
    for reservation in list(getattr(subnet, "_cidr_reservations", []) or []):
        cidr = reservation.cidr
        if isinstance(cidr, Net):
            out.append((cidr, str(reservation.reservation_type)))
    return out


class SubnetIpv4:
    """One subnet's IPv4 space as the lab sees it right now."""

    def __init__(self, backend: Any, subnet: Any) -> None:
        self.subnet = subnet
        self.network = Net(subnet.cidr_block)
        self.owner: dict[Addr, str] = {}  # address -> ENI id (IPs and prefix addresses)
        self.prefix_of: dict[Addr, str] = {}  # address -> the /28 prefix holding it
        for eni in list(backend.enis.values()):
            if eni.subnet is not None and eni.subnet.id == subnet.id:
                for raw in eni_ipv4s(eni):
                    self.owner[Addr(raw)] = eni.id
                for prefix in eni_prefixes(eni):
                    for member in Net(prefix):
                        self.owner[member] = eni.id
                        self.prefix_of[member] = prefix
        self.reservations = _reservations(subnet)
        # Subnet CIDR reservations (either type) are never auto-assigned as single addresses.
        self.cidr_reserved = {a for net, _kind in self.reservations for a in net}
        self.explicit_reserved = {
            a for net, kind in self.reservations if kind == "explicit" for a in net
        }

    # -- reserved / used ------------------------------------------------------------------------
    def aws_reserved(self, addr: Addr) -> bool:
        offset = int(addr) - int(self.network.network_address)
        return offset < RESERVED_LOW or addr == self.network.broadcast_address

    @property
    def free_count(self) -> int:
        """Addresses an automatic *single-address* assignment may still take."""
        return (
            self.network.num_addresses
            - RESERVED_TOTAL
            - len(self.owner)
            - len(self.cidr_reserved - set(self.owner))
        )

    @property
    def available_count(self) -> int:
        """DescribeSubnets' AvailableIpAddressCount: neither reserved by AWS, nor used by an IP
        or a prefix, nor held by a prefix-type reservation (as moto counts those)."""
        held = {a for net, kind in self.reservations if kind == "prefix" for a in net}
        taken = {a for a in set(self.owner) | held if not self.aws_reserved(a)}
        return self.network.num_addresses - RESERVED_TOTAL - len(taken)

    def _candidates(self) -> Iterator[Addr]:
        first = int(self.network.network_address) + RESERVED_LOW
        last = int(self.network.broadcast_address) - 1
        for value in range(first, last + 1):
            addr = Addr(value)
            if addr not in self.owner and addr not in self.cidr_reserved:
                yield addr

    def allocate(self, count: int) -> list[str]:
        """``count`` free addresses, lowest first; marks them used in this view. All or nothing."""
        picked: list[Addr] = []
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
        seen: set[Addr] = set()
        for raw in addresses:
            try:
                addr = Addr(raw)
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
            # An address inside a delegated prefix belongs to the whole /28: it cannot be moved
            # on its own, even with AllowReassignment [inf].
            if owner == eni_id or not allow_reassignment or addr in self.prefix_of:
                raise errors.address_in_use()
            moved.append(raw)
        return moved

    # -- /28 prefixes -----------------------------------------------------------------------------
    def _block_free(self, block: Net) -> bool:
        return not any(a in self.owner or self.aws_reserved(a) for a in block)

    def _blocks(self) -> Iterator[Net]:
        if self.network.prefixlen > PREFIX_LEN:
            return
        yield from self.network.subnets(new_prefix=PREFIX_LEN)

    def eligible_blocks(self) -> list[Net]:
        """The free aligned /28s an automatic prefix assignment may take, in the order it takes
        them: blocks inside prefix-type reservations first, then blocks touching no reservation
        (a block touching an explicit-type reservation, or only partly inside a prefix-type one,
        is never picked)."""
        prefix_nets = [net for net, kind in self.reservations if kind == "prefix"]
        reserved_nets = [net for net, _kind in self.reservations]
        inside: list[Net] = []
        outside: list[Net] = []
        for block in self._blocks():
            if not self._block_free(block):
                continue
            if any(block.subnet_of(net) for net in prefix_nets):
                inside.append(block)
            elif not any(block.overlaps(net) for net in reserved_nets):
                outside.append(block)
        return inside + outside

    def allocate_prefixes(self, count: int) -> list[str]:
        """``count`` free aligned /28s (see :meth:`eligible_blocks`); marks them used in this
        view. All or nothing: ``InsufficientCidrBlocks``, however many single addresses are
        free (fragmentation is the usual cause)."""
        picked = self.eligible_blocks()[:count]
        if len(picked) < count:
            raise errors.insufficient_cidr_blocks()
        for block in picked:
            self._take(block)
        return [str(b) for b in picked]

    def _take(self, block: Net) -> None:
        for addr in block:
            self.owner[addr] = "(allocating)"
            self.prefix_of[addr] = str(block)

    def check_explicit_prefixes(self, prefixes: Iterable[str], *, eni_id: str | None) -> None:
        """Validate caller-chosen prefixes: proper /28 networks in the subnet, wholly free."""
        seen: set[Net] = set()
        for raw in prefixes:
            try:
                block = Net(raw, strict=True)
            except ValueError:
                raise errors.prefix_malformed(raw) from None
            if block.prefixlen != PREFIX_LEN:
                raise errors.prefix_malformed(raw)
            if not block.subnet_of(self.network):
                raise errors.prefix_not_in_subnet(raw, self.subnet.id)
            if any(self.aws_reserved(a) for a in block):
                raise errors.prefix_reserved(raw)
            if block in seen or any(a in self.owner for a in block):
                raise errors.prefix_in_use(raw)
            seen.add(block)
        for block in seen:
            self._take(block)
