"""Addresses asked for by name (CNI_ARGS ``IP=``, podman's ``--ip``; ``runtimeConfig.ips``,
Multus' static IPs), through the built zipapp on a lab node: a free pool address is taken, even
in its cooldown (a restarted workload gets its address back); one of a pod ENI's subnet that the
node does not have yet is assigned by name and recorded as the pod's in the same decision; the
node's first pod ENI comes first when there is none. Never another address: held by another pod
is code 11 (its DEL may be on its way), an ENI's primary, an AWS-reserved address, one in no pod
ENI's subnet or one another ENI has in the VPC is code 101, text that is no address code 7; and
nothing is held after a refusal. The audit stays clean."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import Cli, audit, calls_of
from tests.support.lab import make_client

pytestmark = [pytest.mark.netns, pytest.mark.artifact]


def args(ip: str, pod: str = "x") -> dict[str, str]:
    return {"CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};IP={ip}"}


def ip_of(reply: Any) -> str:
    return str(reply.doc["ips"][0]["address"].split("/")[0])


def pod_eni(c: Cli) -> dict[str, Any]:
    (eni,) = [e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]
    return eni


def free_ips(c: Cli) -> list[str]:
    with c.ipam.db() as db:
        return [r[0] for r in db.execute("SELECT ip FROM ips WHERE container_id IS NULL "
                                         "ORDER BY ip")]


def test_a_requested_address_from_the_pool_even_cooling_or_assigned_by_name(
        node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", warmIPTarget=4, ipBatchSize=4)  # room left on the ENI
    first = c.ipam.add("pod-a")
    assert first.code == 0, first.doc
    a = ip_of(first)
    c.ipam.settle()
    spare = free_ips(c)[-1]
    got = c.ipam.add("pod-b", env=args(spare))
    assert got.code == 0 and ip_of(got) == spare, got.doc
    # A restarted workload: DEL, then ADD asking for its address, still in its cooldown.
    assert c.ipam.delete("pod-a").code == 0
    back = c.ipam.add("pod-a2", env=args(a, "pod-a2"))
    assert back.code == 0 and ip_of(back) == a, back.doc
    # Held by another pod: code 11 naming the holder; nothing held by the asker.
    taken = c.ipam.add("pod-c", env=args(a))
    assert taken.code != 0 and taken.doc["code"] == 11, taken.doc
    assert "pod-a2" in taken.doc["msg"], taken.doc
    assert "pod-c" not in c.ipam.allocations()
    # Not on the node yet, in the pod ENI's subnet: assigned by name, the pod's at once.
    eni = pod_eni(c)
    subnet = ipaddress.ip_network(next(s["CidrBlock"] for s in make_client(
        c.ipam.lab).describe_subnets(SubnetIds=[eni["SubnetId"]])["Subnets"]))
    wanted = str(subnet.network_address + 200)
    assert wanted not in free_ips(c)
    assigns = calls_of(c.ipam, "AssignPrivateIpAddresses")
    named = c.ipam.add("pod-d", env=args(f"{wanted}/{subnet.prefixlen}"))
    assert named.code == 0 and ip_of(named) == wanted, named.doc
    assert calls_of(c.ipam, "AssignPrivateIpAddresses") == assigns + 1
    assert wanted in {a["PrivateIpAddress"] for a in pod_eni(c)["PrivateIpAddresses"]}
    assert c.ipam.add("pod-d", env=args(wanted)).doc == named.doc  # a repeated ADD
    c.ipam.settle()
    assert audit(c) == []


@pytest.mark.parametrize("batch", [4, 0], ids=["room", "full-eni"])
def test_what_cannot_be_had_is_refused_and_nothing_is_held(node: Callable[..., Cli],
                                                           batch: int) -> None:
    # ipBatchSize 0: the ENI comes with every address it may have, so none can be added.
    c = node("c5.xlarge", warmIPTarget=2, ipBatchSize=batch)
    assert c.ipam.add("pod-a").code == 0
    eni = pod_eni(c)
    client = make_client(c.ipam.lab)
    (subnet_doc,) = client.describe_subnets(SubnetIds=[eni["SubnetId"]])["Subnets"]
    subnet = ipaddress.ip_network(subnet_doc["CidrBlock"])
    # Another ENI of the VPC holds this one (no node of ours has it).
    other = client.create_network_interface(SubnetId=eni["SubnetId"],
                                            PrivateIpAddress=str(subnet.network_address + 150))
    in_use = other["NetworkInterface"]["PrivateIpAddress"]
    cases = {
        eni["PrivateIpAddress"]: (101, "primary"),
        str(subnet.network_address + 1): (101, "reserved"),
        "10.99.0.5": (101, "subnet of no pod ENI"),
        in_use: (101, "in use in the VPC" if batch else "no free slot"),
        "not-an-ip": (7, "not an IP address"),
    }
    before = c.ipam.allocations()
    for n, (ip, (code, words)) in enumerate(cases.items()):
        reply = c.ipam.add(f"pod-x{n}", env=args(ip))
        assert reply.code != 0 and reply.doc["code"] == code, (ip, reply.doc)
        assert words in reply.doc["msg"], (ip, reply.doc)
    assert c.ipam.allocations() == before
    two = c.ipam.add("pod-y", env=args(f"{in_use},10.99.0.6"))
    assert two.doc["code"] == 7 and "more than one IPv4" in two.doc["msg"], two.doc
    c.ipam.settle()
    assert audit(c) == []


def test_runtime_config_ips_on_a_fresh_node_bring_its_first_eni(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", warmIPTarget=0)
    client = make_client(c.ipam.lab)
    tagged = [s for s in client.describe_subnets()["Subnets"]
              if {"Key": "cnivpc", "Value": "pods"} in s.get("Tags", [])
              and s["AvailabilityZone"] == c.ipam.node.availability_zone]
    best = max(tagged, key=lambda s: s["AvailableIpAddressCount"])
    wanted = str(ipaddress.ip_network(best["CidrBlock"]).network_address + 77)
    conf = c.ipam.config(runtimeConfig={"ips": [f"{wanted}/32"]})
    reply = c.ipam.add("pod-a", conf=conf)
    assert reply.code == 0 and ip_of(reply) == wanted, reply.doc
    assert calls_of(c.ipam, "CreateNetworkInterface") == 1
    assert audit(c) == []


def test_a_requested_ipv6_outside_the_enis_80_holds_nothing(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0)
    reply = c.ipam.add("pod-a", env=args("2001:db8::1"))
    assert reply.code != 0 and reply.doc["code"] == 101, reply.doc
    assert "2001:db8::1" in reply.doc["msg"], reply.doc
    assert c.ipam.allocations() == {}  # the IPv4 the ADD had taken went back
    assert audit(c) == []
