"""ipvlan slaves: create one on an ENI's link directly inside a pod's netns, rename it, give it
addresses and routes, and read back what CHECK needs (its master and mode).

Kernel quirks handled here:
- The slave is created *in* the target netns (IFLA_NET_NS_FD on the create request) under a
  temporary name and renamed there: creating it as ``eth0`` in the host netns would clash with
  the host's own eth0, and a name clash inside the pod must not leave a half-made link.
- Every slave shares its master's MAC, so the kernel would give all pods on one ENI the same
  EUI-64 IPv6 link-local address and report them as duplicates (lyft issue #70). We set
  ``addr_gen_mode`` before the link comes up: 1 (none) for IPv4-only pods, 3 (random) when the
  pod has IPv6 addresses and needs a link-local address.

Imports nothing of cnivpc but ``net.*``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

from . import _nl, links, sysctl
from .errors import LinkExists, NetlinkFailure, SysctlError
from .rtnl import Rtnl

MODES = {"l2": 0, "l3": 1, "l3s": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
ADDR_GEN_NONE = "1"
ADDR_GEN_RANDOM = "3"
IFA_F_NODAD = 0x02  # linux/if_addr.h


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class Slave(NamedTuple):
    link: links.Link
    mode: str
    master_index: int


def create(ipr_host: Rtnl, master_index: int, netns_fd: int, name: str, mode: str,
           mtu: int) -> None:
    """Create an ipvlan slave of ``master_index`` named ``name`` inside the netns open at
    ``netns_fd`` (``ipr_host`` acts in the master's netns)."""
    spec: dict[str, Any] = {"ifname": name, "kind": "ipvlan", "link": master_index,
                            "ipvlan_mode": MODES[mode], "net_ns_fd": netns_fd}
    if mtu:
        spec["mtu"] = mtu
    _nl.call(f"create ipvlan {name}", ipr_host.link, "add", exists=LinkExists, **spec)


def rename(ipr: Rtnl, index: int, name: str) -> None:
    _nl.call(f"rename link #{index} to {name}", ipr.link, "set", exists=LinkExists,
             index=index, ifname=name)


def set_addr_gen_mode(ifname: str, has_ipv6: bool, netns_path: str) -> None:
    """Before link up: no EUI-64 link-local from the shared MAC (see the module docstring)."""
    mode = ADDR_GEN_RANDOM if has_ipv6 else ADDR_GEN_NONE
    try:
        sysctl.write(f"net/ipv6/conf/{ifname}/addr_gen_mode", mode, netns_path)
    except SysctlError as exc:
        if exc.errno != 2:  # ENOENT: IPv6 disabled in this kernel/netns, nothing to generate
            raise


def add_address(ipr: Rtnl, index: int, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
                ) -> None:
    broadcast = address.network.broadcast_address if address.version == 4 else None
    # IPv6 without duplicate address detection: EC2 assigned the address to this ENI alone,
    # and DAD would keep it tentative (unusable) for the pod's first second.
    flags = 0 if address.version == 4 else IFA_F_NODAD
    _nl.call(f"add address {address} to link #{index}", ipr.addr, "add", index=index,
             address=address.ip, prefixlen=address.network.prefixlen, broadcast=broadcast,
             flags=flags)


def slave_info(ipr: Rtnl, name: str) -> Slave | None:
    """The ipvlan slave called ``name`` with its mode and master ifindex, or None when there is
    no such link or it is not an ipvlan."""
    try:
        msgs = _nl.call(f"get link {name}", ipr.link, "get", ifname=name)
    except NetlinkFailure:
        return None
    if not msgs:
        return None
    msg = msgs[0]
    link = links.Link.from_msg(msg)
    if link.kind != "ipvlan":
        return None
    mode = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_IPVLAN_MODE")
    return Slave(link=link, mode=MODE_NAMES.get(int(mode or 0), "l2"),
                 master_index=link.peer_index)
