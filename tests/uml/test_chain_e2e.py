"""The full chain on a real kernel (UML here: the host has no ipvlan), in the lab: 2 nodes on the
strict EC2 + IMDSv2, pods added through the built zipapp's ``cnivpc-*`` symlinks exactly as a
runtime execs them (tests/uml/runtime.py), with examples/cnivpc.conflist as the config.

Proven with real packets (ping, and TCP where the source address matters): pod<->pod on one
ENI, across ENIs, across nodes; pod->its node and node->pod over the unnumbered veth; a VPC
host sees the pod's own IP; the internet host sees the node's primary IP (SNAT, ipMasq);
a routeToCidrs destination is reached over the ipvlan leg. The pods are dual-stack (the IPAM's
``ipv6``): their IPv6 reaches the other node's pods and the internet host with their own
address over the ipvlan leg, and the egress-only gateway keeps the internet from connecting
in; and the S3 prefix list (``routeServicePrefixLists``) takes them to the lab's gateway
endpoint with their own IPv4. IPv6-only pods (``ipv4: false``, a second network on the same
nodes and state) reach the other node's pods and the internet over IPv6 with their own address,
and the IPv4 internet through their node (SNAT) with their node-local egress address, which
is all the IPv4 they have. The fused mode (one entry of type
``cnivpc`` running the three plugins in one process) gets pods on the same nodes, the same
assertions and the same results. Then every pod is deleted (reverse chain order) and each node
is back to its initial state.

The tests share one module-scoped cluster and run in file order: the last one deletes the pods.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cnivpc.lab.probes import serve_whoami, whoami
from cnivpc.lab.runtime import Runtime, fused_conflist, lab_conflist
from tests.support.lab import ping, run_in

pytestmark = pytest.mark.uml

REPO = Path(__file__).resolve().parents[2]
ZIPAPP = Path(os.environ.get("CNIVPC_ZIPAPP", REPO / "build/out/cnivpc"))
ON_PREM = "198.18.0.1"  # a routeToCidrs destination, behind the VPC router



@dataclass
class Pod:
    name: str
    node: int
    netns: str
    ip: str = ""
    ip6: str = ""
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cluster:
    lab: Any
    runtimes: list[Runtime]
    fused: list[Runtime] = field(default_factory=list)
    v6only: list[Runtime] = field(default_factory=list)
    pods: dict[str, Pod] = field(default_factory=dict)
    initial: list[dict[str, Any]] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node_ns(self, i: int) -> str:
        return str(self.lab.node(i).netns)


def node_state(netns: str, eni_links: set[str]) -> dict[str, Any]:
    """What a pod may leave behind on a node, minus what stays by design: the pod ENIs' links
    (and the kernel's routes on them), the shared NodePort marks and fwmark rule."""
    def out(*cmd: str) -> str:
        return run_in(netns, *cmd, check=True).stdout

    links = sorted(link["ifname"] for link in json.loads(out("ip", "-j", "link", "show"))
                   if link["ifname"] not in eni_links)
    rules = [line for line in (out("ip", "rule") + out("ip", "-6", "rule")).splitlines()
             if "fwmark" not in line]
    routes = [line for line in (out("ip", "route", "show", "table", "all")
                                + out("ip", "-6", "route", "show", "table", "all")).splitlines()
              if not any(f"dev {e} " in line + " " for e in eni_links)]
    rules_nat = [line for line in out("iptables-save", "-t", "nat").splitlines()
                 if not line.startswith(("#", ":"))]
    mangle = [line for line in out("iptables-save", "-t", "mangle").splitlines()
              if not line.startswith(("#", ":")) and "NodePort Mark" not in line]
    return {"links": links, "rules": sorted(rules), "routes": sorted(routes),
            "nat": rules_nat, "mangle": mangle}


def eni_links(cluster: Cluster, i: int) -> set[str]:
    names = json.loads(run_in(cluster.node_ns(i), "ip", "-j", "link", "show",
                              check=True).stdout)
    return {n["ifname"] for n in names if re.fullmatch(r"eth[1-9][0-9]*", n["ifname"])}


def serve(cluster: Cluster, netns: str, port: int) -> None:
    cluster.servers.append(serve_whoami(netns, port))


def ask(netns: str, ip: str, port: int) -> str:
    seen = whoami(netns, ip, port)
    assert seen, f"no TCP answer from {ip}:{port}"
    return seen


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not ZIPAPP.exists():
        pytest.fail(f"{ZIPAPP} is missing: ./build/dev zipapp builds it (./build/dev test does)")
    pytest.importorskip("moto")
    from cnivpc.lab.lab import Lab

    work = tmp_path_factory.mktemp("e2e")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "cnivpc").symlink_to(ZIPAPP.resolve())
    for name in ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"):
        (bin_dir / name).symlink_to("cnivpc")
    # CNIVPC_SHIV_ROOT: the zipapp extracted beforehand on the host (build/dev does it), so
    # the first plugin exec inside UML does not pay the extraction and bytecode compilation.
    shiv_root = os.environ.get("CNIVPC_SHIV_ROOT") or str(work / "shiv")
    env = {"SHIV_ROOT": shiv_root, "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773"}
    # t3.small: 3 ENIs x 4 IPv4, so a node's fifth pod IP is on a second pod ENI.
    lab = Lab(nodes=2, instance_type="t3.small").start()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        confs = [lab_conflist(work, i) for i in range(2)]
        for conf in confs:  # dual-stack pods, and S3 over the VPC's gateway endpoint
            conf["plugins"][0].update(ipv6=True, routeServicePrefixLists=["s3"])
        runtimes = [Runtime(bin_dir, conf, lab.node(i).netns, env)
                    for i, conf in enumerate(confs)]
        cl = Cluster(lab, runtimes, [Runtime(bin_dir, fused_conflist(rt.conflist), rt.node_ns,
                                             env) for rt in runtimes])
        for i, conf in enumerate(confs):  # IPv6-only pods: a second network, the same state
            v6 = copy.deepcopy(conf)
            v6["name"] = "cnivpc-v6"
            for key in ("routeToCidrs", "routeServicePrefixLists"):
                v6["plugins"][0].pop(key)
            v6["plugins"][0]["ipv4"] = False
            cl.v6only.append(Runtime(bin_dir, v6 if i == 0 else fused_conflist(v6),
                                     lab.node(i).netns, env))
        servers = cl.servers
        for i in range(2):
            cl.initial.append(node_state(cl.node_ns(i), set()))
        fabric = lab.fabric
        # node 0: a1, a2 and two IPAM-only fillers take the first pod ENI's 4 IPs; a3 lands on
        # the second pod ENI. node 1: b1. Fused-mode pods: fa on node 0, fb on node 1.
        for name, node in (("a1", 0), ("a2", 0), ("f1", 0), ("f2", 0), ("a3", 0), ("b1", 1),
                           ("fa", 0), ("fb", 1), ("v6a", 0), ("v6b", 1)):
            netns = fabric.add_netns(f"pod-{name}")
            pod = Pod(name, node, netns)
            path = f"/var/run/netns/{netns}"
            if name in ("f1", "f2"):
                result = ipam_only(cl, node).add(name, path)
            else:
                result = runtime_of(cl, name, node).add(name, path)
                names = [i["name"] for i in result["interfaces"]]
                assert names[0] == "eth0" and "eth1" in names  # ipvlan slave, ptp's pod end
            pod.ip = next(i["address"].split("/")[0] for i in result["ips"]
                          if ":" not in i["address"])
            pod.ip6 = next(i["address"].split("/")[0] for i in result["ips"]
                           if ":" in i["address"])
            pod.result = result
            cl.pods[name] = pod
        print("\nplugin execs in UML (s):", ", ".join(
            f"{p.removeprefix('cnivpc-') or 'fused'} {c} {t:.1f}"
            for rt in [*runtimes, *cl.fused] for p, c, t in rt.timings))
        yield cl
    finally:
        for proc in servers:
            proc.kill()
        lab.stop()


