"""Real-kernel fixtures for the ptp plugin: a throw-away "node" network namespace per test
(so the host's own routes, rules and iptables are never touched), with a VPC peer and a pod,
and a helper that runs the plugin the way a runtime does: as a subprocess, inside the node
namespace, with CNI_* variables and the config on stdin.

Topology of ``topo`` (names are ``cnt-<random>-node`` etc.; ``topo6`` adds IPv6)::

    vpc netns                     node netns                         pod netns
    eni0 10.0.1.1/24 ----------- eth0 10.0.1.10/24 + 10.0.1.11/24    (the plugin adds eth1)
    lo 203.0.113.1/32 ("internet") default via 10.0.1.1
    pod0 ------------------------------------------------------------ eth0 10.0.16.23/20

The pod's eth0 stands in for the ipvlan slave (this kernel has no ipvlan): a veth whose other
end sits in the vpc netns, addressed and routed as the ipvlan plugin would leave it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_IP = "10.0.1.10"
NODE_IP2 = "10.0.1.11"
VPC_GW = "10.0.1.1"
INTERNET_IP = "203.0.113.1"
POD_IP = "10.0.16.23"
POD_GW = "10.0.16.1"
POD_ROUTES = ["10.0.0.0/16", "100.64.0.0/10"]
VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
VPC_GW6 = "fd00:1::1"
NODE_IP6 = "fd00:1::10"
INTERNET_IP6 = "2001:db8::1"
POD_IP6 = "fd00:16::23"
POD_ROUTE6 = "fd00::/16"


def sh(*argv: str, netns: str | None = None, check: bool = True,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``netns`` when given); raise with its stderr on failure."""
    full = (["ip", "netns", "exec", netns, *argv] if netns else list(argv))
    done = subprocess.run(full, capture_output=True, text=True, input=input, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(full)} -> {done.returncode}: {done.stderr.strip()}")
    return done


def ip_json(netns: str, *args: str) -> Any:
    """``ip -j <args>`` in ``netns``, parsed."""
    out = sh("ip", "-j", *args, netns=netns).stdout
    return json.loads(out) if out.strip() else []


def iptables_rules(netns: str, table: str, v6: bool = False) -> list[str]:
    """``iptables -S`` of ``table`` in ``netns``, one line per rule or chain."""
    return sh("ip6tables" if v6 else "iptables", "-w", "-t", table, "-S",
              netns=netns).stdout.splitlines()


@dataclass
class Topo:
    """Names and paths of one test's namespaces."""

    node: str
    vpc: str
    pod: str
    extra: list[str] = field(default_factory=list)

    @property
    def pod_path(self) -> str:
        return f"/run/netns/{self.pod}"

    def new_pod(self, suffix: str, ip: str) -> str:
        """Another pod netns with an 'ipvlan' eth0 at ``ip``; its path."""
        name = f"{self.node[:-5]}-{suffix}"
        _make_pod(name, self.vpc, f"p{suffix[:6]}", ip)
        self.extra.append(name)
        return f"/run/netns/{name}"


def _make_pod(pod: str, vpc: str, vpc_end: str, pod_ip: str) -> None:
    sh("ip", "netns", "add", pod)
    sh("ip", "link", "set", "lo", "up", netns=pod)
    sh("ip", "link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", vpc_end,
       netns=vpc)
    sh("ip", "link", "set", vpc_end, "up", netns=vpc)
    sh("ip", "addr", "add", f"{pod_ip}/20", "dev", "eth0", netns=pod)
    sh("ip", "link", "set", "eth0", "up", netns=pod)
    for dst in POD_ROUTES:
        sh("ip", "route", "add", dst, "via", POD_GW, "dev", "eth0", netns=pod)


