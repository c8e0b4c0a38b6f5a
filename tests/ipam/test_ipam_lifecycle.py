"""The IPAM's DEL deallocation, CHECK, STATUS and GC against the lab."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.ipam import Ipam
from tests.support.lab import make_client

pytestmark = pytest.mark.netns


def pod_eni_ips(ipam: Ipam) -> dict[str, list[str]]:
    return {e["NetworkInterfaceId"]: [a["PrivateIpAddress"] for a in e["PrivateIpAddresses"]]
            for e in ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1}


def test_del_unassigns_surplus_but_never_a_primary(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge", maxFreeIPs=2, warmIPTarget=0)
    ids = [f"c{i}" for i in range(4)]
    assert all(r.code == 0 for r in ipam.many("ADD", ids, workers=1))
    (eni, ips), = pod_eni_ips(ipam).items()
    assert len(ips) == 15  # a new ENI comes full: its primary, 4 used, 10 free
    assert ipam.delete("c0").code == 0  # 11 free now: keep 2, unassign 9
    after = pod_eni_ips(ipam)[eni]
    assert len(after) == 6  # the primary, 3 pods, 2 kept free
    assert ips[0] in after  # the primary stays (never a pod's, never unassigned)
    assert ipam.ec2_calls()["UnassignPrivateIpAddresses"] == 1  # one call per ENI


def test_check_finds_an_ip_removed_behind_our_back(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    added = ipam.add("c1")
    conf = ipam.config(prevResult=added.doc)
    assert ipam.run("CHECK", "c1", conf=conf).code == 0
    wrong = ipam.run("CHECK", "c1", conf=ipam.config(prevResult={
        **added.doc, "ips": [{"address": "10.0.99.9/20"}]}))
    assert wrong.code == 1 and wrong.doc["code"] == 7
    # A pod never holds an ENI's primary (which EC2 cannot unassign): take c2's IP away.
    second = ipam.add("c2")
    eni, on_eni = next(iter(pod_eni_ips(ipam).items()))
    assert second.ip != on_eni[0] and added.ip != on_eni[0]
    make_client(ipam.lab).unassign_private_ip_addresses(
        NetworkInterfaceId=eni, PrivateIpAddresses=[second.ip])
    gone = ipam.run("CHECK", "c2", conf=ipam.config(prevResult=second.doc))
    assert gone.code == 1 and "no longer assigned" in gone.doc["msg"]
    assert ipam.run("CHECK", "never-added", conf=conf).doc["code"] == 7


def test_status(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    conf = ipam.config(cniVersion="1.1.0")
    assert ipam.run("STATUS", conf=conf).code == 0
    ipam.lab.ec2.control.deny("DescribeNetworkInterfaces")
    denied = ipam.run("STATUS", conf=conf)  # no free IP yet, and EC2 refuses us
    assert denied.code == 1 and denied.doc["code"] == 50
    ipam.lab.ec2.control.allow("DescribeNetworkInterfaces")
    assert ipam.add("c1", conf=ipam.config()).code == 0
    ipam.lab.ec2.control.deny("DescribeNetworkInterfaces")
    assert ipam.run("STATUS", conf=conf).code == 0  # free IPs in hand: ADD can be served
    old = ipam.run("STATUS", conf=ipam.config(cniVersion="1.0.0"))
    assert old.doc["code"] == 1  # STATUS needs a 1.1.0 config


def test_gc_releases_gone_attachments_and_trims_idle_ips(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge", warmIPTarget=3, freeIPMaxAge=0.001)
    for cid in ("keep", "gone1", "gone2"):
        assert ipam.add(cid).code == 0
    conf = ipam.config(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]})
    reply = ipam.run("GC", conf=conf)
    assert reply.code == 0, reply.doc
    assert set(ipam.allocations()) == {"keep"}
    ips = next(iter(pod_eni_ips(ipam).values()))
    held = ipam.allocations()["keep"]
    spare = [ip for ip in ips[1:] if ip != held]  # ips[0] is the ENI's primary: always kept
    assert held in ips and len(spare) == 3  # the warm target stays; the idle rest unassigned
    legacy = ipam.config(cniVersion="1.1.0", **{"cni.dev/attachments": []})
    assert ipam.run("GC", conf=legacy).code == 0  # the legacy key works too
    assert ipam.allocations() == {}
    assert json.loads(json.dumps(ipam.ec2_calls())).get("UnassignPrivateIpAddresses", 0) >= 1