FUSED_PODS = ("fa", "fb")
V6_ONLY_PODS = ("v6a", "v6b")  # v6a chained on node 0, v6b fused on node 1
# Pods per mode for the path tests: (a pod on node 0, a pod on node 1).
MODES = {"chained": ("a1", "b1"), "fused": ("fa", "fb")}


def ipam_only(cluster: Cluster, node: int) -> Runtime:
    rt = cluster.runtimes[node]
    return Runtime(rt.bin_dir, {**rt.conflist, "plugins": rt.conflist["plugins"][:1]},
                   rt.node_ns, rt.env)


def runtime_of(cluster: Cluster, name: str, node: int | None = None) -> Runtime:
    node = cluster.pods[name].node if node is None else node
    if name in V6_ONLY_PODS:
        return cluster.v6only[node]
    return (cluster.fused if name in FUSED_PODS else cluster.runtimes)[node]


def eni_of(cluster: Cluster, name: str) -> str:
    """The ENI link a pod's eth0 is an ipvlan slave of, from the node's view."""
    pod = cluster.pods[name]
    link = json.loads(run_in(pod.netns, "ip", "-d", "-j", "link", "show", "eth0",
                             check=True).stdout)[0]
    assert link["linkinfo"]["info_kind"] == "ipvlan"
    return str(link["address"])


