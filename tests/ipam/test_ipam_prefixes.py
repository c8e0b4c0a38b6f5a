"""Prefix delegation end to end: the built zipapp's ``cnivpc-ipam`` with ``ipv4Prefixes`` on a
lab node whose EC2 delegates /28 prefixes as AWS does (Nitro types only, aligned wholly free
blocks, ``InsufficientCidrBlocks`` on a fragmented subnet). Pods get single addresses out of
prefixes; a burst costs a handful of EC2 calls; a fragmented subnet or a type that takes no
prefixes still starts pods (the fallback), and the log and ``cnivpc status`` say why; GC gives
back whole idle prefixes only. Every scenario ends with ``cnivpc ipam audit`` clean."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

import pytest

from cnivpc.lab.ec2.topology import POD_TAGS
from tests.support.cli import Cli, audit, calls_of
from tests.support.lab import make_client

pytestmark = [pytest.mark.netns, pytest.mark.artifact]

MUTATING = ("AssignPrivateIpAddresses", "UnassignPrivateIpAddresses", "CreateNetworkInterface",
            "AttachNetworkInterface", "DetachNetworkInterface", "DeleteNetworkInterface",
            "ModifyNetworkInterfaceAttribute")


def mutating(c: Cli) -> dict[str, int]:
    c.ipam.settle()
    counts = {a: calls_of(c.ipam, a) for a in MUTATING}
    return {a: n for a, n in counts.items() if n}


def pod_enis(c: Cli) -> list[dict[str, Any]]:
    return [e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]


def in_prefixes(ip: str, eni: dict[str, Any]) -> bool:
    return any(ipaddress.ip_address(ip) in ipaddress.ip_network(p["Ipv4Prefix"])
               for p in eni.get("Ipv4Prefixes", []))


def test_forty_pods_out_of_prefixes_cost_three_mutating_calls(
        node: Callable[..., Cli]) -> None:
    c = node("m5.large", ipv4Prefixes=True)
    ids = [f"p{i:02d}" for i in range(40)]
    # The node's first pod alone (it reads the metadata and makes the ENI), then the burst: 4
    # first ADDs at once on a fresh node each read the lab's metadata, whose 1 s timeout a
    # loaded test machine can miss (code 11, which a kubelet would retry).
    replies = [c.ipam.add(ids[0]), *c.ipam.many("ADD", ids[1:], workers=4)]
    assert [r.code for r in replies] == [0] * 40, [r.doc for r in replies if r.code][:2]
    ips = [r.ip for r in replies]
    assert len(set(ips)) == 40
    (eni,) = pod_enis(c)
    # One ENI, its 9 slots (10 IPv4 on an m5.large, the primary's aside) all /28 prefixes:
    # 144 addresses; every pod's address is in one of them, none is a secondary IP.
    assert len(eni["Ipv4Prefixes"]) == 9
    assert [a for a in eni["PrivateIpAddresses"] if not a.get("Primary")] == []
    assert all(in_prefixes(ip, eni) for ip in ips)
    # Create (with its prefixes), Attach, DeleteOnTermination: nothing per pod.
    assert mutating(c) == {"CreateNetworkInterface": 1, "AttachNetworkInterface": 1,
                           "ModifyNetworkInterfaceAttribute": 1}
    status = c("status", "--json")
    assert status.code == 0, status.stderr
    assert status.doc["mode"] == "prefixes"
    assert status.doc["capacity"]["max_pods"] == 2 * 9 * 16
    assert len(status.doc["enis"][0]["prefixes"]) == 9
    for cid in ids[:20]:
        assert c.ipam.delete(cid).code == 0
    assert "UnassignPrivateIpAddresses" not in mutating(c)  # DEL never gives a prefix back
    assert audit(c) == []


def test_a_fragmented_subnet_falls_back_to_another_subnet_with_room(
        node: Callable[..., Cli]) -> None:
    # No subnetTags: every subnet of the node's AZ may take a pod ENI; the pod subnet (the
    # most free addresses, tried first) is fragmented, the node's subnet is not.
    c = node("m5.large", ipv4Prefixes=True, warmIPTarget=0)
    topo = c.ipam.lab.topology
    az = c.ipam.node.availability_zone
    topo.fragment(topo.pod_subnets[az])
    reply = c.ipam.add("pod-a")
    assert reply.code == 0, reply.doc
    (eni,) = pod_enis(c)
    assert eni["SubnetId"] == topo.node_subnets[az]
    assert len(eni["Ipv4Prefixes"]) == 9 and in_prefixes(reply.ip, eni)
    log = (c.ipam.workdir / "cnivpc.log").read_text()
    assert "falling back" in log and "fragmented" in log
    assert "fragmented" in c("status", "--json").doc["prefix_fallback"]["why"]
    assert audit(c) == []


def test_a_fragmented_subnet_falls_back_to_secondary_ips_and_says_why(
        node: Callable[..., Cli]) -> None:
    c = node("m5.large", ipv4Prefixes=True, warmIPTarget=0, subnetTags=dict(POD_TAGS))
    topo = c.ipam.lab.topology
    for subnet in topo.pod_subnets.values():  # every subnet a new ENI could go to
        topo.fragment(subnet)
    reply = c.ipam.add("pod-a")
    assert reply.code == 0, reply.doc
    (eni,) = pod_enis(c)
    assert eni.get("Ipv4Prefixes", []) == []
    assert reply.ip in {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]}
    log = (c.ipam.workdir / "cnivpc.log").read_text()
    assert "falling back to secondary IPs" in log
    status = c("status", "--json")
    assert "fragmented" in status.doc["prefix_fallback"]["why"], status.doc
    text = c("status").stdout
    assert "fallback:" in text and "fragmented" in text
    assert audit(c) == []


def test_an_instance_type_without_prefixes_uses_secondary_ips(
        node: Callable[..., Cli]) -> None:
    c = node("m4.large", ipv4Prefixes=True, warmIPTarget=0)
    reply = c.ipam.add("pod-a")
    assert reply.code == 0, reply.doc
    (eni,) = pod_enis(c)
    assert eni.get("Ipv4Prefixes", []) == []
    status = c("status", "--json").doc
    assert status["mode"].startswith("secondary IPs (ipv4Prefixes is set")
    assert audit(c) == []


def test_gc_gives_back_whole_idle_prefixes_only(node: Callable[..., Cli]) -> None:
    c = node("m5.large", ipv4Prefixes=True, warmIPTarget=0, ipBatchSize=2, reuseIPWait=0,
             freeIPMaxAge=1)
    first = c.ipam.add("pod-a")
    assert first.code == 0, first.doc
    (eni,) = pod_enis(c)
    assert len(eni["Ipv4Prefixes"]) == 2
    held_prefix = next(p["Ipv4Prefix"] for p in eni["Ipv4Prefixes"] if in_prefixes(
        first.ip, {"Ipv4Prefixes": [p]}))
    time.sleep(1.1)  # past freeIPMaxAge (a lower bound: later is as good)
    out = c("gc", "--json")
    assert out.code == 0, out.stderr
    (eni,) = pod_enis(c)
    # The prefix a pod holds an address of stays; the other, all 16 idle, is given back.
    assert [p["Ipv4Prefix"] for p in eni["Ipv4Prefixes"]] == [held_prefix]
    assert len(out.doc["unassigned"]) == 16
    assert c.ipam.add("pod-a").ip == first.ip
    assert audit(c) == []
    client = make_client(c.ipam.lab)
    assert client.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])[
        "NetworkInterfaces"][0]["Ipv4Prefixes"] == [{"Ipv4Prefix": held_prefix}]
