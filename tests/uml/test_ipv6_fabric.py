"""IPv6 over ipvlan on the lab's fabric (needs a kernel with ipvlan: UML here).

The pod side is wired by hand the way a dual-stack ipvlan leg would be (an ipvlan L2 slave of a
hot-plugged ENI holding the pod's own IPv6 address as a /128, default route via the VPC router's
``fe80::1``; no veth, no NAT), so these tests prove the *fabric* carries IPv6: pod to pod across
nodes (an address out of one ENI's /80 prefix, one single ENI address), and the egress-only
internet seeing the pod's own address while it cannot connect in.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from cnivpc.lab.fabric import INET6_ADDR, ROUTER_LL6, Fabric
from cnivpc.lab.probes import serve_whoami, whoami
from tests.support.lab import ipvlan_slave, ping, run_in

pytestmark = pytest.mark.uml

NODE_SUBNET = "10.0.0.0/24"
NODE_SUBNET6 = "2600:1f14:abc:de00::/64"
POD_SUBNET6 = "2600:1f14:abc:de80::/64"
PREFIX_A = "2600:1f14:abc:de80:8f3c::/80"  # delegated to n1's ENI
POD_A6 = "2600:1f14:abc:de80:8f3c::7"
POD_B6 = "2600:1f14:abc:de80::2b"  # a single address of n2's ENI


def ipvlan_pod6(fab: Fabric, node: str, eni_if: str, pod: str, pod_ip6: str) -> str:
    """A pod netns whose eth0 is an ipvlan L2 slave of ``eni_if`` with ``pod_ip6``/128."""
    netns = ipvlan_slave(fab, node, eni_if, pod)
    for cmd in (
        # the slave has the ENI's MAC: its EUI-64 link-local would be the ENI's (DAD clash)
        ["ip", "link", "set", "eth0", "addrgenmode", "none"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "-6", "addr", "add", f"{pod_ip6}/128", "dev", "eth0", "nodad"],
        ["ip", "-6", "route", "add", "default", "via", ROUTER_LL6, "dev", "eth0"],
    ):
        run_in(netns, *cmd, check=True)
    return netns


def test_ipv6_pods_across_nodes_and_the_egress_only_internet(
        fabric: Fabric, in_ns: Any, servers: list[subprocess.Popen[bytes]]) -> None:
    for cidr in (NODE_SUBNET6, POD_SUBNET6):
        fabric.add_subnet(cidr)
    fabric.add_node("n1", mac="02:00:0a:00:00:0a", ip_addr="10.0.0.10", subnet=NODE_SUBNET)
    fabric.add_node("n2", mac="02:00:0a:00:00:0b", ip_addr="10.0.0.11", subnet=NODE_SUBNET)
    mac_a, mac_b = "02:00:0a:00:10:0a", "02:00:0a:00:10:0b"
    if1 = fabric.plug("n1", "eni-a", mac_a, device_index=1)
    if2 = fabric.plug("n2", "eni-b", mac_b, device_index=1)
    fabric.set_addresses({PREFIX_A: mac_a, POD_B6: mac_b})
    pod_a = ipvlan_pod6(fabric, "n1", if1, "poda", POD_A6)
    pod_b = ipvlan_pod6(fabric, "n2", if2, "podb", POD_B6)

    assert ping(pod_a, f"{ROUTER_LL6}%eth0")  # the VPC router at its link-local address
    assert ping(pod_a, POD_B6) and ping(pod_b, POD_A6)  # across nodes, both families' way

    # the internet sees the pod's own IPv6 address: no NAT, no veth
    servers.append(serve_whoami(fabric.inet_ns, 8086, tag="internet", ipv6=True))
    assert whoami(pod_a, INET6_ADDR, 8086) == f"internet {POD_A6}"
    # and cannot open a connection to it (egress-only gateway)
    servers.append(serve_whoami(pod_a, 8087, tag="pod", ipv6=True))
    assert whoami(pod_b, POD_A6, 8087) == f"pod {POD_B6}"  # the VPC may
    before = fabric.egress_only_drops()
    assert whoami(fabric.inet_ns, POD_A6, 8087, timeout=0.5) == ""
    assert fabric.egress_only_drops() > before

    # the /80 belongs to n1's ENI: an address of it on n2 gets nothing
    ipvlan_pod6(fabric, "n2", if2, "podx", "2600:1f14:abc:de80:8f3c::99")
    assert not ping(pod_a, "2600:1f14:abc:de80:8f3c::99", attempts=1)
    assert ping(pod_b, POD_A6)
