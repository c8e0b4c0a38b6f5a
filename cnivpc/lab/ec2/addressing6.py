"""IPv6 address bookkeeping of a subnet and of an ENI, computed from moto's state.

Owns :class:`SubnetIpv6` (what is used in one subnet's /64, the address and /80 prefix
allocators, the checks for caller-chosen ones), :func:`subnet_ipv6_cidr`, :func:`eni_ipv6s`,
:func:`eni_ipv6_prefixes` and :func:`ipv6_slots_used`.

Why not moto's own: moto picks ENI IPv6 addresses with ``random_private_ip`` inside the subnet's
block with no check against other ENIs or AWS's reserved addresses, never checks a caller-chosen
address (any string is stored), and ignores ``Ipv6Prefix*`` entirely. Here the truth is "every
IPv6 address of every ENI in the subnet, plus every /80 prefix an ENI holds", recomputed per call.

AWS picks IPv6 addresses and /80 prefixes at random inside the subnet's /64 (they look like
``2600:1f14:abc:de01:8f3c::/80``); so does the lab, never handing out the subnet's first four or
last address (AWS reserves them in every subnet CIDR [inf for IPv6: the IPv4 rule, applied to the
/64]). A prefix is an aligned /80 holding no address or prefix already in use and none of the
reserved addresses.

The IPv6 slot budget: an ENI's IPv6 addresses plus its /80 prefixes count against
``Ipv6AddressesPerInterface`` of the attached type, as IPv4 prefixes count against the IPv4 slots
[inf: the IPv4 rule of prefix delegation, applied to IPv6].

Prefixes live on moto's ENI object as ``ipv6_prefixes`` (a list of ``{"Ipv6Prefix": "..."}``, the
shape moto's serializer renders as ``ipv6PrefixSet``). Stdlib plus duck-typed moto objects (no
moto import).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable
from typing import Any

from . import errors

PREFIX6_LEN = 80  # the only IPv6 prefix length EC2 delegates
RESERVED6_LOW = 4  # the first four addresses of the subnet's block ...
# ... and its last one.

Addr6 = ipaddress.IPv6Address
Net6 = ipaddress.IPv6Network


def subnet_ipv6_cidr(subnet: Any) -> str | None:
    """The subnet's associated IPv6 CIDR (EC2 allows one per subnet), else None."""
    for assoc in list(getattr(subnet, "ipv6_cidr_block_associations", {}).values()):
        state = assoc.get("ipv6CidrBlockState") or {}
        if isinstance(state, dict) and state.get("State") == "associated":
            return str(assoc.get("ipv6CidrBlock"))
    return None


def vpc_ipv6_cidrs(vpc: Any) -> list[str]:
    """The VPC's associated IPv6 CIDRs (the Amazon-provided /56)."""
    out: list[str] = []
    for assoc in vpc.get_cidr_block_association_set(ipv6=True):
        if assoc.get("cidr_block_state", {}).get("state") == "associated":
            out.append(str(assoc["cidr_block"]))
    return out


def eni_ipv6s(eni: Any) -> list[str]:
    """The IPv6 addresses of a moto ENI, in assignment order (prefixes not included)."""
    out: list[str] = []
    for raw in list(getattr(eni, "ipv6_addresses", None) or []):
        value = raw.get("Ipv6Address") if isinstance(raw, dict) else raw
        if value and str(value) not in out:
            out.append(str(value))
    return out


def eni_ipv6_prefixes(eni: Any) -> list[str]:
    """The IPv6 /80 prefixes delegated to a moto ENI, in assignment order."""
    out: list[str] = []
    for item in list(getattr(eni, "ipv6_prefixes", None) or []):
        prefix = item.get("Ipv6Prefix") if isinstance(item, dict) else str(item)
        if prefix and prefix not in out:
            out.append(str(prefix))
    return out


def set_eni_ipv6s(eni: Any, addresses: Iterable[str]) -> None:
    eni.ipv6_addresses = list(addresses)


def set_eni_ipv6_prefixes(eni: Any, prefixes: Iterable[str]) -> None:
    eni.ipv6_prefixes = [{"Ipv6Prefix": p} for p in prefixes]


def ipv6_slots_used(eni: Any) -> int:
    """Per-ENI IPv6 slots in use: one per address and one per /80 prefix."""
    return len(eni_ipv6s(eni)) + len(eni_ipv6_prefixes(eni))


