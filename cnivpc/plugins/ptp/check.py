"""CHECK and STATUS.

CHECK compares the kernel with what ADD creates for prevResult's pod IPs: both veth ends (and
that they are each other's peer), the pod's routes, the host routes, the iif rule and its
table, the masq chain when ipMasq, and the shared NodePort state. Every missing piece is
listed in one error. STATUS answers 50 unless the host interface exists and iptables runs.
"""

from __future__ import annotations

from typing import Any

from ...cni.errors import CniError, ErrorCode, PluginNotAvailable
from ...cni.models import Result
from ...cni.plugin import Request
from ...net import links, netns, routes
from ...net.errors import NetError
from ...net.iptables import Iptables
from . import attachment, naming
from .attachment import Attachment, IPAddress, pod_ips, require_prev, table_routes
from .config import PtpConf


class CheckFailed(CniError):
    """CHECK found state that ADD created missing or wrong; ``details`` lists every item."""

    code = ErrorCode.INTERNAL


def check(req: Request[PtpConf]) -> None:
    conf, cmd = req.conf, req.cmd
    prev = require_prev(req.prev_result)
    ips = pod_ips(prev, cmd.ifname)
    att = Attachment(conf.name, cmd.container_id, cmd.ifname)
    families: set[int] = {ip.version for ip in ips}
    problems: list[str] = []
    with netns.iproute() as host, netns.iproute(cmd.netns) as pod:
        host_if = links.find(host, conf.host_interface)
        host_veth = links.find(host, att.host_veth)
        cont = links.find(pod, conf.container_interface)
        if host_if is None:
            problems.append(f"hostInterface {conf.host_interface} not found")
        if host_veth is None or host_veth.kind != "veth":
            problems.append(f"host veth {att.host_veth} not found")
        if cont is None or cont.kind != "veth":
            problems.append(f"veth {conf.container_interface} not found in {cmd.netns}")
        if host_veth and cont and (cont.peer_index != host_veth.index
                                   or host_veth.peer_index != cont.index):
            problems.append(f"{conf.container_interface} in the pod is not the peer of "
                            f"host veth {att.host_veth}")
        problems += _macs(prev, cmd.netns, host_veth, cont)
        if host_if and cont:
            addrs = [a.ip for a in links.addresses(host, host_if.index)]
            gateway4 = next((a for a in addrs if a.version == 4), None)
            problems += _routes(pod, cont, attachment.pod_routes(
                addrs, gateway4, families, attachment.direct_families(prev)), "pod")
        if host_veth:
            problems += _routes(host, host_veth, attachment.host_routes(ips), "host")
            problems += _policy(host, host_veth, table_routes(prev, ips))
    if conf.ip_masq:
        direct = attachment.direct_families(prev)
        problems += _masq(att, [ip for ip in ips if ip.version not in direct])
    problems += _nodeports(conf, families)
    if problems:
        raise CheckFailed(f"CHECK failed: {problems[0]}", "; ".join(problems))


def _macs(prev: Result, netns_path: str, host_veth: links.Link | None,
          cont: links.Link | None) -> list[str]:
    """The veth ends must still be the ones ADD reported (a re-created link gets a new MAC)."""
    problems: list[str] = []
    for link, sandbox in ((host_veth, None), (cont, netns_path)):
        if link is None:
            continue
        recorded = next((i for i in prev.interfaces
                         if i.name == link.name and i.sandbox == sandbox and i.mac), None)
        if recorded and recorded.mac and recorded.mac.lower() != link.mac.lower():
            problems.append(f"{link.name} has MAC {link.mac}, the result says {recorded.mac}")
    return problems


def _routes(ipr: Any, link: links.Link, wanted: list[attachment.RouteSpec],
            side: str) -> list[str]:
    have = {(r.dst, r.gateway) for f in routes.FAMILIES
            for r in routes.list_routes(ipr, f, routes.RT_TABLE_MAIN) if r.oif == link.index}
    return [f"{side} route {dst}{f' via {via}' if via else ''} dev {link.name}"
            for dst, via in wanted if (dst, via) not in have]


def _policy(host: Any, veth: links.Link,
            wanted: list[tuple[routes.IPNetwork, IPAddress]]) -> list[str]:
    rules = [r for r in routes.list_rules(host)
             if r.iifname == veth.name and r.priority == naming.IIF_RULE_PRIORITY]
    missing: list[str] = []
    for version in sorted({dst.version for dst, _ in wanted}):
        rule = next((r for r in rules if r.family == routes.af(version)), None)
        if rule is None:
            missing.append(f"rule iif {veth.name} priority {naming.IIF_RULE_PRIORITY} "
                           f"(IPv{version})")
            continue
        table = {(r.dst, r.gateway) for r in routes.list_routes(host, rule.family, rule.table)
                 if r.oif == veth.index}
        missing += [f"route {dst} via {via} in table {rule.table}"
                    for dst, via in wanted if dst.version == version and (dst, via) not in table]
    return missing


def _masq(att: Attachment, ips: list[IPAddress]) -> list[str]:
    missing: list[str] = []
    for ip in ips:
        ipt = Iptables(ipv6=ip.version == 6)
        for rule in naming.masq_chain_rules(ip, att.comment):
            if not ipt.exists("nat", att.chain, rule):
                missing.append(f"nat {att.chain} rule {' '.join(rule[:5])}")
        if not ipt.exists("nat", "POSTROUTING", naming.masq_jump_rule(ip, att.chain,
                                                                      att.comment)):
            missing.append(f"nat POSTROUTING jump -s {ip} -j {att.chain}")
    return missing


def _nodeports(conf: PtpConf, families: set[int]) -> list[str]:
    missing: list[str] = []
    for version in sorted(families):
        ipt = Iptables(ipv6=version == 6)
        for rule in naming.nodeport_rules(conf.host_interface, conf.node_ports,
                                          conf.node_port_mark):
            if not ipt.exists("mangle", "PREROUTING", rule):
                missing.append(f"mangle PREROUTING {' '.join(rule[:6])}")
    return missing


def status(req: Request[PtpConf]) -> None:
    """Ready for ADD: the host interface exists and iptables answers."""
    name = req.conf.host_interface
    try:
        with netns.iproute() as host:
            if links.find(host, name) is None:
                raise PluginNotAvailable(f"hostInterface {name} not found on the host")
        Iptables().must("-t", "nat", "-S", "POSTROUTING")
    except NetError as exc:
        raise PluginNotAvailable("cnivpc-ptp cannot serve ADD", str(exc)) from exc
