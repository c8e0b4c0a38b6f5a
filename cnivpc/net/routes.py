"""Routes and policy-routing rules: add, list, delete, flush a table, and the set of table
IDs in use. Functions take an ``Rtnl`` (from ``netns.iproute``), so the caller picks the
netns.

Imports nothing of cnivpc but ``net.errors``, ``net._nl`` and ``net.rtnl`` (pyroute2 only
through them).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any, NamedTuple

from . import _nl
from .errors import LinkNotFound, NetlinkFailure
from .rtnl import Rtnl

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RT_TABLE_MAIN = 254
# Tables the kernel reserves: unspec, default, main, local.
RESERVED_TABLES = frozenset({0, 253, 254, 255})
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
FAMILIES = (socket.AF_INET, socket.AF_INET6)
_ESRCH = 3


def af(version: int) -> int:
    """4 -> AF_INET, 6 -> AF_INET6."""
    return socket.AF_INET if version == 4 else socket.AF_INET6


def family_of(net: IPNetwork | IPAddress) -> int:
    return af(net.version)


def host_network(ip: IPAddress) -> IPNetwork:
    """The /32 (or /128) network of one address."""
    return ipaddress.ip_network(ip)


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class Route(NamedTuple):
    dst: IPNetwork
    oif: int
    gateway: IPAddress | None = None
    table: int = RT_TABLE_MAIN
    scope: int = SCOPE_UNIVERSE

    def __str__(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"{self.dst}{via} dev #{self.oif} table {self.table}"

    @classmethod
    def from_msg(cls, msg: Any) -> Route:
        family = int(msg["family"])
        dst = msg.get("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
        gw = msg.get("RTA_GATEWAY")
        return cls(dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False),
                   oif=int(msg.get("RTA_OIF") or 0),
                   gateway=ipaddress.ip_address(gw) if gw else None,
                   table=int(msg.get("RTA_TABLE") or msg["table"]), scope=int(msg["scope"]))


class Rule(NamedTuple):
    family: int
    priority: int
    table: int
    iifname: str = ""
    fwmark: int | None = None

    def __str__(self) -> str:
        sel = f"iif {self.iifname} " if self.iifname else ""
        sel += f"fwmark {self.fwmark:#x} " if self.fwmark is not None else ""
        v = "-6 " if self.family == socket.AF_INET6 else ""
        return f"{v}{sel}lookup {self.table} priority {self.priority}"

    @classmethod
    def from_msg(cls, msg: Any) -> Rule:
        fwmark = msg.get("FRA_FWMARK")
        return cls(family=int(msg["family"]), priority=int(msg.get("FRA_PRIORITY") or 0),
                   table=int(msg.get("FRA_TABLE") or msg["table"]),
                   iifname=str(msg.get("FRA_IIFNAME") or ""),
                   fwmark=int(fwmark) if fwmark is not None else None)


def add(ipr: Rtnl, route: Route) -> None:
    """Add ``route``; RouteExists if an equal one is there (never replaces silently)."""
    _nl.call(f"add route {route}", ipr.route, "add", dst=route.dst, oif=route.oif,
             table=route.table, scope=route.scope, gateway=route.gateway)


def list_routes(ipr: Rtnl, family: int, table: int | None = None) -> list[Route]:
    """Routes of ``family`` in ``table`` (every table when None)."""
    msgs = _nl.dump("list routes", ipr.route, "dump", family=family)  # every table
    routes = [Route.from_msg(m) for m in msgs]
    return routes if table is None else [r for r in routes if r.table == table]


def delete(ipr: Rtnl, route: Route) -> bool:
    """Delete ``route``; False if it was not there."""
    try:
        _nl.call(f"delete route {route}", ipr.route, "del", dst=route.dst, table=route.table,
                 oif=route.oif, gateway=route.gateway)
    except LinkNotFound:
        return False
    except NetlinkFailure as exc:
        if exc.errno == _ESRCH:
            return False
        raise
    return True


def flush_table(ipr: Rtnl, table: int) -> int:
    """Delete every route of ``table`` (both families); how many were deleted."""
    if table in RESERVED_TABLES:
        raise ValueError(f"refusing to flush reserved table {table}")
    return sum(delete(ipr, r) for f in FAMILIES for r in list_routes(ipr, f, table))


def list_rules(ipr: Rtnl, families: Iterable[int] = FAMILIES) -> list[Rule]:
    return [Rule.from_msg(m) for f in families
            for m in _nl.dump("list rules", ipr.rule, "dump", family=f)]


def _rule_spec(rule: Rule) -> dict[str, Any]:
    return {"family": rule.family, "table": rule.table, "priority": rule.priority,
            "iifname": rule.iifname, "fwmark": rule.fwmark}


def add_rule(ipr: Rtnl, rule: Rule) -> None:
    _nl.call(f"add rule {rule}", ipr.rule, "add", **_rule_spec(rule))


def delete_rule(ipr: Rtnl, rule: Rule) -> bool:
    """Delete one rule equal to ``rule``; False if there was none."""
    try:
        _nl.call(f"delete rule {rule}", ipr.rule, "del", **_rule_spec(rule))
    except NetlinkFailure as exc:
        if exc.errno in (_ESRCH, 2):  # ENOENT: no such rule
            return False
        raise
    return True


def tables_in_use(ipr: Rtnl) -> set[int]:
    """Every table ID a rule points at or a route lives in, both families."""
    used = {r.table for r in list_rules(ipr)}
    for family in FAMILIES:
        used.update(r.table for r in list_routes(ipr, family))
    return used