@pytest.fixture
def topo(require_root: None) -> Iterator[Topo]:
    """Name: topo. Scope: function. Depends: require_root.

    Creates the node, vpc and pod namespaces of the module docstring and deletes them (and
    with them every link, route, rule and iptables rule inside) afterwards."""
    base = "cnt-" + secrets.token_hex(4)
    t = Topo(node=f"{base}-node", vpc=f"{base}-vpc", pod=f"{base}-pod")
    try:
        for name in (t.node, t.vpc):
            sh("ip", "netns", "add", name)
            sh("ip", "link", "set", "lo", "up", netns=name)
        sh("ip", "link", "add", "eth0", "netns", t.node, "type", "veth", "peer", "name",
           "eni0", netns=t.vpc)
        sh("ip", "addr", "add", f"{VPC_GW}/24", "dev", "eni0", netns=t.vpc)
        sh("ip", "addr", "add", f"{INTERNET_IP}/32", "dev", "lo", netns=t.vpc)
        sh("ip", "link", "set", "eni0", "up", netns=t.vpc)
        sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", "eth0", netns=t.node)
        sh("ip", "addr", "add", f"{NODE_IP2}/24", "dev", "eth0", netns=t.node)
        sh("ip", "link", "set", "eth0", "up", netns=t.node)
        sh("ip", "route", "add", "default", "via", VPC_GW, netns=t.node)
        _make_pod(t.pod, t.vpc, "pod0", POD_IP)
        yield t
    finally:
        for name in (t.pod, *t.extra, t.node, t.vpc):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def topo6(topo: Topo) -> Topo:
    """Name: topo6. Scope: function. Depends: topo.

    ``topo`` made dual-stack: node eth0 fd00:1::10/64 (default via the vpc's fd00:1::1),
    pod eth0 fd00:16::23/64; addresses without DAD so they are usable at once."""
    sh("ip", "addr", "add", f"{VPC_GW6}/64", "dev", "eni0", "nodad", netns=topo.vpc)
    sh("ip", "addr", "add", f"{INTERNET_IP6}/128", "dev", "lo", netns=topo.vpc)
    sh("ip", "addr", "add", f"{NODE_IP6}/64", "dev", "eth0", "nodad", netns=topo.node)
    sh("ip", "-6", "route", "add", "default", "via", VPC_GW6, netns=topo.node)
    sh("ip", "addr", "add", f"{POD_IP6}/64", "dev", "eth0", "nodad", netns=topo.pod)
    return topo


def prev_result(version: str, ip: str = POD_IP, netns: str = "") -> dict[str, Any]:
    """What IPAM + ipvlan hand to ptp: eth0 with the pod IP and the VPC routes."""
    ipc: dict[str, Any] = {"address": f"{ip}/20", "gateway": POD_GW, "interface": 0}
    if not version.startswith("1."):
        ipc["version"] = "4"
    iface: dict[str, Any] = {"name": "eth0", "mac": "02:00:00:00:00:01"}
    if netns:
        iface["sandbox"] = netns
    return {"cniVersion": version, "interfaces": [iface], "ips": [ipc],
            "routes": [{"dst": d, "gw": POD_GW} for d in POD_ROUTES],
            "dns": {"nameservers": ["10.0.0.2"]}}


def config(version: str = "1.1.0", prev: dict[str, Any] | None = None,
           **keys: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"cniVersion": version, "name": "cnivpc-test", "type": "cnivpc-ptp",
                            "hostInterface": "eth0", "containerInterface": "eth1"}
    if prev is not None:
        conf["prevResult"] = prev
    conf.update(keys)
    return conf


@dataclass
class Reply:
    code: int
    out: dict[str, Any] | None
    stderr: str

    @property
    def error(self) -> dict[str, Any]:
        assert self.code != 0 and self.out is not None, (self.code, self.out, self.stderr)
        return self.out


def cni(topo: Topo, command: str, conf: dict[str, Any], *, container_id: str = "ctr1",
        ifname: str = "eth0", netns: str | None = None, wrap: tuple[str, ...] = ()) -> Reply:
    """Run ``cnivpc ptp`` in the node namespace like a runtime would (behind the command
    prefix ``wrap``, if any)."""
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname,
           "CNI_NETNS": topo.pod_path if netns is None else netns, "CNI_PATH": "/opt/cni/bin",
           "PYTHONPATH": REPO}
    argv = ["ip", "netns", "exec", topo.node, *wrap, PYTHON, "-m", "cnivpc", "ptp"]
    done = subprocess.run(argv,
                          input=json.dumps(conf), capture_output=True, text=True, env=env,
                          check=False)
    out = json.loads(done.stdout) if done.stdout.strip() else None
    return Reply(done.returncode, out, done.stderr)


def ok(reply: Reply) -> dict[str, Any] | None:
    assert reply.code == 0, f"plugin failed: {reply.out} {reply.stderr}"
    return reply.out