def test_pods_on_one_eni_and_across_enis(cluster: Cluster) -> None:
    a1, a2, a3 = (cluster.pods[n] for n in ("a1", "a2", "a3"))
    assert eni_of(cluster, "a1") == eni_of(cluster, "a2")  # same ENI: same MAC
    assert eni_of(cluster, "a3") != eni_of(cluster, "a1")  # the second pod ENI
    assert ping(a1.netns, a2.ip)
    assert ping(a1.netns, a3.ip)


@pytest.mark.parametrize("mode", MODES)
def test_pods_across_nodes(cluster: Cluster, mode: str) -> None:
    here, there = (cluster.pods[n] for n in MODES[mode])
    assert ping(here.netns, there.ip)
    assert ping(there.netns, cluster.pods["a3"].ip)


def test_fused_results_match_the_chain(cluster: Cluster) -> None:
    """Same shape as the chain's: eth0 (ipvlan), host veth, eth1 in the pod; same routes/DNS."""
    for chained, fused in (("a3", "fa"), ("b1", "fb")):
        a, b = cluster.pods[chained].result, cluster.pods[fused].result
        assert [i["name"] for i in b["interfaces"]][::2] == ["eth0", "eth1"]
        assert len(a["interfaces"]) == len(b["interfaces"]) == 3
        assert a["routes"] == b["routes"] and a["dns"] == b["dns"]
        assert a["ips"][0]["gateway"] == b["ips"][0]["gateway"]
        assert a["cniVersion"] == b["cniVersion"] == "1.0.0"  # the shipped conflists' version


@pytest.mark.parametrize("mode", MODES)
def test_pod_and_node_over_the_unnumbered_veth(cluster: Cluster, mode: str) -> None:
    node = cluster.lab.node(0)
    a1 = cluster.pods[MODES[mode][0]]
    assert ping(a1.netns, node.primary_ip)
    assert ping(node.netns, a1.ip)
    route = run_in(node.netns, "ip", "route", "get", a1.ip, check=True).stdout
    assert " dev cnp" in route  # the node reaches the pod over the veth, not the ENI
    pod_route = run_in(a1.netns, "ip", "route", "get", node.primary_ip, check=True).stdout
    assert "dev eth1" in pod_route
    # unnumbered: neither veth end has an IPv4 address
    assert "inet " not in run_in(a1.netns, "ip", "addr", "show", "eth1", check=True).stdout


@pytest.mark.parametrize("mode", MODES)
def test_vpc_host_sees_the_pod_ip(cluster: Cluster, mode: str) -> None:
    other, port = cluster.lab.node(1), 7001 if mode == "chained" else 7011
    serve(cluster, other.netns, port)
    pod = cluster.pods[MODES[mode][0]]
    assert ask(pod.netns, other.primary_ip, port) == pod.ip


@pytest.mark.parametrize("mode", MODES)
def test_internet_sees_the_node_ip(cluster: Cluster, mode: str) -> None:
    port = 7002 if mode == "chained" else 7012
    serve(cluster, cluster.lab.fabric.inet_ns, port)
    pod = cluster.pods[MODES[mode][1]]
    seen = ask(pod.netns, "198.51.100.10", port)
    assert seen == cluster.lab.node(pod.node).primary_ip  # SNAT to the node's IP (ipMasq)


@pytest.mark.parametrize("mode", MODES)
def test_route_to_cidrs_uses_the_ipvlan_leg(cluster: Cluster, mode: str) -> None:
    vpc = cluster.lab.fabric.vpc_ns
    if mode == "chained":
        run_in(vpc, "ip", "addr", "add", f"{ON_PREM}/32", "dev", "lo", check=True)
    port = 7003 if mode == "chained" else 7013
    serve(cluster, vpc, port)
    pod = cluster.pods["a3" if mode == "chained" else "fa"]
    assert "dev eth0" in run_in(pod.netns, "ip", "route", "get", ON_PREM, check=True).stdout
    assert ask(pod.netns, ON_PREM, port) == pod.ip  # not SNATed: it left over the ENI


