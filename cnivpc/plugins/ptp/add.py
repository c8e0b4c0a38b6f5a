"""ADD: connect the pod to the host with an unnumbered veth pair and set up routing,
policy routing, masquerading and NodePort marking, rolling *everything* back if a step
fails.

The story, in order (each side effect registers its undo on an ExitStack first; the stack is
discarded on success):
1. veth pair: container end ``containerInterface`` created directly in the pod netns, host end
   under its stable name with the attachment alias; both up.
2. pod: /32 scope-link routes to the host interface's IPv4 addresses, a default route via
   the host's primary IPv4; with ipMasq, forwarding and the "kube-proxy SNAT" MASQUERADE.
   (IPv6: the veth ends get fixed link-locals and IPv6 routes go via them, see ``naming``.)
3. host: /32 (/128) routes to the pod IPs over the host veth.
4. per-pod table with prevResult's routes via the pod IP, and ``iif <veth> lookup T``, so
   service traffic DNATed to a VPC address goes back into the pod and out of its ipvlan.
5. with ipMasq, host forwarding and the per-pod SNAT chain.
6. shared NodePort marking (idempotent, never rolled back: other pods rely on it).
Gratuitous ARPs (best effort) announce the pod IPs to the host and the host IPs to the pod.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from ...cni import logs
from ...cni.errors import InvalidConfig
from ...cni.models import Interface, Result
from ...cni.plugin import Request
from ...net import arp, iptables, links, netns, routes, sysctl
from ...net.errors import ArpError, LinkExists, LinkNotFound, NetError
from ...net.iptables import Iptables
from . import attachment, lock, naming
from .attachment import Attachment, IPAddress, pod_ips, require_prev, table_routes
from .cleanup import change_pod_masq, drop_policy, teardown_masq
from .config import PtpConf, refuse_ifname

log = logs.get("ptp")
VETH_MAX_MTU = 65535


class TableRangeFull(NetError):
    """Every route table of the configured range is in use."""


def add(req: Request[PtpConf]) -> Result:
    conf, cmd = req.conf, req.cmd
    refuse_ifname(conf, cmd.ifname)
    prev = require_prev(req.prev_result)
    ips = pod_ips(prev, cmd.ifname)
    att = Attachment(conf.name, cmd.container_id, cmd.ifname)
    families: list[int] = sorted({ip.version for ip in ips})
    direct = attachment.direct_families(prev)
    masq_families = [f for f in families if f not in direct]
    with lock.host_lock(), netns.iproute() as host, netns.open_fd(cmd.netns) as pod_fd, \
            netns.iproute(cmd.netns) as pod, ExitStack() as undo:
        host_if = _host_interface(host, conf.host_interface)
        host_addrs = [a.ip for a in links.addresses(host, host_if.index)]
        pod_routes = attachment.pod_routes(
            host_addrs, _gateway4(conf.host_interface, host_addrs, families), set(families),
            direct)
        # A veth takes at most 65535 (ETH_MAX_MTU); only loopback-like links have more.
        mtu = conf.mtu or min(host_if.mtu, VETH_MAX_MTU)

        if links.find(host, att.host_veth) is not None:
            raise LinkExists(f"host veth {att.host_veth} already exists",
                             f"container {cmd.container_id} ifname {cmd.ifname} is already "
                             "attached: DEL it first")
        if links.find(pod, conf.container_interface) is not None:
            raise LinkExists(f"interface {conf.container_interface} already exists in "
                             f"{cmd.netns}", "containerInterface must be a free name")
        links.create_veth(host, att.host_veth, conf.container_interface, pod_fd, mtu)
        # Deleting the host end deletes its peer and every route through either end.
        _on_failure(undo, links.delete, host, att.host_veth)
        host_veth = links.get(host, att.host_veth)
        links.set_alias(host, host_veth.index, att.alias)
        cont_veth = links.get(pod, conf.container_interface)
        if 6 in families:
            links.add_address(host, host_veth.index, naming.HOST_LINK_LOCAL, nodad=True)
            links.add_address(pod, cont_veth.index, naming.POD_LINK_LOCAL, nodad=True)
        links.set_up(host, host_veth.index)
        links.set_up(pod, cont_veth.index)

        _add_routes(pod, cont_veth.index, pod_routes)
        if conf.ip_masq and masq_families:
            _setup_pod_masq(undo, cmd.netns, cmd.ifname, masq_families)
        _announce(cont_veth, ips, cmd.netns)

        _add_routes(host, host_veth.index, attachment.host_routes(ips))
        _setup_policy(undo, host, conf, att, host_veth.index, table_routes(prev, ips))
        _announce(host_veth, host_addrs, None)

        _setup_host_iptables(undo, conf, att,
                             [ip for ip in ips if ip.version not in direct], families)
        _setup_nodeport_routing(host, conf, families)

        result = prev.model_copy(deep=True)
        result.interfaces.append(Interface(name=host_veth.name, mac=host_veth.mac))
        result.interfaces.append(Interface(name=cont_veth.name, mac=cont_veth.mac,
                                           sandbox=cmd.netns))
        undo.pop_all()
    return result


def _on_failure(undo: ExitStack, fn: Callable[..., object], *args: Any) -> None:
    """Register an undo step. A failing undo is logged and the next one still runs, so the
    error the runtime sees is the one that made ADD fail, not a rollback hiccup."""
    def run() -> None:
        try:
            fn(*args)
        except Exception as exc:  # rollback is best effort: keep undoing
            log.error("rollback step %s%r failed: %s", fn.__name__, args[1:], exc)

    undo.callback(run)


def _host_interface(host: Any, name: str) -> links.Link:
    try:
        return links.get(host, name)
    except LinkNotFound as exc:
        raise InvalidConfig(f"hostInterface {name} not found on the host") from exc


def _gateway4(host_interface: str, host_addrs: list[IPAddress],
              families: list[int]) -> IPAddress | None:
    """The pod's IPv4 default next hop: the host interface's primary (first) IPv4."""
    if 4 not in families:
        return None
    first = next((a for a in host_addrs if a.version == 4), None)
    if first is None:
        raise InvalidConfig(f"hostInterface {host_interface} has no IPv4 address",
                            "the pod has IPv4 addresses and needs the node's as next hop")
    return first


def _add_routes(ipr: Any, oif: int, specs: list[attachment.RouteSpec]) -> None:
    # IPv4 over the unnumbered veth: the other side's addresses are on-link /32s (scope
    # link, no next hop), and the pod's default route goes via one of them.
    for dst, via in specs:
        scope = routes.SCOPE_LINK if via is None else routes.SCOPE_UNIVERSE
        routes.add(ipr, routes.Route(dst=dst, oif=oif, gateway=via, scope=scope))


def _setup_pod_masq(undo: ExitStack, netns_path: str, ifname: str,
                    families: list[int]) -> None:
    sysctl.enable_forwarding(4 in families, 6 in families, netns_path)
    for family in families:
        ipt = Iptables(ipv6=family == 6, netns_path=netns_path)
        rule = change_pod_masq(ipt, ifname, True)
        if rule is not None:
            _on_failure(undo, ipt.delete, "nat", "POSTROUTING", rule)


def _setup_policy(undo: ExitStack, host: Any, conf: PtpConf, att: Attachment, oif: int,
                  table_routes: list[tuple[routes.IPNetwork, IPAddress]]) -> None:
    if not table_routes:
        return  # an empty table would only fall through to main: no rule needed
    table = naming.choose_table(conf.route_table_start, att.host_veth,
                                routes.tables_in_use(host))
    if table is None:
        raise TableRangeFull("no free route table",
                             f"tables {conf.route_table_start}.."
                             f"{conf.route_table_start + naming.TABLE_SPAN - 1} all in use")
    # Registered before the first route, so a half-filled table is flushed too.
    _on_failure(undo, drop_policy, host, att.host_veth, (table,))
    for dst, via in table_routes:
        routes.add(host, routes.Route(dst=dst, oif=oif, gateway=via, table=table))
    for family in sorted({dst.version for dst, _ in table_routes}):
        rule = routes.Rule(family=routes.af(family), priority=naming.IIF_RULE_PRIORITY,
                           table=table, iifname=att.host_veth)
        routes.add_rule(host, rule)
    log.debug("attachment %s uses route table %d", att.host_veth, table)


def _setup_host_iptables(undo: ExitStack, conf: PtpConf, att: Attachment,
                         ips: list[IPAddress], families: list[int]) -> None:
    """The host's rules: with ipMasq, the pod's nat chain (ACCEPT to itself, MASQUERADE the
    rest) and the POSTROUTING jumps to it; and the node-wide NodePort marks when missing
    (usually only the node's first pod adds them).

    One exec per family on every pod but a node's first (see net.iptables for why execs
    count): an iptables-restore that declares the chain (created, or flushed when an
    interrupted ADD left it), fills it, appends the jumps, and checks (``-C``) that the
    NodePort marks are there, nat committed before mangle is checked. When a mark is missing
    (the node's first pod, or someone flushed mangle), the careful way follows: one listing of
    nat (leftover jumps to the chain are replaced rather than doubled, the chain rebuilt from
    scratch: this also replaces what the attempt committed), one of mangle (which marks are
    missing), one restore."""
    if conf.ip_masq:
        # Only for the families the node forwards for the pod (not dual-stack IPv6 over the
        # ipvlan leg: forwarding on would also give every link a subnet-router anycast route).
        sysctl.enable_forwarding(any(ip.version == 4 for ip in ips),
                                 any(ip.version == 6 for ip in ips))
    for family in families:
        ipt = Iptables(ipv6=family == 6)
        # No chain for a family none of ``ips`` is in (dual-stack IPv6 over the ipvlan leg).
        masq_here = conf.ip_masq and any(ip.version == family for ip in ips)
        if masq_here:
            _on_failure(undo, teardown_masq, ipt, att.chain)
        masq = _masq_commands(att, ips, family) if masq_here else []
        marks = naming.nodeport_rules(conf.host_interface, conf.node_ports, conf.node_port_mark)
        if ipt.attempt({"nat": [[iptables.DECLARE, att.chain], *masq] if masq else [],
                        "mangle": [["-C", "PREROUTING", *rule] for rule in marks]}):
            continue
        nat: list[list[str]] = []
        if masq_here:
            chains, rules = ipt.listing("nat", containing=att.chain)
            nat.append(["-F" if att.chain in chains else "-N", att.chain])
            nat += [["-D", c, *r] for c, r in rules if iptables.jump_target(r) == att.chain]
            nat += masq
        # Our NodePort rules carry their comment: with none listed, none is there; a listed one
        # that covers() does not recognise is confirmed with -C before appending another.
        _, listed = ipt.listing("mangle", containing=naming.NODEPORT_COMMENT)
        mangle = [["-A", "PREROUTING", *rule] for rule in marks
                  if not any(c == "PREROUTING" and iptables.covers(r, rule) for c, r in listed)
                  and not (listed and ipt.exists("mangle", "PREROUTING", rule))]
        ipt.apply({"nat": nat, "mangle": mangle})


def _masq_commands(att: Attachment, ips: list[IPAddress], family: int) -> list[list[str]]:
    """The pod's chain rules and the POSTROUTING jumps to it, for the IPs of ``family``."""
    commands: list[list[str]] = []
    for ip in (ip for ip in ips if ip.version == family):
        commands += [["-A", att.chain, *rule] for rule in naming.masq_chain_rules(ip, att.comment)]
        commands.append(["-A", "POSTROUTING", *naming.masq_jump_rule(ip, att.chain, att.comment)])
    return commands


def _setup_nodeport_routing(host: Any, conf: PtpConf, families: list[int]) -> None:
    if 4 in families:
        # Loose reverse-path filtering: replies routed by the fwmark rule are invisible to
        # strict RPF, which would drop NodePort traffic as martian (lyft #38).
        sysctl.write(f"net/ipv4/conf/{conf.host_interface}/rp_filter", "2")
    existing = routes.list_rules(host)
    for family in families:
        mark_rule = routes.Rule(family=routes.af(family), priority=naming.FWMARK_RULE_PRIORITY,
                                table=routes.RT_TABLE_MAIN, fwmark=conf.node_port_mark)
        if mark_rule not in existing:
            routes.add_rule(host, mark_rule)


def _announce(link: links.Link, ips: list[IPAddress], netns_path: str | None) -> None:
    """Gratuitous ARP for the IPv4 addresses among ``ips``; failures are only logged."""
    v4 = [ip for ip in ips if isinstance(ip, ipaddress.IPv4Address)]
    try:
        arp.announce(link.name, link.mac, v4, netns_path)
    except ArpError as exc:
        log.warning("gratuitous ARP on %s failed (ignored): %s", link.name, exc)
