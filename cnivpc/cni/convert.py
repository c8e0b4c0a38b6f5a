"""Result conversion between spec versions, in one place, on plain JSON dicts.

Everything inside cnivpc works on the current (1.x) shape. ``to_current`` lifts a result of any
supported version into it (used for ``prevResult``), ``from_current`` lowers it into the version
a request asked for (used for every printed result). Stdlib only.

Rules (spec and reference library):
- 1.x -> 0.3/0.4: add ``ips[].version`` from the address family; drop ``interfaces[].mtu``,
  ``socketPath`` and ``pciID`` (1.1 only).
- 1.0.0 <-> 1.1.0: only the version string (and the 1.1-only interface fields) change.
- 0.3/0.4 -> 1.x: drop ``ips[].version``.
- current -> 0.1/0.2: the first IPv4 and first IPv6 become ``ip4``/``ip6``; routes go to the
  family of their destination; at least one IP is required.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .errors import DecodingFailure, InternalError
from .versions import at_least

JSON = dict[str, Any]
_INTERFACE_1_1_ONLY = ("mtu", "socketPath", "pciID")


def _family(cidr_or_ip: str) -> int:
    return ipaddress.ip_interface(cidr_or_ip).version


def to_current(result: JSON, version: str) -> JSON:
    """Lift a result in ``version`` to the 1.x shape (a new dict; the input is not changed)."""
    if not isinstance(result, dict):
        raise DecodingFailure("prevResult is not a JSON object")
    try:
        if at_least(version, "1.0.0"):
            out = dict(result)
        elif at_least(version, "0.3.0"):
            out = dict(result)
            out["ips"] = [{k: v for k, v in ip.items() if k != "version"}
                          for ip in result.get("ips") or []]
        else:
            out = _from_legacy(result)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DecodingFailure(f"cannot read a {version} result", repr(exc)) from exc
    out.pop("cniVersion", None)
    return out


def from_current(result: JSON, version: str) -> JSON:
    """Lower a 1.x result into ``version``'s shape, with ``cniVersion`` set to it."""
    if at_least(version, "1.1.0"):
        out = dict(result)
    elif at_least(version, "1.0.0"):
        out = _without_1_1_interface_fields(result)
    elif at_least(version, "0.3.0"):
        out = _without_1_1_interface_fields(result)
        out["ips"] = [{"version": str(_family(ip["address"])), **ip}
                      for ip in result.get("ips", [])]
    else:
        out = _to_legacy(result)
    out = {"cniVersion": version, **{k: v for k, v in out.items() if k != "cniVersion"}}
    return out


def _without_1_1_interface_fields(result: JSON) -> JSON:
    out = dict(result)
    if "interfaces" in out:
        out["interfaces"] = [{k: v for k, v in iface.items() if k not in _INTERFACE_1_1_ONLY}
                             for iface in out["interfaces"]]
    return out


def _from_legacy(result: JSON) -> JSON:
    ips: list[JSON] = []
    routes: list[JSON] = []
    for key in ("ip4", "ip6"):
        block = result.get(key)
        if not block:
            continue
        ip: JSON = {"address": block["ip"]}
        if block.get("gateway"):
            ip["gateway"] = block["gateway"]
        ips.append(ip)
        routes.extend(block.get("routes") or [])
    out: JSON = {"ips": ips}
    if routes:
        out["routes"] = routes
    if result.get("dns"):
        out["dns"] = result["dns"]
    return out


def _to_legacy(result: JSON) -> JSON:
    blocks: dict[int, JSON] = {}
    for ip in result.get("ips", []):
        fam = _family(ip["address"])
        if fam not in blocks:
            block: JSON = {"ip": ip["address"]}
            if ip.get("gateway"):
                block["gateway"] = ip["gateway"]
            blocks[fam] = block
    if not blocks:
        raise InternalError("cannot convert result to a 0.2.0 result: it has no IP address")
    for route in result.get("routes", []):
        fam = _family(route["dst"])
        if fam in blocks:
            legacy_route = {k: v for k, v in route.items() if k in ("dst", "gw")}
            blocks[fam].setdefault("routes", []).append(legacy_route)
    out: JSON = {f"ip{fam}": block for fam, block in sorted(blocks.items())}
    if result.get("dns"):
        out["dns"] = result["dns"]
    return out
