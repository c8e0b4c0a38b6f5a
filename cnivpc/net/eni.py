"""ENI host links: the kernel netdev that carries an ENI, found by its MAC (the name depends
on the distribution: eth1, ens6, enp0s6...), waited for after an attach, brought up with the
node's MTU. No addresses are put on it: pods own its IPs through ipvlan slaves.

Imports nothing of cnivpc but ``net.*``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import _nl, links
from .errors import LinkNotFound
from .netns import iproute

# The ENI's MTU copies the boot ENI's only within EC2's range (jumbo frames stop at 9001).
MTU_RANGE = (1000, 9001)


def link_by_mac(mac: str) -> links.Link | None:
    """The link in the current netns whose hardware address is ``mac`` (not a ipvlan slave or
    other upper device sharing it: those have a kind, an ENI's netdev has none)."""
    return links_by_mac().get(mac.lower())


def links_by_mac() -> dict[str, links.Link]:
    """Every link that can carry an ENI, by lower-case MAC, from one dump."""
    found: dict[str, links.Link] = {}
    with iproute() as ipr:
        for link in links.list_links(ipr):
            if link.kind in ("", "veth") and link.mac:
                found.setdefault(link.mac.lower(), link)
    return found


def wait_for_link(mac: str, deadline: float, *, interval: float = 0.1,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> links.Link:
    """Poll until the ENI's netdev shows up (udev and the driver take a moment after EC2 says
    attached), or the monotonic ``deadline`` passes (LinkNotFound)."""
    while True:
        link = link_by_mac(mac)
        if link is not None:
            return link
        if clock() >= deadline:
            raise LinkNotFound(f"no network interface with MAC {mac} appeared in time",
                               "EC2 reports the ENI attached but the kernel has no such link")
        sleep(interval)


def bring_up(link: links.Link, mtu: int = 0) -> None:
    """Set the ENI link up, with ``mtu`` when it is within EC2's range and differs."""
    with iproute() as ipr:
        if mtu and MTU_RANGE[0] <= mtu <= MTU_RANGE[1] and mtu != link.mtu:
            _nl.call(f"set mtu of {link.name}", ipr.link, "set", index=link.index, mtu=mtu)
        if not link.up:
            links.set_up(ipr, link.index)


def mtu_of(name: str) -> int:
    with iproute() as ipr:
        return links.get(ipr, name).mtu
