"""Links: look up, create veth pairs, set state/alias, delete, and read addresses. Every
function takes an ``Rtnl`` (from ``netns.iproute``) so the caller decides which netns it
acts in.

Imports nothing of cnivpc but ``net.errors``, ``net._nl`` and ``net.rtnl`` (pyroute2 only
through them).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, NamedTuple

from . import _nl
from .errors import LinkExists, LinkNotFound
from .rtnl import Rtnl

IFF_UP = 0x1
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class Link(NamedTuple):
    """What we need to know about one link."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, never called on a Link
    name: str
    kind: str  # "veth", "ipvlan", ... ("" for kind-less devices such as a physical NIC)
    mac: str
    mtu: int
    up: bool
    alias: str  # IFLA_IFALIAS, "" when unset
    peer_index: int  # IFLA_LINK: for a veth, the peer's ifindex (in the peer's netns)

    @classmethod
    def from_msg(cls, msg: Any) -> Link:
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
        return cls(index=int(msg["index"]), name=str(msg.get("IFLA_IFNAME")), kind=str(kind),
                   mac=str(msg.get("IFLA_ADDRESS") or ""), mtu=int(msg.get("IFLA_MTU") or 0),
                   up=bool(msg["flags"] & IFF_UP), alias=str(msg.get("IFLA_IFALIAS") or ""),
                   peer_index=int(msg.get("IFLA_LINK") or 0))


def list_links(ipr: Rtnl) -> list[Link]:
    return [Link.from_msg(m) for m in _nl.dump("list links", ipr.link, "dump")]


def find(ipr: Rtnl, name: str) -> Link | None:
    """The link called ``name``, or None."""
    try:
        msgs = _nl.call(f"get link {name}", ipr.link, "get", ifname=name)
    except LinkNotFound:
        return None
    return Link.from_msg(msgs[0]) if msgs else None


def get(ipr: Rtnl, name: str) -> Link:
    """The link called ``name``; LinkNotFound names it otherwise."""
    link = find(ipr, name)
    if link is None:
        raise LinkNotFound(f"link {name} not found")
    return link


def by_index(ipr: Rtnl, index: int) -> Link | None:
    try:
        msgs = _nl.call(f"get link #{index}", ipr.link, "get", index=index)
    except LinkNotFound:
        return None
    return Link.from_msg(msgs[0]) if msgs else None


def create_veth(ipr: Rtnl, name: str, peer_name: str, peer_netns_fd: int, mtu: int) -> None:
    """Create veth ``name`` in ``ipr``'s netns with its peer ``peer_name`` created directly
    in the netns open at ``peer_netns_fd``.

    One RTM_NEWLINK places both ends, so neither end ever exists under a temporary name or
    in the wrong namespace (no create-then-move step that could fail half way, and a name
    clash in either namespace is reported by the kernel as EEXIST before anything exists).
    """
    _nl.call(f"create veth link {name} (peer {peer_name})", ipr.link, "add",
             exists=LinkExists, ifname=name, kind="veth", mtu=mtu,
             peer={"ifname": peer_name, "mtu": mtu, "net_ns_fd": peer_netns_fd})


def set_up(ipr: Rtnl, index: int) -> None:
    _nl.call(f"set link #{index} up", ipr.link, "set", index=index, state="up")


def set_alias(ipr: Rtnl, index: int, alias: str) -> None:
    _nl.call(f"set alias of link #{index}", ipr.link, "set", index=index, ifalias=alias)


def delete(ipr: Rtnl, name: str) -> bool:
    """Delete link ``name``; False if there was none (DEL is idempotent)."""
    link = find(ipr, name)
    if link is None:
        return False
    try:
        _nl.call(f"delete link {name}", ipr.link, "del", index=link.index)
    except LinkNotFound:
        return False  # gone in between: someone else (the netns teardown) won
    return True


def add_address(ipr: Rtnl, index: int, address: IPInterface, nodad: bool = False) -> None:
    """Add ``address`` to link ``index``; ``nodad`` skips IPv6 duplicate address detection
    (the address is usable at once instead of "tentative" for about a second)."""
    _nl.call(f"add address {address} to link #{index}", ipr.addr, "add", index=index,
             address=address.ip, prefixlen=address.network.prefixlen,
             flags=IFA_F_NODAD if nodad else 0)


def addresses(ipr: Rtnl, index: int) -> list[IPInterface]:
    """The link's addresses: IPv4 first, primaries before secondaries, then IPv6, each in the
    kernel's order (so the first IPv4 is the interface's primary address)."""
    msgs = _nl.dump(f"list addresses of link #{index}", ipr.addr, "dump")  # all links
    found: list[tuple[int, int, IPInterface]] = []
    for pos, msg in enumerate(msgs):
        if int(msg["index"]) != index:
            continue
        family = int(msg["family"])
        addr = msg.get("IFA_ADDRESS") if family == socket.AF_INET6 else (
            msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS"))
        if not addr:
            continue
        flags = int(msg.get("IFA_FLAGS") or msg["flags"])
        rank = (0 if family == socket.AF_INET else 2) + (1 if flags & IFA_F_SECONDARY else 0)
        found.append((rank, pos, ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}")))
    return [iface for _, _, iface in sorted(found, key=lambda t: (t[0], t[1]))]
