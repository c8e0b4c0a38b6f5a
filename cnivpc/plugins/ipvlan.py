"""The ipvlan plugin (``cnivpc-ipvlan``): the pod's VPC IP on an ipvlan slave (L2 by default)
of the ENI that holds it, so pod traffic to the VPC leaves through the ENI without the host
forwarding it.

Chained after ``cnivpc-ipam``: the master is the interface that ``prevResult.interfaces``
names for each IP (IPs on several ENIs get one slave each: ``CNI_IFNAME`` for the first
master, ``<ifname>.1``… for the others). Or delegated: an ``ipam`` section is run like the
reference plugin does (and its DEL/CHECK/STATUS/GC forwarded).

The result replaces ``interfaces`` with the pod's slave(s) and points ``ips[].interface`` at
them; routes and DNS of the IPAM are kept (the original dropped the DNS). ADD rolls back the
links it made; DEL deletes them when the netns still exists and succeeds otherwise.

Imports ``net/`` (pyroute2) and ``cni/``; never botocore.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING, Any

from ..cni import invoke, logs
from ..cni.env import validate_ifname
from ..cni.errors import CniError, InvalidConfig, PluginNotAvailable
from ..cni.models import DNS, Interface, IPConfig, Result
from ..cni.plugin import Plugin, Request
from ..net import ipvlan as slaves
from ..net import links, netns, routes
from ..net.errors import LinkNotFound, NetnsNotFound, NotANetns, RouteExists
from .digest import sha256_hex

log = logs.get("ipvlan")


def check_master(value: str | None) -> str | None:
    """``master`` (a check of ``IpvlanConf``, the model in ``plugins.ipvlan_model``)."""
    problem = validate_ifname(value) if value else None
    if problem:
        raise ValueError(f"invalid interface name {value!r}: {problem}")
    return value


def check_mode(value: str) -> str:
    """``mode`` (a check of ``IpvlanConf``)."""
    value = value or "l2"
    if value not in slaves.MODES:
        raise ValueError(f"unknown ipvlan mode {value!r}: use l2, l3 or l3s")
    return value


# The config, compiled from the pydantic model (``cni.compiled``): no pydantic in the process.
if TYPE_CHECKING:
    from .ipvlan_model import IpvlanConf
else:
    from ..cni.compiled import model
    from .schemas import MODELS

    IpvlanConf = model(MODELS, "cnivpc.plugins.ipvlan_model:IpvlanConf")


def _delegated(conf: IpvlanConf) -> str | None:
    kind = (conf.ipam or {}).get("type")
    return str(kind) if kind else None


def _ipam_config(req: Request[IpvlanConf]) -> dict[str, Any]:
    """The delegated plugin's stdin: our config with its ``ipam`` section as the top level,
    as the reference library builds it."""
    conf = dict(req.raw_config)
    ipam = dict(conf.get("ipam") or {})
    return {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"), **ipam,
            "ipam": ipam}


def _ip_source(req: Request[IpvlanConf]) -> Result:
    kind = _delegated(req.conf)
    if kind is None:
        if req.prev_result is None or not req.prev_result.ips:
            raise InvalidConfig("cnivpc-ipvlan needs IPs: chain it after cnivpc-ipam "
                                "(prevResult with ips) or give it an ipam section")
        return req.prev_result
    raw = invoke.delegate("ADD", kind, _ipam_config(req))
    version = str(req.raw_config.get("cniVersion") or "1.1.0")
    result = Result.from_version(raw or {}, version)
    if not result.ips:
        raise CniError(f"delegated IPAM {kind} returned no IP")
    return result


def _masters(conf: IpvlanConf, source: Result) -> list[tuple[str, list[IPConfig]]]:
    """Group the IPs by the master link that carries each (config ``master`` wins)."""
    groups: dict[str, list[IPConfig]] = {}
    for ip in source.ips:
        if conf.master:
            master = conf.master
        elif ip.interface is not None and 0 <= ip.interface < len(source.interfaces):
            master = source.interfaces[ip.interface].name
        elif len(source.interfaces) == 1:
            master = source.interfaces[0].name
        else:
            raise InvalidConfig(f"cannot tell which interface carries {ip.address}",
                                "set 'master' or chain after cnivpc-ipam")
        groups.setdefault(master, []).append(ip)
    return list(groups.items())


def slave_names(ifname: str, count: int) -> list[str]:
    return [ifname] + [f"{ifname[:12]}.{n}" for n in range(1, count)]


def _temp_name(container_id: str, ifname: str, n: int) -> str:
    digest = sha256_hex(f"{container_id}/{ifname}/{n}".encode())
    return f"cvt{digest[:11]}"


def add(req: Request[IpvlanConf]) -> Result:
    conf, cmd = req.conf, req.cmd
    source = _ip_source(req)
    groups = _masters(conf, source)
    names = slave_names(cmd.ifname, len(groups))
    interfaces: list[Interface] = []
    ips: list[IPConfig] = []
    with contextlib.ExitStack() as undo:
        if _delegated(conf):
            undo.callback(_release_delegated, req)
        for n, ((master, group), name) in enumerate(zip(groups, names, strict=True)):
            has_ipv6 = any(ipaddress.ip_interface(ip.address).version == 6 for ip in group)
            mac = _make_slave(req, master, name, _temp_name(cmd.container_id, name, n),
                              has_ipv6, undo)
            interfaces.append(Interface(name=name, mac=mac, sandbox=cmd.netns))
            ips.extend(ip.model_copy(update={"interface": n}) for ip in group)
        with netns.iproute(cmd.netns) as ipr:
            for n, name in enumerate(names):
                _add_routes(ipr, links.get(ipr, name).index, source, n, ips)
        undo.pop_all()
    dns = source.dns if source.dns.nameservers or conf.dns is None else conf.dns
    log.info("ADD %s: %s", cmd.container_id[:12],
             ", ".join(f"{i.name}@{m}" for i, (m, _) in zip(interfaces, groups, strict=True)))
    return source.model_copy(update={"interfaces": interfaces, "ips": ips,
                                     "dns": dns or DNS()})


def _make_slave(req: Request[IpvlanConf], master: str, name: str, temp: str,
                has_ipv6: bool, undo: contextlib.ExitStack) -> str:
    """Create, rename and bring up one slave; its MAC (the master's)."""
    conf, cmd = req.conf, req.cmd
    with netns.iproute() as host:
        master_link = links.find(host, master)
        if master_link is None:
            raise LinkNotFound(f"master interface {master} not found on the host",
                               "the ENI's link is missing: is the ENI attached?")
        with netns.open_fd(cmd.netns) as fd:
            slaves.create(host, master_link.index, fd, temp, conf.mode, conf.mtu)
    undo.callback(_delete_quietly, cmd.netns, temp)
    with netns.iproute(cmd.netns) as ipr:
        link = links.get(ipr, temp)
        slaves.rename(ipr, link.index, name)
    undo.callback(_delete_quietly, cmd.netns, name)
    slaves.set_addr_gen_mode(name, has_ipv6, cmd.netns)
    with netns.iproute(cmd.netns) as ipr:
        link = links.get(ipr, name)
        links.set_up(ipr, link.index)
        return link.mac


def _add_routes(ipr: Any, index: int, source: Result, n: int, ips: list[IPConfig]) -> None:
    """Addresses of slave ``n``, then every route whose gateway is on one of its subnets (a
    route without ``gw`` uses the slave's gateway of that family)."""
    mine = [ip for ip in ips if ip.interface == n]
    for ip in mine:
        slaves.add_address(ipr, index, ipaddress.ip_interface(ip.address))
    gateways = {ipaddress.ip_interface(ip.address).version: ip.gateway for ip in mine
                if ip.gateway}
    subnets = [ipaddress.ip_interface(ip.address).network for ip in mine]
    for route in source.routes:
        dst = ipaddress.ip_network(route.dst)
        gw_text = route.gw or gateways.get(dst.version)
        if gw_text is None:
            continue
        gw = ipaddress.ip_address(gw_text)
        if gw.is_link_local:
            # On every link (the VPC router's fe80::1 for a pod IPv6 /128, which no subnet
            # contains): the slave whose address names it as its gateway takes the route.
            if not any(ip.gateway == gw_text for ip in mine):
                continue
        elif not any(gw in subnet for subnet in subnets):
            continue  # this gateway is on another slave's subnet
        wanted = routes.Route(dst=dst, oif=index, gateway=gw)
        try:
            routes.add(ipr, wanted)
        except RouteExists:
            existing = [r for r in routes.list_routes(ipr, routes.family_of(dst))
                        if r.dst == dst and r.table == wanted.table]
            if not any(r.oif == index and r.gateway == wanted.gateway for r in existing):
                raise


def _delete_quietly(netns_path: str, name: str) -> None:
    try:
        with netns.iproute(netns_path) as ipr:
            links.delete(ipr, name)
    except (CniError, OSError) as exc:
        log.warning("rollback: could not delete %s in %s: %s", name, netns_path, exc)


def _release_delegated(req: Request[IpvlanConf]) -> None:
    kind = _delegated(req.conf)
    if kind:
        try:
            invoke.delegate("DEL", kind, _ipam_config(req))
        except CniError as exc:
            log.warning("rollback: delegated IPAM DEL failed: %s", exc)


def delete(req: Request[IpvlanConf]) -> None:
    """Best effort, as DEL must be: the delegated IPAM's DEL and the slaves in the netns are
    both attempted; a netns that is gone (or empty, or not a netns any more) took its slaves
    with it. Fails only when something that exists could not be removed."""
    cmd = req.cmd
    errors: list[CniError] = []
    kind = _delegated(req.conf)
    if kind:
        try:
            invoke.delegate("DEL", kind, _ipam_config(req))
        except CniError as exc:
            log.error("DEL: delegated IPAM %s failed: %s", kind, exc)
            errors.append(exc)
    if not cmd.netns:
        log.info("DEL %s: no netns given: its slaves went with it", cmd.container_id[:12])
    else:
        try:
            with netns.iproute(cmd.netns) as ipr:
                count = max(1, len(req.prev_result.interfaces) if req.prev_result else 1)
                for name in slave_names(cmd.ifname, max(count, 4)):
                    links.delete(ipr, name)
        except (NetnsNotFound, NotANetns) as exc:
            log.info("DEL %s: netns gone, and its slaves with it: %s", cmd.container_id[:12],
                     exc)
        except CniError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def check(req: Request[IpvlanConf]) -> None:
    conf, cmd = req.conf, req.cmd
    if req.prev_result is None:
        raise InvalidConfig("CHECK needs prevResult")
    kind = _delegated(conf)
    if kind:
        invoke.delegate("CHECK", kind, _ipam_config(req))
    # Ours are the slaves named for CNI_IFNAME in this netns; later plugins (ptp's veth end)
    # put interfaces in the same sandbox. ``index`` is the position ips[].interface refers to.
    names = set(slave_names(cmd.ifname, len(req.prev_result.interfaces)))
    ours = [(index, iface) for index, iface in enumerate(req.prev_result.interfaces)
            if iface.sandbox == cmd.netns and iface.name in names]
    if not ours:
        raise CniError(f"prevResult has no {cmd.ifname} in {cmd.netns}", code=7)
    with netns.iproute() as host:
        host_links = {link.index: link.name for link in links.list_links(host)}
    with netns.iproute(cmd.netns) as ipr:
        for n, iface in ours:
            slave = slaves.slave_info(ipr, iface.name)
            if slave is None:
                raise CniError(f"{iface.name} is missing or not an ipvlan in {cmd.netns}",
                               code=7)
            if slave.mode != conf.mode:
                raise CniError(f"{iface.name} is in ipvlan mode {slave.mode}, not {conf.mode}",
                               code=7)
            if slave.master_index not in host_links:
                raise CniError(f"the master of {iface.name} is gone from the host", code=7)
            have = {str(a) for a in links.addresses(ipr, slave.link.index)}
            for ip in req.prev_result.ips:
                if ip.interface == n and str(ipaddress.ip_interface(ip.address)) not in have:
                    raise CniError(f"{iface.name} lacks {ip.address}", code=7)
            present = {(r.dst, r.gateway) for f in routes.FAMILIES
                       for r in routes.list_routes(ipr, f, routes.RT_TABLE_MAIN)
                       if r.oif == slave.link.index}
            for route in req.prev_result.routes:
                gw = ipaddress.ip_address(route.gw) if route.gw else None
                if gw is not None and (ipaddress.ip_network(route.dst), gw) not in present \
                        and any(gw in ipaddress.ip_interface(ip.address).network
                                for ip in req.prev_result.ips if ip.interface == n):
                    raise CniError(f"route {route.dst} via {gw} is missing on {iface.name}",
                                   code=7)


def status(req: Request[IpvlanConf]) -> None:
    kind = _delegated(req.conf)
    if kind:
        invoke.delegate("STATUS", kind, _ipam_config(req))
    if req.conf.master:
        with netns.iproute() as host:
            if links.find(host, req.conf.master) is None:
                raise PluginNotAvailable(f"master interface {req.conf.master} is missing")


def gc(req: Request[IpvlanConf]) -> None:
    """The slaves die with their netns: nothing of ours outlives a pod. A delegated IPAM gets
    the GC forwarded, with the list (refused, like every GC, when the request has none)."""
    req.valid_attachments.require()
    kind = _delegated(req.conf)
    if kind:
        invoke.delegate("GC", kind, {**_ipam_config(req), **req.valid_attachments.to_config()})


PLUGIN = Plugin(name="cnivpc-ipvlan", conf_model=IpvlanConf, add=add, delete=delete,
                check=check, status=status, gc=gc)
