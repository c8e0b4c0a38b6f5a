"""Dual-stack pods on a real kernel: IPv6 across the veth via fixed link-locals (neighbour
discovery only answers for addresses of the receiving link, so IPv6 cannot be unnumbered the
way IPv4 is), the IPv6 rule and table, ip6tables masquerading, and a clean DEL."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from .conftest import (
    INTERNET_IP,
    NODE_IP,
    NODE_IP6,
    POD_IP,
    POD_IP6,
    POD_ROUTE6,
    Topo,
    cni,
    config,
    ip_json,
    iptables_rules,
    ok,
    prev_result,
    sh,
)

pytestmark = pytest.mark.netns

HOST_VETH = "cnp" + hashlib.sha256(b"ctr1/eth0").hexdigest()[:12]


def dual_prev() -> dict[str, Any]:
    prev = prev_result("1.1.0")
    prev["ips"].append({"address": f"{POD_IP6}/64", "interface": 0})
    prev["routes"].append({"dst": POD_ROUTE6})
    return prev


def test_dual_stack_lifecycle(topo6: Topo) -> None:
    topo = topo6
    conf = config("1.1.0", dual_prev(), ipMasq=True)
    result = ok(cni(topo, "ADD", conf))
    assert result is not None

    pod6 = {(r["dst"], r.get("gateway"), r["dev"])
            for r in ip_json(topo.pod, "-6", "route", "show")}
    assert {("default", "fe80::1", "eth1"), (NODE_IP6, "fe80::1", "eth1")} <= pod6
    host6 = ip_json(topo.node, "-6", "route", "show", POD_IP6)
    assert [(r["gateway"], r["dev"]) for r in host6] == [("fe80::2", HOST_VETH)]
    rule6 = [r for r in ip_json(topo.node, "-6", "rule", "show") if r.get("iif") == HOST_VETH]
    assert len(rule6) == 1
    table6 = ip_json(topo.node, "-6", "route", "show", "table", rule6[0]["table"])
    assert [(r["dst"], r["gateway"]) for r in table6] == [(POD_ROUTE6, "fe80::2")]
    assert any(f"-s {POD_IP6}/128" in line for line in iptables_rules(topo.node, "nat", v6=True))

    sh("ping", "-6", "-c1", "-W2", NODE_IP6, netns=topo.pod)
    sh("ping", "-6", "-c1", "-W2", POD_IP6, netns=topo.node)
    sh("ping", "-c1", "-W2", NODE_IP, netns=topo.pod)
    sh("ping", "-c1", "-W2", POD_IP, netns=topo.node)

    conf["prevResult"] = result
    ok(cni(topo, "CHECK", conf))
    stale = {**result, "interfaces": [{**i, "mac": "02:00:00:00:00:99"} if i["name"] == "eth1"
                                      else i for i in result["interfaces"]]}
    broken = cni(topo, "CHECK", {**conf, "prevResult": stale})
    assert "eth1 has MAC" in broken.error["msg"]
    sh("ip", "-6", "route", "del", POD_IP6, netns=topo.node)
    broken = cni(topo, "CHECK", conf)
    assert f"host route {POD_IP6}/128 via fe80::2 dev {HOST_VETH}" in broken.error["details"]

    ok(cni(topo, "DEL", conf))
    assert not [r for r in ip_json(topo.node, "-6", "rule", "show") if r.get("iif")]
    assert not [line for line in iptables_rules(topo.node, "nat", v6=True) if "CNI-" in line]
    assert not [line for line in iptables_rules(topo.pod, "nat", v6=True) if "MASQ" in line]
    ok(cni(topo, "DEL", conf))


def test_ipv6_over_the_ipvlan_leg_keeps_only_the_node_path_on_the_veth(topo6: Topo) -> None:
    """Dual-stack pods whose IPv6 leaves by the ipvlan slave (the IPAM's ``::/0`` in
    prevResult, installed there by cnivpc-ipvlan): the veth carries the pod<->node IPv6 path
    and IPv4 as before, but no IPv6 default via the node and no IPv6 masquerading (the pod's
    own public address goes out over its ENI; the VPC's egress-only gateway guards it)."""
    topo = topo6
    prev = dual_prev()
    prev["routes"].append({"dst": "::/0", "gw": "fe80::1"})
    conf = config("1.1.0", prev, ipMasq=True)
    result = ok(cni(topo, "ADD", conf))
    assert result is not None
    pod6 = {(r["dst"], r.get("gateway"), r["dev"])
            for r in ip_json(topo.pod, "-6", "route", "show")}
    assert (NODE_IP6, "fe80::1", "eth1") in pod6  # the node, over the veth
    assert not [r for r in pod6 if r[0] == "default"]  # the ipvlan leg's, not ours
    pod4 = {(r["dst"], r.get("gateway")) for r in ip_json(topo.pod, "route", "show")}
    assert ("default", NODE_IP) in pod4  # IPv4 egress still through the node (SNAT)
    assert not [line for line in iptables_rules(topo.node, "nat", v6=True) if "CNI-" in line]
    assert not [line for line in iptables_rules(topo.pod, "nat", v6=True) if "MASQ" in line]
    assert any(f"-s {POD_IP}/32" in line for line in iptables_rules(topo.node, "nat"))
    sh("ping", "-6", "-c1", "-W2", NODE_IP6, netns=topo.pod)
    sh("ping", "-6", "-c1", "-W2", POD_IP6, netns=topo.node)
    conf["prevResult"] = result
    ok(cni(topo, "CHECK", conf))
    ok(cni(topo, "DEL", conf))
    assert not [r for r in ip_json(topo.node, "-6", "rule", "show") if r.get("iif")]
    ok(cni(topo, "DEL", conf))


EGRESS_IP = "169.254.172.1"


def test_ipv6_only_pods_reach_ipv4_only_through_the_node(topo6: Topo) -> None:
    """IPv6-only pods (the IPAM's ``ipv4: false``): prevResult has the pod's IPv6 with its
    ``::/0`` over the ipvlan leg and a node-local egress IPv4 with no route. The veth gives
    that IPv4 its only way out: the default via the node, masqueraded there to the node's
    address (the VPC has no route to the egress address: a reply proves the SNAT)."""
    topo = topo6
    sh("ip", "addr", "flush", "dev", "eth0", "scope", "global", netns=topo.pod)
    sh("ip", "addr", "add", f"{POD_IP6}/64", "dev", "eth0", "nodad", netns=topo.pod)
    sh("ip", "addr", "add", f"{EGRESS_IP}/32", "dev", "eth0", netns=topo.pod)
    prev = prev_result("1.1.0")
    prev["ips"] = [{"address": f"{POD_IP6}/128", "gateway": "fe80::1", "interface": 0},
                   {"address": f"{EGRESS_IP}/32", "interface": 0}]
    prev["routes"] = [{"dst": "::/0", "gw": "fe80::1"}]
    conf = config("1.1.0", prev, ipMasq=True)
    assert sh("ping", "-c1", "-W1", INTERNET_IP, netns=topo.pod, check=False).returncode != 0
    result = ok(cni(topo, "ADD", conf))
    assert result is not None
    pod4 = {(r["dst"], r.get("gateway"), r["dev"]) for r in ip_json(topo.pod, "route", "show")}
    assert ("default", NODE_IP, "eth1") in pod4
    assert not [r for r in ip_json(topo.pod, "-6", "route", "show") if r["dst"] == "default"
                and r["dev"] == "eth1"]  # IPv6 leaves by the ipvlan leg, not the veth
    nat = iptables_rules(topo.node, "nat")
    assert any(f"-s {EGRESS_IP}/32" in line for line in nat), nat
    assert not [line for line in iptables_rules(topo.node, "nat", v6=True) if "CNI-" in line]
    sh("ping", "-c1", "-W2", INTERNET_IP, netns=topo.pod)  # SNATed to the node's address
    sh("ping", "-c1", "-W2", NODE_IP, netns=topo.pod)
    sh("ping", "-6", "-c1", "-W2", NODE_IP6, netns=topo.pod)
    conf["prevResult"] = result
    ok(cni(topo, "CHECK", conf))
    for _ in range(2):
        ok(cni(topo, "DEL", conf))
    assert not [line for line in iptables_rules(topo.node, "nat") if "CNI-" in line]
    assert not [r for r in ip_json(topo.node, "rule", "show") if r.get("iif")]
    assert not [r for r in ip_json(topo.node, "-6", "rule", "show") if r.get("iif")]
    assert not ip_json(topo.node, "route", "show", EGRESS_IP)
