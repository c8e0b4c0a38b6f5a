"""IPv6 and the AWS service gateway endpoint in the lab's fabric, with real packets on the host
kernel (no ipvlan needed: addresses go on the ENI netdevs themselves, which is what the VPC sees
either way).

What is shown: the VPC router answers at ``fe80::1`` and at the subnet /64's base + 1; an ENI's
IPv6 address and every address of its /80 prefix reach that ENI and no other interface that
claims them; the internet host sees a node's own IPv6 address (no NAT) and cannot open a
connection inward (the egress-only gateway drops it, and counts the drop); the gateway endpoint
answers on the S3/DynamoDB prefix-list CIDRs with the source it saw (a "pod" address routed over
its ENI, or the node's), and without the endpoint route those CIDRs are the internet's: public
sources only, answered by the ``internet`` host.
"""

from __future__ import annotations

import ipaddress
import subprocess
from typing import Any

import pytest

from cnivpc.lab import fabric as fab
from cnivpc.lab.ec2.rules6 import SERVICE_CIDRS
from cnivpc.lab.endpoint import control_socket, request
from cnivpc.lab.probes import serve_whoami, whoami
from tests.support.lab import eventually, ping, run_in

pytestmark = pytest.mark.netns


def give_ipv6(client: Any, eni_id: str, count: int = 1) -> list[str]:
    out: list[str] = client.assign_ipv6_addresses(NetworkInterfaceId=eni_id,
                                                  Ipv6AddressCount=count)[
        "AssignedIpv6Addresses"]
    return out


def node_v6(lab: Any, client: Any, node: Any) -> str:
    """Give the node's primary ENI an IPv6 address in EC2 and on eth0 (a /128, as DHCPv6)."""
    (addr,) = give_ipv6(client, node.eni_id)
    run_in(node.netns, "ip", "-6", "addr", "add", f"{addr}/128", "dev", "eth0", "nodad",
           check=True)
    lab.sync_addresses()
    return addr


def test_the_router_answers_at_fe80_1_and_the_subnets_first_address(lab: Any,
                                                                      ec2_client: Any) -> None:
    a = lab.node(0)
    assert ping(a.netns, f"{fab.ROUTER_LL6}%eth0")  # no global address needed
    node_v6(lab, ec2_client, a)
    subnet6 = lab.topology.subnet_ipv6[a.subnet_id]
    router = str(ipaddress.IPv6Network(subnet6).network_address + 1)
    assert lab.fabric.subnets[subnet6] == router
    assert ping(a.netns, router)
    routes = run_in(a.netns, "ip", "-6", "route", "show", "default", check=True).stdout
    assert f"via {fab.ROUTER_LL6} dev eth0" in routes


def test_an_enis_ipv6_and_its_80_reach_that_eni_only(lab: Any, ec2_client: Any) -> None:
    a, b = lab.node(0), lab.node(1)
    src = node_v6(lab, ec2_client, a)
    eni = ec2_client.create_network_interface(SubnetId=lab.topology.pod_subnet(
        b.availability_zone))["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    ec2_client.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=b.instance_id,
                                        DeviceIndex=1)
    (single,) = give_ipv6(ec2_client, eni_id)
    prefix = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni_id, Ipv6PrefixCount=1)[
        "AssignedIpv6Prefixes"][0]
    block = ipaddress.IPv6Network(prefix)
    first, last = str(block[1]), str(block[-1])
    lab.sync_addresses()
    # wrong: node b's primary ENI claims them (EC2 gave them to its second ENI)
    for addr in (single, first):
        run_in(b.netns, "ip", "-6", "addr", "add", f"{addr}/128", "dev", "eth0", "nodad",
               check=True)
    assert not ping(a.netns, single, attempts=1)
    assert not ping(a.netns, first, attempts=1)
    for addr in (single, first):
        run_in(b.netns, "ip", "-6", "addr", "del", f"{addr}/128", "dev", "eth0", check=True)
    # right: on the ENI that holds them (replies leave through eth0: the VPC does not mind)
    link = lab.wait_for_link(b.instance_id, eni["MacAddress"])
    run_in(b.netns, "ip", "link", "set", link, "up", check=True)
    for addr in (single, first, last):
        run_in(b.netns, "ip", "-6", "addr", "add", f"{addr}/128", "dev", link, "nodad",
               check=True)
    assert ping(a.netns, single) and ping(a.netns, first) and ping(a.netns, last)
    assert src  # a's own address was the source (a has no other global one)
    # behind cnivpc's back (the control endpoint's `unassign`): gone from EC2 and the router
    assert lab.unassign_ips(eni_id, [single, prefix]) == {"eni": eni_id,
                                                          "unassigned": [single, prefix]}
    left = ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])[
        "NetworkInterfaces"][0]
    assert not left.get("Ipv6Addresses") and not left.get("Ipv6Prefixes")
    routes = run_in(lab.fabric.vpc_ns, "ip", "-6", "route", check=True).stdout
    assert prefix not in routes
    # with the /80 route gone the router has nowhere to send the prefix's other addresses
    assert not ping(a.netns, last, attempts=1)


