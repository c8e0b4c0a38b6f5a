"""Every operator command against the lab: human and --json output, errors and exit codes,
and ``doctor`` finding what goes wrong on a node."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.support.cli import Cli
from tests.support.lab import make_client

pytestmark = pytest.mark.netns


def test_status_and_listings(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    for cid in ("web", "db"):
        assert c.ipam.add(cid).code == 0
    human = c("status")
    assert human.code == 0, human.stderr
    assert c.ipam.node.instance_id in human.stdout and "2 in use" in human.stdout
    assert "default/pod-web" in human.stdout  # pod names from the runtime's CNI_ARGS
    doc = c("status", "--json").doc
    assert doc["ips"]["in_use"] == 2 and doc["capacity"]["max_pods"] == 42
    assert {p["pod"] for p in doc["pods"]} == {"default/pod-web", "default/pod-db"}

    allocations = c("ipam", "allocations", "--json").doc
    assert sorted(a["pod"] for a in allocations) == ["default/pod-db", "default/pod-web"]
    table = c("ipam", "allocations").stdout.splitlines()
    assert table[0].split() == ["pod", "container", "ifname", "ip", "eni", "age"]
    assert len(table) == 3
    assert len(c("ipam", "free", "--json").doc) == 12  # a new ENI: 15 IPs, its primary kept out
    enis = c("ipam", "enis", "--json").doc
    assert [e["device"] for e in enis] == [0, 1] and enis[1]["pods"] == 2
    subnets = c("ipam", "subnets", "--json").doc
    assert any(s["tags"].get("cnivpc") == "pods" for s in subnets)
    limits = c("ipam", "limits", "--json").doc[0]
    assert (limits["enis"], limits["ipv4_per_eni"], limits["max_pods"]) == (4, 15, 42)
    assert c("ipam", "vpc-cidrs", "--json").doc[0]["used"] == ["10.0.0.0/16"]
    assert c("ipam", "peer-cidrs", "--json").doc == []
    bugs = c("ipam", "bugs", "--json").doc
    assert bugs[0]["affected"] is True  # c5 is a broken_cidr family
    assert c("max-pods").stdout.strip() == "42"
    assert c("max-pods", "--cap", "30").stdout.strip() == "30"


def test_max_pods_prefix_mode(cli: Any) -> None:
    c: Cli = cli("m5.large")
    assert c("max-pods", "--prefixes").stdout == "110\n"  # 2 ENIs x 9 slots x 16, capped
    doc = c("max-pods", "--prefixes", "--json").doc
    assert (doc["mode"], doc["vcpus"], doc["aws_calculator"], doc["source"]) == (
        "prefixes", 2, 110, "DescribeInstanceTypes")
    secondary = c("max-pods", "--json").doc  # AWS's table says 29 (see tests/unit/test_maxpods)
    assert (secondary["max_pods"], secondary["aws_calculator"]) == (18, 29)
    big = c("max-pods", "--prefixes", "--instance-type", "m5.24xlarge").stdout
    assert big == "250\n"  # 96 vCPUs: the high ceiling
    xen = c("max-pods", "--prefixes", "--instance-type", "m4.large")
    assert xen.code == 0 and xen.stdout == "9\n" and "not Nitro-based" in xen.stderr
    # EC2 refusing: vCPUs and Nitro from the built-in table
    c.ipam.lab.ec2.control.deny("DescribeInstanceTypes")
    table = c("max-pods", "--prefixes", "--json")
    assert table.code == 0 and table.doc["source"] == "built-in table"
    assert table.doc["max_pods"] == 110 and "built-in table" in table.stderr


def test_grow_and_release(cli: Any) -> None:
    c: Cli = cli("c5.xlarge", warmIPTarget=0)
    grown = c("ipam", "grow", "--count", "3")
    assert grown.code == 0 and "create" in grown.stdout
    assert c.ipam.add("web").code == 0
    ip = c.ipam.allocations()["web"]
    refused = c("ipam", "release", ip)
    assert refused.code == 2 and "hint:" in refused.stderr and "--force" in refused.stderr
    assert c("ipam", "release", ip, "--force").code == 0
    assert c.ipam.allocations() == {}
    missing = c("ipam", "release", "10.9.9.9", "--force")
    assert missing.code == 4 and "error:" in missing.stderr


def test_gc_releases_ips_of_gone_netns(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    assert c.ipam.add("alive").code == 0
    assert c.ipam.add("dead", netns="/var/run/netns/cnivpc-test-gone").code == 0
    dry = c("gc", "--dry-run", "--json")
    assert dry.code == 0 and len(dry.doc["released"]) == 1 and "dead" in dry.doc["released"][0]
    assert set(c.ipam.allocations()) == {"alive", "dead"}  # dry run changed nothing
    assert "released" in c("gc").stdout
    assert set(c.ipam.allocations()) == {"alive"}


def checks(c: Cli, **env: str) -> tuple[int, dict[str, Any]]:
    out = c("doctor", "--json", env=env or None)
    return out.code, {check["name"]: check for check in out.doc}


def test_doctor_healthy_then_finds_problems(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    assert c.ipam.add("web").code == 0
    code, found = checks(c)
    for name in ("imds", "store", "credentials", "iam", "eni-links", "eni-attached",
                 "allocations", "veths", "iptables"):
        assert found[name]["ok"] is True, found[name]
    human = c("doctor").stdout
    assert "✓ imds" in human

    # A leaked pod veth (ptp's naming, no pod behind it)
    subprocess.run(["ip", "-n", c.ipam.node.netns, "link", "add", "cnp0123456789ab", "type",
                    "veth", "peer", "name", "cnpx"], check=True)
    code, found = checks(c)
    assert code == 3 and found["veths"]["ok"] is False
    assert "cnp0123456789ab" in found["veths"]["detail"]

    # A missing IAM permission
    c.ipam.lab.ec2.control.deny("CreateNetworkInterface")
    code, found = checks(c)
    assert found["iam"]["ok"] is False and "CreateNetworkInterface" in found["iam"]["detail"]
    c.ipam.lab.ec2.control.allow("CreateNetworkInterface")

    # An ENI detached behind cnivpc's back
    eni = next(e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 1)
    make_client(c.ipam.lab).detach_network_interface(
        AttachmentId=eni["Attachment"]["AttachmentId"], Force=True)
    code, found = checks(c)
    assert found["eni-attached"]["ok"] is False
    assert eni["NetworkInterfaceId"] in found["eni-attached"]["detail"]
    assert "pods use it" in found["eni-attached"]["detail"]

    # The metadata unreachable
    code, found = checks(c, AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:9")
    assert code == 3 and found["imds"]["ok"] is False and found["imds"]["hint"]


def test_errors_and_help(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    assert c("help").code == 0 and "doctor" in c("help").stdout
    unknown = c("frobnicate")
    assert unknown.code == 2 and "hint:" in unknown.stderr
    bad = c("ipam", "grow", "--count", "0")
    assert bad.code == 2
    for command in ("status", "doctor", "gc", "max-pods", "install"):
        helped = c(command, "--help")
        assert helped.code == 0 and "usage:" in helped.stdout


def test_new_eni_and_safe_remove(cli: Any) -> None:
    c: Cli = cli("c5.xlarge", warmIPTarget=0)
    made = c("ipam", "new-eni", "--count", "4")
    assert made.code == 0, made.stderr
    assert "at device 1" in made.stdout and "with 4 IPs" in made.stdout
    eni = next(e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 1)
    assert len(eni["PrivateIpAddresses"]) == 5  # 4 pod IPs and its primary, never a pod's
    assert c.ipam.add("web").code == 0
    refused = c("ipam", "remove-eni", eni["NetworkInterfaceId"])
    assert refused.code == 2 and "default/pod-web" in refused.stderr
    assert "--force" in refused.stderr
    boot = next(e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 0)
    assert c("ipam", "remove-eni", boot["NetworkInterfaceId"], "--force").code == 2
    forced = c("ipam", "remove-eni", eni["NetworkInterfaceId"], "--force")
    assert forced.code == 0 and "1 pod(s) lost their IP" in forced.stdout
    left = make_client(c.ipam.lab).describe_network_interfaces(Filters=[
        {"Name": "tag:cnivpc.io/instance-id", "Values": [c.ipam.node.instance_id]}])
    assert left["NetworkInterfaces"] == []  # detached and deleted in EC2
    assert c.ipam.allocations() == {}
