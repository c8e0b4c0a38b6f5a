"""IPv6-only IPAM (``ipv4: false`` with ``ipv6: true``, the AWS VPC CNI's IPv6 mode) through the
built zipapp on a lab node whose VPC and subnets have IPv6: the node's first IPv6 pod creates a
pod ENI with a /80 and no secondary IPv4; every pod gets an IPv6 out of that /80 and a node-local
egress IPv4 out of ``egressIPv4Range`` (no VPC IPv4, no IPv4 route); a repeated ADD gets the same,
CHECK confirms, DEL frees (repeatably), GC frees the attachments the runtime no longer lists, a
freed egress address is the last to come back, and the audit is clean. The keys that need the
pod's own VPC IPv4 are refused with code 7, and nothing is created."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import Cli, audit, calls_of
from tests.support.lab import make_client

pytestmark = [pytest.mark.netns, pytest.mark.artifact]

EGRESS = ipaddress.ip_network("169.254.172.0/22")
VALID = "cni.dev/valid-attachments"


def addresses(reply: Any) -> dict[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    found = [ipaddress.ip_interface(ip["address"]) for ip in reply.doc["ips"]]
    by_family = {ip.version: ip for ip in found}
    assert len(by_family) == len(found), reply.doc  # one address per family
    return by_family


def pod_enis(c: Cli) -> list[dict[str, Any]]:
    return [e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]


def leases(c: Cli) -> dict[str, tuple[str, str]]:
    if not (c.ipam.workdir / "state" / "ipam.db").exists():
        return {}  # refused before the store was opened
    with c.ipam.db() as db:
        return {cid: (v6, egress) for cid, v6, egress in db.execute(
            "SELECT container_id, ipv6, COALESCE(egress_ip, '') FROM v6leases")}


def test_ipv6_only_pods_get_an_ipv6_of_the_enis_80_and_a_node_local_egress_ipv4(
        node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, ipv4=False)
    first = c.ipam.add("pod-a")
    assert first.code == 0, first.doc
    (eni,) = pod_enis(c)
    # An ENI for IPv6 pods: its primary IPv4 only (EC2 gives every ENI one), and one /80.
    assert len(eni["PrivateIpAddresses"]) == 1
    (prefix,) = [ipaddress.ip_network(p["Ipv6Prefix"]) for p in eni["Ipv6Prefixes"]]
    assert prefix.prefixlen == 80
    second = c.ipam.add("pod-b")
    assert second.code == 0, second.doc
    a, b = addresses(first), addresses(second)
    for got in (a, b):
        assert got[6].network.prefixlen == 128 and got[6].ip in prefix
        assert got[4].network.prefixlen == 32 and got[4].ip in EGRESS
    assert a[6] != b[6] and a[4] != b[4]
    # IPv6 over the ENI via the VPC router; no IPv4 route at all (IPv4 goes via the node).
    assert first.doc["routes"] == [{"dst": "::/0", "gw": "fe80::1"}]
    assert [ip.get("gateway") for ip in first.doc["ips"]] == ["fe80::1", None]
    assert first.doc["interfaces"] == [{"name": c.ipam.node_links()[eni["MacAddress"]]}]
    # Nothing of the IPv4 pool: no pod holds, and the pool has, no VPC IPv4.
    with c.ipam.db() as db:
        assert db.execute("SELECT COUNT(*) FROM ips").fetchone()[0] == 0
    assert addresses(c.ipam.add("pod-a")) == a  # a repeated ADD: the same lease
    assert calls_of(c.ipam, "CreateNetworkInterface") == 1
    assert calls_of(c.ipam, "AssignIpv6Addresses") == 0  # the /80 came with the ENI

    check = c.ipam.run("CHECK", "pod-a", conf=c.ipam.config(prevResult=first.doc))
    assert check.code == 0, check.doc
    assert audit(c) == []

    for _ in range(2):  # DEL, and DEL again
        assert c.ipam.delete("pod-a").code == 0
    assert set(leases(c)) == {"pod-b"}
    # The freed egress address is the last to come back (its old flows may still be in the
    # node's conntrack): the next pod gets the one after pod-b's.
    third = addresses(c.ipam.add("pod-c"))
    assert third[4].ip == b[4].ip + 1 and third[4] != a[4]

    # GC: the runtime lists pod-c only; pod-b's lease goes, pod-c's stays.
    gc = c.ipam.run("GC", conf=c.ipam.config(cniVersion="1.1.0", **{VALID: [
        {"containerID": "pod-c", "ifname": "eth0"}]}))
    assert gc.code == 0, gc.doc
    assert set(leases(c)) == {"pod-c"}
    assert audit(c) == []


def test_no_egress_range_means_no_ipv4_at_all(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, ipv4=False, egressIPv4Range=None)
    reply = c.ipam.add("pod-a")
    assert reply.code == 0, reply.doc
    assert set(addresses(reply)) == {6}
    assert leases(c) == {"pod-a": (str(addresses(reply)[6].ip), "")}


def test_a_dual_stack_eni_serves_ipv6_only_pods_without_a_new_eni(
        node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0)
    dual = c.ipam.add("pod-a")
    assert dual.code == 0, dual.doc
    only = c.ipam.add("pod-b", conf=c.ipam.config(ipv4=False, name="v6net"))
    assert only.code == 0, only.doc
    assert calls_of(c.ipam, "CreateNetworkInterface") == 1
    assert addresses(only)[6] != addresses(dual)[6]
    (eni,) = pod_enis(c)
    (prefix,) = [ipaddress.ip_network(p["Ipv6Prefix"]) for p in eni["Ipv6Prefixes"]]
    assert addresses(only)[6].ip in prefix
    assert audit(c) == []


@pytest.mark.parametrize("extra, named", [
    ({"ipv6": False}, "ipv6: true"),
    ({"routeToCidrs": ["10.9.0.0/16"]}, "routeToCidrs"),
    ({"routeServicePrefixLists": ["s3"]}, "routeServicePrefixLists"),
    ({"ipv4Prefixes": True}, "ipv4Prefixes"),
    ({"egressIPv4Range": "169.254.172.0/31"}, "egressIPv4Range"),
    ({"egressIPv4Range": "fd00::/64"}, "egressIPv4Range"),
])
def test_what_ipv6_only_cannot_do_is_refused_before_anything_is_created(
        node: Callable[..., Cli], extra: dict[str, Any], named: str) -> None:
    c = node("c5.xlarge", ipv6=True, ipv4=False)
    reply = c.ipam.add("pod-a", conf=c.ipam.config(**extra))
    assert reply.code != 0 and reply.doc["code"] == 7, reply.doc
    assert named in reply.doc["msg"] + reply.doc.get("details", ""), reply.doc
    assert pod_enis(c) == [] and leases(c) == {}


@pytest.mark.parametrize("extra", [{"ipv4": False}, {}], ids=["ipv6-only", "dual-stack"])
def test_a_type_without_ipv6_prefixes_is_refused_before_any_eni_is_created(
        node: Callable[..., Cli], extra: dict[str, Any]) -> None:
    c = node("m4.large", ipv6=True, warmIPTarget=0, **extra)  # Xen: no prefix delegation
    client = make_client(c.ipam.lab)
    before = len(client.describe_network_interfaces()["NetworkInterfaces"])
    reply = c.ipam.add("pod-a")
    assert reply.code != 0 and reply.doc["code"] == 7, reply.doc
    assert "Nitro" in reply.doc["msg"] and "m4.large" in reply.doc["msg"], reply.doc
    # It used to create the ENI, then fail at the attach with code 999.
    assert len(client.describe_network_interfaces()["NetworkInterfaces"]) == before
    assert calls_of(c.ipam, "CreateNetworkInterface") == 0


@pytest.mark.parametrize("extra", [{"ipv4": False}, {}], ids=["ipv6-only", "dual-stack"])
def test_check_fails_once_the_pods_80_is_removed_outside_cnivpc(
        node: Callable[..., Cli], extra: dict[str, Any]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0, **extra)
    added = c.ipam.add("pod-a")
    assert added.code == 0, added.doc
    conf = c.ipam.config(prevResult=added.doc)
    assert c.ipam.run("CHECK", "pod-a", conf=conf).code == 0
    other = json.loads(json.dumps(added.doc))
    other["ips"] = [ip for ip in other["ips"] if ":" not in ip["address"]]
    if other["ips"]:  # a prevResult that lost the pod's IPv6 does not match
        wrong = c.ipam.run("CHECK", "pod-a", conf=c.ipam.config(prevResult=other))
        assert wrong.code != 0 and wrong.doc["code"] == 7, wrong.doc
    (eni,) = pod_enis(c)
    (prefix,) = [p["Ipv6Prefix"] for p in eni["Ipv6Prefixes"]]
    make_client(c.ipam.lab).unassign_ipv6_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv6Prefixes=[prefix])
    six = str(addresses(added)[6].ip)
    reply = c.ipam.run("CHECK", "pod-a", conf=conf)
    assert reply.code != 0 and reply.doc["code"] == 7, reply.doc
    assert six in reply.doc["msg"] and "no IPv6 prefix" in reply.doc["msg"], reply.doc


def test_a_burst_on_a_fresh_node_costs_one_eni_and_never_shares_an_address(
        node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, ipv4=False)
    ids = [f"pod-{i}" for i in range(8)]
    replies = c.ipam.many("ADD", ids, workers=8)
    assert all(r.code == 0 for r in replies), [r.doc for r in replies if r.code]
    got = [addresses(r) for r in replies]
    assert len({g[6] for g in got}) == len({g[4] for g in got}) == 8
    assert calls_of(c.ipam, "CreateNetworkInterface") == 1
    assert len(pod_enis(c)) == 1
    assert len(leases(c)) == 8
    assert all(r.code == 0 for r in c.ipam.many("DEL", ids, workers=8))
    assert leases(c) == {}
    assert audit(c) == []
