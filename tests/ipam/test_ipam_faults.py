"""The IPAM under load and faults, against the lab: concurrent ADDs and DELs, EC2 throttling
bursts and 5xx, an ENI that never shows up in the kernel, and a detached ENI."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.ipam import Ipam
from tests.support.lab import make_client

pytestmark = pytest.mark.netns


def test_64_concurrent_adds_then_dels(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.4xlarge")  # 8 ENIs x 30: room for 210 pods
    ids = [f"c{i:02d}" for i in range(64)]
    adds = ipam.many("ADD", ids, workers=16)
    assert all(r.doc for r in adds), "every ADD printed JSON"
    assert [r.code for r in adds] == [0] * 64, [r.doc for r in adds if r.code][:2]
    ips = [r.ip for r in adds]
    assert len(set(ips)) == 64
    assert ipam.allocations() == dict(zip(ids, ips, strict=True))
    on_enis = {a["PrivateIpAddress"] for e in ipam.enis() for a in e["PrivateIpAddresses"]}
    assert set(ips) <= on_enis  # every handed-out IP really is on an ENI
    dels = ipam.many("DEL", ids, workers=16)
    assert [r.code for r in dels] == [0] * 64, [(r.doc, r.stderr[-500:]) for r in dels if r.code]
    assert all(r.doc == {} for r in dels)  # DEL prints nothing on success
    assert ipam.allocations() == {}


def test_throttling_burst_is_retried_within_the_deadline(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    ipam.lab.ec2.faults.throttle_next("CreateNetworkInterface", count=3)
    ipam.lab.ec2.faults.fail_next("AttachNetworkInterface", count=2, status=503)
    reply = ipam.add("c1")
    assert reply.code == 0, reply.doc
    calls = ipam.ec2_calls()
    assert calls["CreateNetworkInterface"] == 4 and calls["AttachNetworkInterface"] == 3
    assert len([e for e in ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]) == 1


def test_endless_throttling_is_code_11_and_creates_nothing_extra(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    ipam.lab.ec2.faults.throttle_next("CreateNetworkInterface", count=1000)
    started = time.monotonic()
    reply = ipam.add("c1", conf=ipam.config(timeout=4))
    assert reply.code == 1 and reply.doc["code"] == 11, reply.doc
    assert time.monotonic() - started < 15
    ipam.lab.ec2.faults.clear()
    assert len(ipam.enis()) == 1  # no ENI was created, none leaked
    assert ipam.add("c2").code == 0  # and the next ADD works


def test_eni_that_never_appears_is_rolled_back(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    ipam.lab.ec2.faults.hide_attach(instance_id=ipam.node.instance_id)
    reply = ipam.add("c1", conf=ipam.config(timeout=5))
    assert reply.code == 1 and reply.doc["code"] == 11, reply.doc
    assert "did not appear" in reply.doc["msg"]
    # Rolled back: detached and deleted, nothing tagged as ours is left in EC2.
    ours = make_client(ipam.lab).describe_network_interfaces(Filters=[
        {"Name": "tag:cnivpc.io/instance-id", "Values": [ipam.node.instance_id]}])
    assert ours["NetworkInterfaces"] == []
    assert ipam.allocations() == {}


def test_eni_detached_behind_our_back_is_forgotten(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge", reconcileInterval=0)
    first = ipam.add("c1")
    assert first.code == 0
    eni = next(e for e in ipam.enis() if e["Attachment"]["DeviceIndex"] == 1)
    make_client(ipam.lab).detach_network_interface(
        AttachmentId=eni["Attachment"]["AttachmentId"], Force=True)
    deadline = time.monotonic() + 10
    while eni["MacAddress"] in ipam.node_links() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = ipam.add("c2")
    assert second.code == 0, second.doc
    # The fabric unplugged the link; the IPAM forgot the ENI and its free IPs, and the new pod
    # got an IP on an attached ENI (not one of the detached ENI's).
    gone = {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]}
    assert second.ip not in gone
    attached = {a["PrivateIpAddress"] for e in ipam.enis() for a in e["PrivateIpAddresses"]}
    assert second.ip in attached