class SubnetIpv6:
    """One subnet's IPv6 block as the lab sees it right now (``NoIpv6`` if it has none)."""

    def __init__(self, backend: Any, subnet: Any) -> None:
        cidr = subnet_ipv6_cidr(subnet)
        if cidr is None:
            raise errors.subnet_without_ipv6(subnet.id)
        self.subnet = subnet
        self.network = Net6(cidr)
        self.addresses: set[Addr6] = set()
        self.prefixes: set[Net6] = set()
        for eni in list(backend.enis.values()):
            if eni.subnet is not None and eni.subnet.id == subnet.id:
                self.addresses.update(Addr6(a) for a in eni_ipv6s(eni))
                self.prefixes.update(Net6(p) for p in eni_ipv6_prefixes(eni))

    def reserved(self, addr: Addr6) -> bool:
        offset = int(addr) - int(self.network.network_address)
        return offset < RESERVED6_LOW or addr == self.network.broadcast_address

    def _used(self, addr: Addr6) -> bool:
        return addr in self.addresses or any(addr in p for p in self.prefixes)

    def _block_free(self, block: Net6) -> bool:
        if block in self.prefixes:
            return False
        if any(a in block for a in self.addresses):
            return False
        first, last = block.network_address, block.broadcast_address
        return not (self.reserved(first) or self.reserved(last))

    # -- addresses ---------------------------------------------------------------------------
    def allocate(self, count: int) -> list[str]:
        """``count`` free random addresses of the /64; marks them used in this view."""
        base, size = int(self.network.network_address), self.network.num_addresses
        picked: list[str] = []
        while len(picked) < count:
            addr = Addr6(base + secrets.randbelow(size))
            if self.reserved(addr) or self._used(addr):
                continue
            self.addresses.add(addr)
            picked.append(str(addr))
        return picked

    def check_explicit(self, addresses: Iterable[str]) -> list[str]:
        """Validate caller-chosen addresses (in the /64, not reserved, free); canonical forms."""
        out: list[str] = []
        for raw in addresses:
            try:
                addr = Addr6(raw)
            except ValueError:
                raise errors.ipv6_address_malformed(raw) from None
            if addr not in self.network:
                raise errors.address_not_in_subnet(raw, self.subnet.id)
            if self.reserved(addr):
                raise errors.address_reserved(raw)
            if self._used(addr) or str(addr) in out:
                raise errors.address_in_use()
            out.append(str(addr))
        for value in out:
            self.addresses.add(Addr6(value))
        return out

    # -- /80 prefixes --------------------------------------------------------------------------
    def allocate_prefixes(self, count: int) -> list[str]:
        """``count`` free random aligned /80s of the /64; marks them used in this view."""
        blocks = 1 << (PREFIX6_LEN - self.network.prefixlen)
        step = 1 << (128 - PREFIX6_LEN)
        base = int(self.network.network_address)
        picked: list[str] = []
        tries = 0
        while len(picked) < count:
            tries += 1
            if tries > 64 * (count + 1):  # a /64 has 65536 of them: only a full subnet lands here
                raise errors.insufficient_cidr_blocks()
            block = Net6((base + secrets.randbelow(blocks) * step, PREFIX6_LEN))
            if not self._block_free(block):
                continue
            self.prefixes.add(block)
            picked.append(str(block))
        return picked

    def check_explicit_prefixes(self, prefixes: Iterable[str]) -> list[str]:
        """Validate caller-chosen prefixes: proper /80 networks in the /64, wholly free."""
        out: list[str] = []
        for raw in prefixes:
            try:
                block = Net6(raw, strict=True)
            except ValueError:
                raise errors.ipv6_prefix_malformed(raw) from None
            if block.prefixlen != PREFIX6_LEN:
                raise errors.ipv6_prefix_malformed(raw)
            if not block.subnet_of(self.network):
                raise errors.prefix_not_in_subnet(raw, self.subnet.id)
            if self.reserved(block.network_address) or self.reserved(block.broadcast_address):
                raise errors.prefix_reserved(raw)
            if not self._block_free(block) or str(block) in out:
                raise errors.prefix_in_use(raw)
            out.append(str(block))
        for value in out:
            self.prefixes.add(Net6(value))
        return out
