"""The ptp plugin's whole life on a real kernel, per CNI version: ADD -> kernel state ->
real packets -> CHECK -> CHECK after breaking something -> DEL -> nothing per-pod left ->
DEL again -> DEL without a netns."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from cnivpc.cni.versions import has_check

from .conftest import (
    INTERNET_IP,
    NODE_IP,
    NODE_IP2,
    POD_IP,
    POD_ROUTES,
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

CID = "ctr1"
HOST_VETH = "cnp" + hashlib.sha256(f"{CID}/eth0".encode()).hexdigest()[:12]
CHAIN = "CNI-" + hashlib.sha512(f"cnivpc-test{CID}".encode()).hexdigest()[:24]


def links(netns: str) -> dict[str, Any]:
    return {link["ifname"]: link for link in ip_json(netns, "-d", "link", "show")}


def per_pod_state(topo: Topo) -> dict[str, Any]:
    """Everything ADD creates for one pod on the node (empty values when clean)."""
    return {
        "veth": [n for n in links(topo.node) if n.startswith("cnp")],
        "rules": [r for r in ip_json(topo.node, "rule", "show") if r.get("iif")],
        "tables": [r for r in ip_json(topo.node, "route", "show", "table", "all")
                   if r.get("table") not in (None, "main", "local")],
        "host_routes": [r for r in ip_json(topo.node, "route", "show")
                        if r["dst"] == POD_IP],
        "chains": [line for line in iptables_rules(topo.node, "nat") if "CNI-" in line],
    }


def assert_added(topo: Topo, result: dict[str, Any], version: str, masq: bool) -> None:
    # The result: prevResult with both veth ends appended, the IPs untouched.
    assert [i["name"] for i in result["interfaces"]] == ["eth0", HOST_VETH, "eth1"]
    assert result["interfaces"][2]["sandbox"] == topo.pod_path
    assert "sandbox" not in result["interfaces"][1]
    assert result["ips"] == prev_result(version)["ips"]
    assert result["cniVersion"] == version

    host = links(topo.node)[HOST_VETH]
    pod = links(topo.pod)["eth1"]
    assert host["linkinfo"]["info_kind"] == pod["linkinfo"]["info_kind"] == "veth"
    assert host["address"] == result["interfaces"][1]["mac"]
    assert pod["address"] == result["interfaces"][2]["mac"]
    assert host["ifalias"] == f"cnivpc-ptp:cnivpc-test:{CID}:eth0"
    assert host["mtu"] == pod["mtu"] == 1500  # hostInterface's MTU
    assert "UP" in host["flags"] and "UP" in pod["flags"]
    # Unnumbered: neither end has an IPv4 address.
    assert not [a for a in ip_json(topo.pod, "addr", "show", "eth1")[0]["addr_info"]
                if a["family"] == "inet"]

    pod_routes = {(r["dst"], r.get("gateway"), r["dev"])
                  for r in ip_json(topo.pod, "route", "show")}
    assert {(NODE_IP, None, "eth1"), (NODE_IP2, None, "eth1"),
            ("default", NODE_IP, "eth1")} <= pod_routes
    host_routes = ip_json(topo.node, "route", "show", POD_IP)
    assert [(r["dev"], r["scope"]) for r in host_routes] == [(HOST_VETH, "link")]

    rules = [r for r in ip_json(topo.node, "rule", "show") if r.get("iif") == HOST_VETH]
    assert len(rules) == 1 and rules[0]["priority"] == 1024
    table = rules[0]["table"]
    in_table = ip_json(topo.node, "route", "show", "table", table)
    assert sorted((r["dst"], r["gateway"], r["dev"]) for r in in_table) == \
        sorted((d, POD_IP, HOST_VETH) for d in POD_ROUTES)

    mangle = iptables_rules(topo.node, "mangle")
    assert sum("NodePort Mark" in line for line in mangle) == 3
    assert any("-i cnp+" in line and "--restore-mark" in line for line in mangle)
    fwmark = [r for r in ip_json(topo.node, "rule", "show") if r.get("fwmark") == "0x2000"]
    assert [(r["priority"], r["table"]) for r in fwmark] == [(512, "main")]
    assert sh("sysctl", "-n", "net.ipv4.conf.eth0.rp_filter",
              netns=topo.node).stdout.strip() == "2"

    nat = iptables_rules(topo.node, "nat")
    pod_nat = iptables_rules(topo.pod, "nat")
    if masq:
        assert f"-N {CHAIN}" in nat
        assert any(line.startswith(f"-A POSTROUTING -s {POD_IP}/32") and CHAIN in line
                   for line in nat)
        assert sum(line.startswith(f"-A {CHAIN}") for line in nat) == 2
        assert any("-o eth0" in line and "MASQUERADE" in line for line in pod_nat)
        assert sh("sysctl", "-n", "net.ipv4.ip_forward", netns=topo.pod).stdout.strip() == "1"
    else:
        assert not any("CNI-" in line for line in nat)
        assert not any("MASQUERADE" in line for line in pod_nat)


@pytest.mark.parametrize(("version", "masq"), [
    ("0.3.1", False), ("0.4.0", True), ("1.0.0", False), ("1.1.0", True), ("1.1.0", False),
])
def test_lifecycle(topo: Topo, version: str, masq: bool) -> None:
    conf = config(version, prev_result(version), ipMasq=masq)
    result = ok(cni(topo, "ADD", conf, container_id=CID))
    assert result is not None
    assert_added(topo, result, version, masq)

    # Real packets over the unnumbered veth, both directions.
    sh("ping", "-c1", "-W2", NODE_IP, netns=topo.pod)
    sh("ping", "-c1", "-W2", NODE_IP2, netns=topo.pod)
    sh("ping", "-c1", "-W2", POD_IP, netns=topo.node)

    # DEL and CHECK get the final result as prevResult.
    conf["prevResult"] = result
    if has_check(version):
        ok(cni(topo, "CHECK", conf, container_id=CID))
        sh("ip", "route", "del", NODE_IP2, "dev", "eth1", netns=topo.pod)
        broken = cni(topo, "CHECK", conf, container_id=CID)
        assert broken.code == 1
        assert f"pod route {NODE_IP2}/32 dev eth1" in broken.error["msg"]
        rule = next(r for r in ip_json(topo.node, "rule", "show") if r.get("iif"))
        sh("ip", "rule", "del", "priority", "1024", "iif", HOST_VETH, netns=topo.node)
        broken = cni(topo, "CHECK", conf, container_id=CID)
        assert f"rule iif {HOST_VETH} priority 1024" in broken.error["details"]
        sh("ip", "rule", "add", "priority", "1024", "iif", HOST_VETH, "table",
           str(rule["table"]), netns=topo.node)
        sh("ip", "link", "del", HOST_VETH, netns=topo.node)
        broken = cni(topo, "CHECK", conf, container_id=CID)
        assert f"host veth {HOST_VETH} not found" in broken.error["details"]

    ok(cni(topo, "DEL", conf, container_id=CID))
    assert per_pod_state(topo) == {"veth": [], "rules": [], "tables": [], "host_routes": [],
                                   "chains": []}
    assert "eth1" not in links(topo.pod)
    assert not [line for line in iptables_rules(topo.pod, "nat") if "MASQUERADE" in line]
    # Shared NodePort state stays for the other pods.
    assert sum("NodePort Mark" in line for line in iptables_rules(topo.node, "mangle")) == 3
    ok(cni(topo, "DEL", conf, container_id=CID))
    ok(cni(topo, "DEL", config(version), container_id=CID, netns=""))


def test_del_cleans_up_whatever_ipmasq_says_and_without_netns(topo: Topo) -> None:
    """The original did nothing on DEL when ipMasq=false, and failed without its netns."""
    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True), container_id=CID))
    sh("ip", "netns", "del", topo.pod)  # the runtime tore the sandbox down first
    ok(cni(topo, "DEL", config("1.0.0", ipMasq=False), container_id=CID))
    assert per_pod_state(topo) == {"veth": [], "rules": [], "tables": [], "host_routes": [],
                                   "chains": []}
    ok(cni(topo, "DEL", config("1.0.0"), container_id=CID))


def test_masquerade_egress_uses_node_ip(topo: Topo) -> None:
    """pod -> a non-VPC address goes over the veth and leaves the node with its IP."""
    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True), container_id=CID))
    listener = (
        "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
        f"s.bind(('{INTERNET_IP}',9999));s.settimeout(5);"
        "print(s.recvfrom(100)[1][0]);sys.stdout.flush()"
    )
    import subprocess
    import sys

    server = subprocess.Popen(["ip", "netns", "exec", topo.vpc, sys.executable, "-c", listener],
                              stdout=subprocess.PIPE, text=True)
    try:
        sender = (
            "import socket,time\nfor _ in range(40):\n"
            " socket.socket(socket.AF_INET,socket.SOCK_DGRAM)"
            f".sendto(b'x',('{INTERNET_IP}',9999)); time.sleep(0.05)"
        )
        sh(sys.executable, "-c", sender, netns=topo.pod)
        source, _ = server.communicate(timeout=10)
    finally:
        server.kill()
    assert source.strip() == NODE_IP


def test_netns_given_as_proc_pid_path_and_explicit_mtu(topo: Topo) -> None:
    import subprocess

    holder = subprocess.Popen(["ip", "netns", "exec", topo.pod, "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        conf = config("1.1.0", prev_result("1.1.0"), mtu=1400)
        result = ok(cni(topo, "ADD", conf, container_id=CID, netns=path))
        assert result is not None and result["interfaces"][2]["sandbox"] == path
        assert links(topo.pod)["eth1"]["mtu"] == links(topo.node)[HOST_VETH]["mtu"] == 1400
        conf["prevResult"] = result
        ok(cni(topo, "CHECK", conf, container_id=CID, netns=path))
        ok(cni(topo, "DEL", conf, container_id=CID, netns=path))
    finally:
        holder.kill()
        holder.wait()
    assert "eth1" not in links(topo.pod)