@pytest.mark.parametrize("mode", MODES)
def test_ipv6_over_the_ipvlan_leg(cluster: Cluster, mode: str) -> None:
    from cnivpc.lab.fabric import INET6_ADDR

    here, there = (cluster.pods[n] for n in MODES[mode])
    assert "dev eth0" in run_in(here.netns, "ip", "-6", "route", "get", there.ip6,
                                check=True).stdout  # the ipvlan slave, not the veth
    assert ping(here.netns, there.ip6)
    port = 7004 if mode == "chained" else 7014
    cluster.servers.append(serve_whoami(cluster.lab.fabric.inet_ns, port, ipv6=True))
    assert whoami(here.netns, INET6_ADDR, port) == here.ip6  # its own IPv6: no NAT
    cluster.servers.append(serve_whoami(here.netns, port + 100, ipv6=True))
    assert whoami(there.netns, here.ip6, port + 100) == there.ip6  # the VPC may connect
    assert whoami(cluster.lab.fabric.inet_ns, here.ip6, port + 100, timeout=1.0) == ""


@pytest.mark.parametrize("mode", MODES)
def test_s3_goes_to_the_gateway_endpoint_with_the_pods_ip(cluster: Cluster, mode: str) -> None:
    import ipaddress

    fabric = cluster.lab.fabric
    target = str(ipaddress.ip_network(fabric.endpoint_cidrs["s3"][0]).network_address + 9)
    port = 7005 if mode == "chained" else 7015
    serve(cluster, fabric.vpce_ns, port)
    pod = cluster.pods[MODES[mode][0]]
    assert ask(pod.netns, target, port) == pod.ip  # over the ENI, not SNATed


def test_ipv6_only_pods(cluster: Cluster) -> None:
    """No VPC IPv4: IPv6 over the ipvlan leg with their own address, IPv4 through the node."""
    from cnivpc.lab.fabric import INET6_ADDR

    here, there = cluster.pods["v6a"], cluster.pods["v6b"]
    for pod in (here, there):
        assert ipaddress.ip_address(pod.ip) in ipaddress.ip_network("169.254.172.0/22")
        assert pod.result["routes"] == [{"dst": "::/0", "gw": "fe80::1"}]
    # IPv6: to the other node's IPv6-only and dual-stack pods and to the internet, over eth0.
    assert ping(here.netns, there.ip6) and ping(here.netns, cluster.pods["b1"].ip6)
    assert ping(cluster.pods["a1"].netns, there.ip6)
    cluster.servers.append(serve_whoami(cluster.lab.fabric.inet_ns, 7020, ipv6=True))
    for pod in (here, there):
        assert whoami(pod.netns, INET6_ADDR, 7020) == pod.ip6
    # IPv4: the internet host sees the node's address; the node sees the pod's egress address.
    serve(cluster, cluster.lab.fabric.inet_ns, 7021)
    for pod in (here, there):
        assert "dev eth1" in run_in(pod.netns, "ip", "route", "get", "198.51.100.10",
                                    check=True).stdout  # the veth, not the ENI
        assert ask(pod.netns, "198.51.100.10", 7021) == cluster.lab.node(pod.node).primary_ip
    node0 = cluster.lab.node(0)
    serve(cluster, node0.netns, 7022)
    assert ask(here.netns, node0.primary_ip, 7022) == here.ip
    # Node-local: each node's first IPv6-only pod has the same egress address.
    assert here.ip == there.ip


@pytest.mark.parametrize("name", ["b1", "fb", "v6a", "v6b"])
def test_check_passes_on_the_running_pods(cluster: Cluster, name: str) -> None:
    pod = cluster.pods[name]
    runtime_of(cluster, name).check(name, f"/var/run/netns/{pod.netns}")


def test_del_restores_the_nodes(cluster: Cluster) -> None:
    for proc in cluster.servers:
        proc.kill()
    for name in ("a1", "a2", "a3", "b1", "fa", "fb", "v6a", "v6b"):
        pod = cluster.pods[name]
        rt = runtime_of(cluster, name)
        path = f"/var/run/netns/{pod.netns}"
        rt.results.setdefault(name, pod.result)
        rt.delete(name, path)
        if name in ("a1", "fa"):
            rt.results[name] = pod.result
            rt.delete(name, path)  # DEL is repeatable
    filler = ipam_only(cluster, 0)
    for name in ("f1", "f2"):
        filler.delete(name, "")
    for i in range(2):
        state = node_state(cluster.node_ns(i), eni_links(cluster, i))
        assert state == cluster.initial[i], f"node {i} differs after DEL"
        db = Path(cluster.runtimes[i].conflist["plugins"][0]["dataDir"]) / "ipam.db"
        with sqlite3.connect(db) as conn:
            held = conn.execute("SELECT COUNT(*) FROM ips WHERE container_id IS NOT NULL")
            assert held.fetchone()[0] == 0, f"node {i} still holds IPs"
            leases = conn.execute("SELECT COUNT(*) FROM v6leases")
            assert leases.fetchone()[0] == 0, f"node {i} still holds IPv6-only leases"
