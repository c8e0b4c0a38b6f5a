"""The operator CLI knows both families (dual-stack, the IPAM's ``ipv6``), through the built
zipapp on a lab node whose VPC and subnets have IPv6: every listing shows a pod's IPv6 beside
its IPv4, each ENI's /80s (as EC2 has them) and the VPC's IPv6 CIDRs, ``limits`` IPv6 per ENI (as
DescribeInstanceTypes says), ``status`` the IPv6 counts, ``addresses`` the IPv6 bound in a
namespace (never link-local); ``release`` takes a pod's IPv6 as well as its IPv4, ``unassign``
refuses an IPv6 with what to do instead, ``gc`` and ``doctor`` name both addresses; doctor
checks what dual-stack needs; ``new-eni`` names the new ENI's /80. An IPv4-only node's tables
keep their columns."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from cnivpc.cli.exits import EXIT_NOT_FOUND, EXIT_USAGE
from tests.support.cli import Cli, audit
from tests.support.lab import eventually, make_client

pytestmark = [pytest.mark.netns, pytest.mark.artifact]


def ipv6_of(reply: Any) -> str:
    (v6,) = [ip["address"] for ip in reply.doc["ips"] if ":" in ip["address"]]
    return str(v6).split("/")[0]


def pod_eni(c: Cli) -> dict[str, Any]:
    (eni,) = [e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]
    return eni


def header(text: str) -> list[str]:
    return text.splitlines()[0].split()


def turn_on_ipv6(c: Cli) -> None:
    """What an operator does: ``"ipv6": true`` in the conflist; later ADDs read it too."""
    doc = json.loads(c.conflist.read_text())
    doc["plugins"][0]["ipv6"] = True
    c.conflist.write_text(json.dumps(doc))
    c.ipam.conf["ipv6"] = True


def test_listings_show_both_families(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0)
    a, b = c.ipam.add("a"), c.ipam.add("b")
    assert a.code == 0 and b.code == 0, (a.doc, b.doc)
    a6, b6 = ipv6_of(a), ipv6_of(b)
    eni = pod_eni(c)
    (prefix,) = [p["Ipv6Prefix"] for p in eni["Ipv6Prefixes"]]
    ec2 = make_client(c.ipam.lab)
    (subnet,) = ec2.describe_subnets(SubnetIds=[eni["SubnetId"]])["Subnets"]
    (subnet6,) = [s["Ipv6CidrBlock"] for s in subnet["Ipv6CidrBlockAssociationSet"]]

    allocations = c("ipam", "allocations", "--json")
    assert allocations.code == 0, allocations.stderr
    assert {(r["pod"], r["ip"], r["ipv6"]) for r in allocations.doc} == {
        ("default/pod-a", a.ip, a6), ("default/pod-b", b.ip, b6)}
    table = c("ipam", "allocations").stdout
    assert header(table) == ["pod", "container", "ifname", "ip", "ipv6", "eni", "age"]
    assert a6 in table and b6 in table

    enis = {e["eni"]: e for e in c("ipam", "enis", "--json").doc}
    mine = enis[eni["NetworkInterfaceId"]]
    assert (mine["ipv6_prefixes"], mine["ipv6_cidr"], mine["ipv6_pods"]) == ([prefix], subnet6, 2)
    table = c("ipam", "enis").stdout
    assert "ipv6_prefixes" in header(table) and prefix in table

    subnets = c("ipam", "subnets", "--json").doc
    truth = {s["SubnetId"]: [x["Ipv6CidrBlock"] for x in s.get("Ipv6CidrBlockAssociationSet", [])]
             for s in ec2.describe_subnets()["Subnets"]}
    assert subnets and all([s["ipv6_cidr"]] == truth[s["subnet"]] for s in subnets)
    assert "ipv6_cidr" in header(c("ipam", "subnets").stdout)

    (vpc,) = ec2.describe_vpcs(VpcIds=[eni["VpcId"]])["Vpcs"]
    vpc6 = [x["Ipv6CidrBlock"] for x in vpc["Ipv6CidrBlockAssociationSet"]]
    assert vpc6 and all(r["ipv6"] == vpc6 for r in c("ipam", "vpc-cidrs", "--json").doc)

    (limits,) = c("ipam", "limits", "--json").doc
    (itype,) = ec2.describe_instance_types(InstanceTypes=["c5.xlarge"])["InstanceTypes"]
    assert limits["ipv6_per_eni"] == itype["NetworkInfo"]["Ipv6AddressesPerInterface"] > 0
    assert limits["ipv6_supported"] is True and limits["ipv4_per_eni"] == 15

    status = c("status", "--json").doc
    assert status["ipv6"] == {"enabled": True, "pods": 2, "pods_without": 0, "enis": 1,
                              "enis_with_prefix": 1, "prefixes": 1, "ipv6_only": 0}
    assert {(p["ip"], p["ipv6"]) for p in status["pods"]} == {(a.ip, a6), (b.ip, b6)}
    assert status["enis"][0]["ipv6_prefixes"] == [prefix]
    human = c("status").stdout
    assert "ipv6:     on: 2 of 2 pods with IPv6, 1 of 1 pod ENIs with a /80 prefix" in human
    assert a6 in human and prefix in human and "problem" not in human

    _, found = doctor(c)
    assert found["ipv6"]["ok"] is True, found["ipv6"]
    assert "AssignIpv6Addresses" in found["iam"]["detail"]  # said to be untestable by DryRun
    assert audit(c) == []


def test_addresses_show_bound_ipv6_but_never_link_local(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0)
    reply = c.ipam.add("a")
    assert reply.code == 0, reply.doc
    a6 = ipv6_of(reply)
    netns = f"cnivpc-test-v6-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        # The pod's address on a link of its own, as the ipvlan plugin puts it on the slave.
        # (a veth pair: this kernel may have no dummy links; both ends up, d0 gets its fe80::)
        for cmd in (["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["link", "set", "d1", "up"], ["link", "set", "d0", "up"],
                    ["addr", "add", f"{a6}/128", "dev", "d0", "nodad"]):
            subprocess.run(["ip", "-n", netns, *cmd], check=True)

        def link_local() -> bool:
            out = subprocess.run(["ip", "-n", netns, "-6", "addr", "show", "dev", "d0"],
                                 capture_output=True, text=True, check=True).stdout
            return "fe80::" in out

        eventually(link_local)  # the kernel's own fe80:: is there: the listing must skip it
        rows = c("ipam", "addresses", "--json")
        assert rows.code == 0, rows.stderr
        mine = [r for r in rows.doc if r["netns"] == f"/var/run/netns/{netns}"]
        assert [(r["link"], r["address"], r["pod"]) for r in mine] == [
            ("d0", f"{a6}/128", "default/pod-a")]
        v6 = [ipaddress.ip_interface(r["address"]).ip for r in rows.doc if ":" in r["address"]]
        assert not any(ip.is_link_local for ip in v6)  # (IPv4's 169.254/16 is listed: IMDS)
        assert ("host", "127.0.0.1/8") in {(r["netns"], r["address"]) for r in rows.doc}
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def test_release_unassign_and_gc_by_ipv6(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0)
    a = c.ipam.add("a")
    gone = c.ipam.add("gone", netns="/var/run/netns/cnivpc-test-gone")
    assert a.code == 0 and gone.code == 0, (a.doc, gone.doc)
    a6 = ipv6_of(a)
    # Refused without --force, naming the pod and both its addresses; the IPv6 as typed by a
    # person (leading zeros, a prefix length) finds it too.
    spelled = ipaddress.ip_address(a6).exploded + "/128"
    refused = c("ipam", "release", spelled)
    assert refused.code == EXIT_USAGE, refused.stderr
    assert "default/pod-a" in refused.stderr and a.ip in refused.stderr
    assert "--force" in refused.stderr
    # unassign: a held IPv6 is refused like a held IPv4 (release first) ...
    held = c("ipam", "unassign", a6)
    assert held.code == EXIT_USAGE and "default/pod-a" in held.stderr and "release" in held.stderr
    # ... and any other IPv6 with what to do instead: /80s are not unassigned address by address
    (prefix,) = [p["Ipv6Prefix"] for p in pod_eni(c)["Ipv6Prefixes"]]
    spare = str(ipaddress.ip_network(prefix)[7])
    other = c("ipam", "unassign", spare)
    assert other.code == EXIT_USAGE and "/80" in other.stderr and "hint: " in other.stderr
    assert [p["Ipv6Prefix"] for p in pod_eni(c)["Ipv6Prefixes"]] == [prefix]  # EC2 untouched

    done = c("ipam", "release", a6, "--force")
    assert done.code == 0, done.stderr
    assert done.stdout == f"released {a.ip} and {a6} (was default/pod-a)\n"
    with c.ipam.db() as db:
        rows = db.execute("SELECT ip, container_id, ipv6 FROM ips WHERE ip = ?",
                          (a.ip,)).fetchall()
    assert rows == [(a.ip, None, None)]  # both addresses freed, the IPv4 back in the pool
    assert c("ipam", "release", a6, "--force").code == EXIT_NOT_FOUND
    assert c("ipam", "release", "not-an-address").code == EXIT_USAGE

    # gc names both addresses of the pod whose netns is gone, and frees them
    dry = c("gc", "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert dry.doc["released"] == [f"{gone.ip} and {ipv6_of(gone)} (default/pod-gone)"]
    assert c("gc").code == 0
    assert c.ipam.allocations() == {}
    assert audit(c) == []


def doctor(c: Cli) -> tuple[int, dict[str, Any]]:
    out = c("doctor", "--json")
    return out.code, {check["name"]: check for check in out.doc}


def test_a_node_turned_dual_stack(node: Callable[..., Cli]) -> None:
    """IPv4-only tables keep their columns; after ``ipv6`` is turned on, status names the pods
    set up before (they have no IPv6 until recreated); doctor fails when the kernel has IPv6
    off."""
    c = node("c5.xlarge", warmIPTarget=0)
    assert c.ipam.add("old").code == 0
    v4 = c("ipam", "allocations", "--json").doc
    assert [r["ipv6"] for r in v4] == [None]
    assert header(c("ipam", "allocations").stdout) == [
        "pod", "container", "ifname", "ip", "eni", "age"]
    status = c("status", "--json").doc
    assert status["ipv6"]["enabled"] is False and status["ipv6"]["pods_without"] == 1
    assert "ipv6:" not in c("status").stdout and "ipv6" not in header(c("ipam", "enis").stdout)

    turn_on_ipv6(c)
    new = c.ipam.add("new")
    assert new.code == 0, new.doc
    status = c("status", "--json").doc
    assert (status["ipv6"]["pods"], status["ipv6"]["pods_without"]) == (1, 1)
    (problem,) = [p for p in status["problems"] if "without IPv6" in p]
    assert "default/pod-old" in problem and "default/pod-new" not in problem
    human = c("status").stdout
    assert "1 of 2 pods with IPv6" in human and "default/pod-old" in human
    rows = {r["pod"]: r["ipv6"] for r in c("ipam", "allocations", "--json").doc}
    assert rows == {"default/pod-old": None, "default/pod-new": ipv6_of(new)}

    code, found = doctor(c)
    assert found["ipv6"]["ok"] is True, found["ipv6"]
    sysctl = ["ip", "netns", "exec", c.ipam.node.netns, "sysctl", "-qw"]
    subprocess.run([*sysctl, "net.ipv6.conf.all.disable_ipv6=1"], check=True)
    try:
        code, found = doctor(c)
        assert code == 3 and found["ipv6"]["ok"] is False
        assert "disable_ipv6" in found["ipv6"]["detail"] and found["ipv6"]["hint"]
    finally:
        subprocess.run([*sysctl, "net.ipv6.conf.all.disable_ipv6=0"], check=True)

    # A new ENI by hand comes with its /80, and says so
    added = c("ipam", "new-eni", "--count", "2")
    assert added.code == 0, added.stderr
    (eni,) = [e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 2]
    (prefix,) = [p["Ipv6Prefix"] for p in eni["Ipv6Prefixes"]]
    assert f"{eni['NetworkInterfaceId']} at device 2" in added.stdout
    assert added.stdout.rstrip().endswith(f"with 2 IPs and the IPv6 prefix {prefix}")


def test_ipv6_only_pods_are_in_every_listing_and_release_takes_their_ipv6(
        node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, ipv4=False)
    a, b = c.ipam.add("a"), c.ipam.add("b")
    assert a.code == 0 and b.code == 0, (a.doc, b.doc)
    a6, b6 = ipv6_of(a), ipv6_of(b)
    egress = {r.doc["ips"][1]["address"].split("/")[0] for r in (a, b)}
    listed = c("ipam", "allocations", "--json")
    assert listed.code == 0, listed.stderr
    rows = {r["ipv6"]: r for r in listed.doc}
    assert set(rows) == {a6, b6}
    assert all(r["ip"] is None for r in rows.values())  # no VPC IPv4
    assert {r["egress_ip"] for r in rows.values()} == egress
    text = c("ipam", "allocations").stdout
    assert header(text) == ["pod", "container", "ifname", "ip", "ipv6", "egress_ip", "eni", "age"]
    status = c("status", "--json")
    assert status.code == 0, status.stderr
    assert status.doc["ipv6"]["ipv6_only"] == 2 and status.doc["ips"]["in_use"] == 0
    assert {p["ipv6"] for p in status.doc["pods"]} == {a6, b6}
    assert "2 IPv6-only (no VPC IPv4)" in c("status").stdout
    enis = {e["eni"]: e for e in c("ipam", "enis", "--json").doc}
    assert enis[pod_eni(c)["NetworkInterfaceId"]]["ipv6_pods"] == 2
    # doctor: IPv6-only pods are pods (their netns alive), not leaks.
    _, checks = doctor(c)
    assert checks["allocations"]["ok"], checks["allocations"]
    assert "2 allocations" in checks["allocations"]["detail"], checks["allocations"]
    refused = c("ipam", "release", a6)
    assert refused.code == EXIT_USAGE and "held by" in refused.stderr
    released = c("ipam", "release", a6, "--force")
    assert released.code == 0, released.stderr
    assert [r["ipv6"] for r in c("ipam", "allocations", "--json").doc] == [b6]
    assert c("ipam", "release", a6, "--force").code == EXIT_NOT_FOUND
    assert audit(c) == []


def test_warm_in_ipv6_only_mode_readies_the_ipv6_eni_and_no_ipv4(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, ipv4=False)  # warmIPTarget keeps its default (8)
    first = c("ipam", "warm")
    assert first.code == 0, first.stderr
    assert "create an ENI for IPv6 pods (no secondary IPv4)" in first.stdout, first.stdout
    eni = pod_eni(c)
    assert len(eni["PrivateIpAddresses"]) == 1 and len(eni["Ipv6Prefixes"]) == 1
    again = c("ipam", "warm", "--json")
    assert again.code == 0 and again.doc["actions"] == [], again.stdout  # idempotent
    added = c.ipam.add("a")
    assert added.code == 0, added.doc
    assert pod_eni(c)["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
    with c.ipam.db() as db:
        assert db.execute("SELECT COUNT(*) FROM ips").fetchone()[0] == 0  # no IPv4 pool


@pytest.mark.parametrize("itype, expected", [("c5.xlarge", 110), ("m5.24xlarge", 250)])
def test_max_pods_of_ipv6_only_pods_is_the_kubelet_ceiling(node: Callable[..., Cli], itype: str,
                                                           expected: int) -> None:
    c = node(itype, ipv6=True, ipv4=False)
    out = c("max-pods", "--json")
    assert out.code == 0, out.stderr
    assert out.doc["mode"] == "ipv6-only" and out.doc["max_pods"] == expected, out.doc
    assert c("max-pods", "--cap", "50").stdout.strip() == "50"