def test_egress_only_internet_sees_the_own_address_and_cannot_connect_in(
        lab: Any, ec2_client: Any, servers: list[subprocess.Popen[bytes]]) -> None:
    a = lab.node(0)
    addr = node_v6(lab, ec2_client, a)
    servers.append(serve_whoami(lab.fabric.inet_ns, 8086, tag="internet", ipv6=True))
    assert whoami(a.netns, fab.INET6_ADDR, 8086) == f"internet {addr}"  # no NAT for IPv6
    # inbound: a listens on its IPv6 address; the internet's SYNs are dropped by the gateway
    servers.append(serve_whoami(a.netns, 8087, tag="node", ipv6=True))
    eventually(lambda: "8087" in run_in(a.netns, "ss", "-ltn").stdout)
    assert whoami(a.netns, addr, 8087) == f"node {addr}"  # it does listen
    before = lab.fabric.egress_only_drops()
    assert whoami(lab.fabric.inet_ns, addr, 8087, timeout=0.5) == ""
    assert lab.fabric.egress_only_drops() > before
    assert not ping(lab.fabric.inet_ns, addr, attempts=1)
    # and a's own connection out still works afterwards (the state is per connection)
    assert whoami(a.netns, fab.INET6_ADDR, 8086) == f"internet {addr}"


def test_the_gateway_endpoint_answers_on_the_service_cidrs_with_the_source_it_saw(
        lab: Any, ec2_client: Any, servers: list[subprocess.Popen[bytes]]) -> None:
    a = lab.node(0)
    s3 = str(ipaddress.IPv4Network(SERVICE_CIDRS["s3"][0])[10])
    ddb = str(ipaddress.IPv4Network(SERVICE_CIDRS["dynamodb"][0])[10])
    servers.append(serve_whoami(lab.fabric.vpce_ns, 443, tag="vpce"))
    servers.append(serve_whoami(lab.fabric.inet_ns, 443, tag="internet"))
    # a "pod" address on a second ENI, the S3 CIDR routed over that ENI (as a plugin's
    # prefix-list routes over the ipvlan leg would): the endpoint sees the pod's own address
    eni = ec2_client.create_network_interface(SubnetId=lab.topology.pod_subnet(
        a.availability_zone), SecondaryPrivateIpAddressCount=1)["NetworkInterface"]
    pod_ip = eni["PrivateIpAddresses"][1]["PrivateIpAddress"]
    ec2_client.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                        InstanceId=a.instance_id, DeviceIndex=1)
    lab.sync_addresses()
    link = lab.wait_for_link(a.instance_id, eni["MacAddress"])
    pod_cidr = lab.subnets[lab.topology.pod_subnet(a.availability_zone)]
    gw = lab.fabric.subnets[pod_cidr]
    run_in(a.netns, "ip", "link", "set", link, "up", check=True)
    run_in(a.netns, "ip", "addr", "add", f"{pod_ip}/32", "dev", link, check=True)
    run_in(a.netns, "ip", "route", "add", f"{gw}/32", "dev", link, "src", pod_ip, check=True)
    run_in(a.netns, "ip", "route", "add", SERVICE_CIDRS["s3"][0], "via", gw, "dev", link,
           "src", pod_ip, check=True)
    assert whoami(a.netns, s3, 443) == f"vpce {pod_ip}"
    # DynamoDB over the node's default route: the endpoint sees the node's address
    assert whoami(a.netns, ddb, 443) == f"vpce {a.primary_ip}"
    # without the endpoint route, the CIDRs are on the internet: the node (public) gets there,
    # the pod's private address does not
    # (through the lab's control endpoint, as `python -m cnivpc.lab endpoint-route off` does)
    answer = request(control_socket(lab.lab_id), "endpoint-route", {"routed": False})
    assert answer == {"ok": True, "result": {
        "routed": False, "cidrs": {k: list(v) for k, v in SERVICE_CIDRS.items()}}}
    assert whoami(a.netns, ddb, 443) == f"internet {a.primary_ip}"
    assert whoami(a.netns, s3, 443, timeout=0.5) == ""
    lab.fabric.set_endpoint_route(True)
    assert whoami(a.netns, s3, 443) == f"vpce {pod_ip}"
