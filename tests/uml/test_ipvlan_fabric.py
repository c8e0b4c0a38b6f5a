"""ipvlan on hot-plugged ENIs, on the lab's real fabric (needs a kernel with ipvlan: UML here).

The pod side is wired by hand, the way cnivpc's plugins wire it (ipvlan L2 slave of the ENI for
VPC traffic; an unnumbered veth to the node for everything else, SNATed to the node's primary
IP), so these tests prove the *fabric* carries the real data paths: subnet gateway, cross-node
pod to pod, pod to node, and internet egress only after SNAT.
"""

from __future__ import annotations

from typing import Any

import pytest

from cnivpc.lab.fabric import INET_ADDR, Fabric
from tests.support.lab import ipvlan_slave, ping, run_in

pytestmark = pytest.mark.uml

NODE_SUBNET = "10.0.0.0/24"
POD_SUBNET = "10.0.16.0/20"
POD_GW = "10.0.16.1"
VPC = "10.0.0.0/16"


def ipvlan_pod(fab: Fabric, node: str, eni_if: str, pod: str, pod_ip: str) -> str:
    """A pod netns whose eth0 is an ipvlan L2 slave of ``eni_if`` in ``node`` (cnivpc-ipvlan)."""
    netns = ipvlan_slave(fab, node, eni_if, pod)
    for cmd in (
        ["ip", "addr", "add", f"{pod_ip}/32", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        # VPC traffic leaves through the ENI, via the subnet's router (like VPC CNI's ipvlan mode)
        ["ip", "route", "add", POD_GW, "dev", "eth0", "scope", "link"],
        ["ip", "route", "add", VPC, "via", POD_GW, "dev", "eth0"],
    ):
        run_in(netns, *cmd, check=True)
    return netns


def test_ipvlan_slave_on_hotplugged_eni_pings_the_gateway(fabric: Fabric, in_ns: Any) -> None:
    fabric.add_subnet(POD_SUBNET)
    fabric.add_node("n1", mac="02:00:0a:00:00:0a", ip_addr="10.0.0.10", subnet=NODE_SUBNET)
    eni_mac = "02:00:0a:00:10:01"
    ifname = fabric.plug("n1", "eni-0000000000000001", eni_mac, device_index=1)
    assert ifname == "eth1"
    pod = ipvlan_pod(fabric, "n1", ifname, "pod1", "10.0.16.20")
    # ipvlan slaves share the master's MAC: on the wire the pod *is* the ENI, as VPC requires
    link = in_ns(pod, "ip", "-o", "link", "show", "eth0", check=True).stdout
    assert eni_mac in link
    assert ping(pod, POD_GW)
    # the hot-plug and unplug are the lab's: unplugging the ENI takes the slave with it
    assert fabric.unplug("n1", "eni-0000000000000001")
    assert "eth0" not in in_ns(pod, "ip", "-o", "link").stdout


def test_pods_across_nodes_and_snat_egress(fabric: Fabric, in_ns: Any) -> None:
    fabric.add_subnet(POD_SUBNET)
    fabric.add_node("n1", mac="02:00:0a:00:00:0a", ip_addr="10.0.0.10", subnet=NODE_SUBNET)
    fabric.add_node("n2", mac="02:00:0a:00:00:0b", ip_addr="10.0.0.11", subnet=NODE_SUBNET)
    if1 = fabric.plug("n1", "eni-a", "02:00:0a:00:10:0a", device_index=1)
    if2 = fabric.plug("n2", "eni-b", "02:00:0a:00:10:0b", device_index=1)
    pod_a = ipvlan_pod(fabric, "n1", if1, "poda", "10.0.16.20")
    pod_b = ipvlan_pod(fabric, "n2", if2, "podb", "10.0.16.30")

    assert ping(pod_a, "10.0.16.30")  # pod <-> pod across nodes, through the VPC fabric
    assert ping(pod_b, "10.0.0.10")  # pod -> other node's primary IP (routed by the VPC)

    # No route to the internet from the pod yet; give it the ptp path to its node
    # (cnivpc-ptp's shape: unnumbered veth, /32 routes, proxy-less static neighbour via gw)
    n1 = fabric.node_ns("n1")
    in_ns(n1, "ip", "link", "add", "veth-poda", "type", "veth", "peer", "name", "veth1",
          "netns", pod_a, check=True)
    in_ns(n1, "ip", "link", "set", "veth-poda", "up", check=True)
    in_ns(n1, "ip", "route", "add", "10.0.16.20/32", "dev", "veth-poda", "scope", "link",
          check=True)
    in_ns(pod_a, "ip", "link", "set", "veth1", "up", check=True)
    in_ns(pod_a, "ip", "addr", "add", "10.0.16.20/32", "dev", "veth1", check=True)
    in_ns(pod_a, "ip", "route", "add", "169.254.1.1", "dev", "veth1", "scope", "link", check=True)
    in_ns(pod_a, "ip", "route", "add", "default", "via", "169.254.1.1", "dev", "veth1", check=True)
    in_ns(n1, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/veth-poda/proxy_arp", check=True)

    # without SNAT the VPC drops it: the pod IP has no public mapping
    assert not ping(pod_a, INET_ADDR, attempts=1)
    in_ns(n1, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.0.16.20/32", "!", "-d", VPC,
          "-o", "eth0", "-j", "SNAT", "--to-source", "10.0.0.10", check=True)
    assert ping(pod_a, INET_ADDR)
    counters = in_ns(n1, "iptables", "-t", "nat", "-L", "POSTROUTING", "-v", "-n", "-x",
                     check=True).stdout
    assert any("SNAT" in line and int(line.split()[0]) >= 1 for line in counters.splitlines()
               if line.strip() and line.split()[0].isdigit())


def test_pods_out_of_prefixes_are_delivered_by_the_prefix_owner(fabric: Fabric) -> None:
    """Each node's ENI holds a /28 EC2 delegated (set_addresses with a CIDR): ipvlan pods with
    addresses out of those prefixes reach each other across nodes, and an address of one node's
    prefix configured on the other node gets nothing (the router delivers by EC2's map)."""
    fabric.add_subnet(POD_SUBNET)
    fabric.add_node("n1", mac="02:00:0a:00:00:0a", ip_addr="10.0.0.10", subnet=NODE_SUBNET)
    fabric.add_node("n2", mac="02:00:0a:00:00:0b", ip_addr="10.0.0.11", subnet=NODE_SUBNET)
    mac_a, mac_b = "02:00:0a:00:10:0a", "02:00:0a:00:10:0b"
    if1 = fabric.plug("n1", "eni-a", mac_a, device_index=1)
    if2 = fabric.plug("n2", "eni-b", mac_b, device_index=1)
    # ENI primaries 10.0.16.4/.5, and one /28 each, as EC2 would hand them out
    fabric.set_addresses({"10.0.16.4": mac_a, "10.0.16.5": mac_b,
                          "10.0.16.16/28": mac_a, "10.0.16.32/28": mac_b})
    pod_a = ipvlan_pod(fabric, "n1", if1, "poda", "10.0.16.17")  # first of a's prefix
    pod_b = ipvlan_pod(fabric, "n2", if2, "podb", "10.0.16.47")  # last of b's prefix
    assert ping(pod_a, "10.0.16.47") and ping(pod_b, "10.0.16.17")
    assert ping(pod_b, POD_GW) and ping(pod_a, "10.0.0.11")
    # an address of a's prefix on n2's ENI: the VPC still delivers it to a's ENI
    ipvlan_pod(fabric, "n2", if2, "podx", "10.0.16.30")
    assert not ping(pod_a, "10.0.16.30", attempts=1)
    # the prefix taken away: its addresses fall back to ordinary ARP (the lab's rule for
    # addresses EC2 did not assign), so the pod on n2 now answers
    fabric.set_addresses({"10.0.16.4": mac_a, "10.0.16.5": mac_b, "10.0.16.32/28": mac_b})
    assert ping(pod_a, "10.0.16.30")
