"""cnivpc-ipvlan on a real kernel with ipvlan (UML here), on the lab's fabric: chained after an
IPAM-shaped prevResult (the ENI's link as the master), run as a runtime runs it (a process in
the node's netns, JSON on stdin). Then chained with cnivpc-ptp: the pod reaches its node over
the unnumbered veth and the VPC over the ENI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cnivpc.lab.fabric import Fabric
from tests.support.lab import ping, run_in

pytestmark = pytest.mark.uml

REPO = Path(__file__).resolve().parents[2]
POD_SUBNET = "10.0.16.0/20"
POD_GW = "10.0.16.1"


def plugin(program: str, command: str, node_ns: str, conf: dict[str, Any], *,
           container_id: str, netns: str, ifname: str = "eth0") -> tuple[int, dict[str, Any]]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["ip", "netns", "exec", node_ns, sys.executable, "-m", "cnivpc",
                           program], input=json.dumps(conf), env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def ipam_result(master: str, ip: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "interfaces": [{"name": master}],
            "ips": [{"address": f"{ip}/20", "gateway": POD_GW, "interface": 0}],
            "routes": [{"dst": "10.0.0.0/16", "gw": POD_GW}],
            "dns": {"nameservers": ["10.0.0.2"]}}


@pytest.fixture
def node(fabric: Fabric) -> tuple[Fabric, str, str]:
    fabric.add_subnet(POD_SUBNET)
    fabric.add_node("n1", mac="02:00:0a:00:00:0a", ip_addr="10.0.0.10", subnet="10.0.0.0/24")
    eni_if = fabric.plug("n1", "eni-1", "02:00:0a:00:10:01", device_index=1)
    node_ns = fabric.node_ns("n1")
    run_in(node_ns, "ip", "link", "set", eni_if, "up", check=True)
    return fabric, node_ns, eni_if


# Every plugin exec costs seconds inside UML: two versions here (the oldest with CHECK, and
# 1.0.0); the e2e chain runs 1.1.0, and the conversions are unit-tested on the host.
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_ipvlan_add_check_del(node: tuple[Fabric, str, str], in_ns: Any, version: str) -> None:
    fabric, node_ns, eni_if = node
    pod = fabric.add_netns("pod1")
    netns = f"/var/run/netns/{pod}"
    prev = ipam_result(eni_if, "10.0.16.20")
    conf = {"cniVersion": version, "name": "cnivpc", "type": "cnivpc-ipvlan", "mode": "l2",
            "prevResult": prev}
    code, result = plugin("ipvlan", "ADD", node_ns, conf, container_id="c1", netns=netns)
    assert code == 0, result
    assert result["interfaces"] == [{"name": "eth0", "mac": "02:00:0a:00:10:01",
                                     "sandbox": netns}]
    assert result["ips"][0]["interface"] == 0
    assert result["dns"] == {"nameservers": ["10.0.0.2"]}  # kept (the original dropped it)
    details = json.loads(in_ns(pod, "ip", "-d", "-j", "link", "show", "eth0", check=True).stdout)
    assert details[0]["linkinfo"]["info_kind"] == "ipvlan"
    assert details[0]["linkinfo"]["info_data"]["mode"] == "l2"
    addrs = in_ns(pod, "ip", "-o", "addr", "show", "dev", "eth0", check=True).stdout
    assert "10.0.16.20/20" in addrs
    assert "fe80::" not in addrs  # no shared EUI-64 link-local: no duplicate-address storms
    routes = in_ns(pod, "ip", "route", check=True).stdout
    assert "10.0.0.0/16 via 10.0.16.1 dev eth0" in routes
    assert ping(pod, POD_GW)

    check = {**conf, "prevResult": result}
    assert plugin("ipvlan", "CHECK", node_ns, check, container_id="c1", netns=netns)[0] == 0
    in_ns(pod, "ip", "addr", "del", "10.0.16.20/20", "dev", "eth0", check=True)
    code, err = plugin("ipvlan", "CHECK", node_ns, check, container_id="c1", netns=netns)
    assert code != 0 and "10.0.16.20" in err["msg"]

    for _ in range(2):
        assert plugin("ipvlan", "DEL", node_ns, check, container_id="c1", netns=netns)[0] == 0
    assert "eth0" not in in_ns(pod, "ip", "-o", "link").stdout
    assert plugin("ipvlan", "DEL", node_ns, check, container_id="c1", netns="")[0] == 0
    gone = "/var/run/netns/cnl-never-existed"
    assert plugin("ipvlan", "DEL", node_ns, check, container_id="c1", netns=gone)[0] == 0


POD_IP6 = "2001:db8:0:16::20"


@pytest.mark.parametrize("family", ["dual-stack", "ipv6-only"])
def test_ipvlan_both_families(node: tuple[Fabric, str, str], in_ns: Any, family: str) -> None:
    """The IPAM's dual-stack result (the pod's IPv4 and an IPv6 /128 with ``::/0`` via the VPC
    router's link-local) and its IPv6-only one (the IPv6, and a node-local egress IPv4 with no
    gateway and no route): both families on the slave, the IPv6 usable at once (no DAD: the
    VPC delivers it to this ENI only), the IPv6 default via fe80::1 on the slave, no IPv4
    route for an egress address; CHECK passes; DEL twice leaves nothing."""
    fabric, node_ns, eni_if = node
    pod = fabric.add_netns(f"pod-{family}")
    netns = f"/var/run/netns/{pod}"
    prev = ipam_result(eni_if, "10.0.16.22")
    v6 = {"address": f"{POD_IP6}/128", "gateway": "fe80::1", "interface": 0}
    if family == "dual-stack":
        prev["ips"].append(v6)
        prev["routes"].append({"dst": "::/0", "gw": "fe80::1"})
        ipv4 = "10.0.16.22/20"
    else:
        ipv4 = "169.254.172.1/32"
        prev["ips"] = [v6, {"address": ipv4, "interface": 0}]
        prev["routes"] = [{"dst": "::/0", "gw": "fe80::1"}]
    conf = {"cniVersion": "1.0.0", "name": "cnivpc", "type": "cnivpc-ipvlan", "prevResult": prev}
    code, result = plugin("ipvlan", "ADD", node_ns, conf, container_id="c6", netns=netns)
    assert code == 0, result
    addrs = json.loads(in_ns(pod, "ip", "-j", "addr", "show", "dev", "eth0", check=True).stdout)
    infos = {f"{a['local']}/{a['prefixlen']}": a for a in addrs[0]["addr_info"]}
    assert ipv4 in infos and f"{POD_IP6}/128" in infos, infos
    assert not infos[f"{POD_IP6}/128"].get("tentative"), infos  # no DAD wait
    routes6 = in_ns(pod, "ip", "-6", "route", check=True).stdout
    assert "default via fe80::1 dev eth0" in routes6, routes6
    routes4 = in_ns(pod, "ip", "route", check=True).stdout
    if family == "ipv6-only":
        assert routes4.strip() == "", routes4  # IPv4 goes by the node (cnivpc-ptp's veth)
    else:
        assert "10.0.0.0/16 via 10.0.16.1 dev eth0" in routes4
    check = {**conf, "prevResult": result}
    code, err = plugin("ipvlan", "CHECK", node_ns, check, container_id="c6", netns=netns)
    assert code == 0, err
    for _ in range(2):
        assert plugin("ipvlan", "DEL", node_ns, check, container_id="c6", netns=netns)[0] == 0
    assert "eth0" not in in_ns(pod, "ip", "-o", "link").stdout


def test_ipvlan_add_rolls_back(node: tuple[Fabric, str, str], in_ns: Any) -> None:
    fabric, node_ns, eni_if = node
    pod = fabric.add_netns("pod2")
    netns = f"/var/run/netns/{pod}"
    prev = ipam_result(eni_if, "10.0.16.21")
    prev["routes"].append({"dst": "192.0.2.0/24", "gw": POD_GW})
    in_ns(pod, "ip", "link", "set", "lo", "up")
    # A route the plugin must add already exists in the pod, differently: ADD fails late
    in_ns(pod, "ip", "route", "add", "192.0.2.0/24", "dev", "lo", check=True)
    conf = {"cniVersion": "1.0.0", "name": "cnivpc", "type": "cnivpc-ipvlan", "prevResult": prev}
    code, err = plugin("ipvlan", "ADD", node_ns, conf, container_id="c2", netns=netns)
    assert code != 0, err
    links = in_ns(pod, "ip", "-o", "link").stdout
    assert "ipvlan" not in in_ns(pod, "ip", "-d", "-o", "link").stdout, links


def test_chain_ipvlan_then_ptp(node: tuple[Fabric, str, str], in_ns: Any) -> None:
    fabric, node_ns, eni_if = node
    pod = fabric.add_netns("pod3")
    netns = f"/var/run/netns/{pod}"
    base = {"cniVersion": "1.0.0", "name": "cnivpc"}
    code, after_ipvlan = plugin("ipvlan", "ADD", node_ns, {
        **base, "type": "cnivpc-ipvlan", "prevResult": ipam_result(eni_if, "10.0.16.22")},
        container_id="c3", netns=netns)
    assert code == 0, after_ipvlan
    code, after_ptp = plugin("ptp", "ADD", node_ns, {
        **base, "type": "cnivpc-ptp", "hostInterface": "eth0", "containerInterface": "eth1",
        "ipMasq": True, "prevResult": after_ipvlan}, container_id="c3", netns=netns)
    assert code == 0, after_ptp
    assert after_ptp["interfaces"][0]["name"] == "eth0"  # the pod IP stays on eth0
    assert ping(pod, "10.0.0.10")   # its node, over the unnumbered veth
    assert ping(node_ns, "10.0.16.22")  # node -> pod, over the veth too
    assert ping(pod, POD_GW)        # the VPC, over the ENI
