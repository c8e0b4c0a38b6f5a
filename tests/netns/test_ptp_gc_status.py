"""GC and STATUS on a real kernel: GC removes exactly the per-pod state of attachments not in
the valid list (recognised by veth alias, chain comment, or an iif rule whose veth is gone)
and keeps the rest; STATUS answers 50 when the host interface is missing."""

from __future__ import annotations

import hashlib

import pytest

from .conftest import Topo, cni, config, ip_json, iptables_rules, ok, prev_result, sh

pytestmark = pytest.mark.netns


def veth(cid: str) -> str:
    return "cnp" + hashlib.sha256(f"{cid}/eth0".encode()).hexdigest()[:12]


def chain(cid: str) -> str:
    return "CNI-" + hashlib.sha512(f"cnivpc-test{cid}".encode()).hexdigest()[:24]


def test_gc_removes_stale_attachments_only(topo: Topo) -> None:
    pods = {"keep": ("10.0.16.41", topo.new_pod("keep", "10.0.16.41")),
            "stale": ("10.0.16.42", topo.new_pod("stale", "10.0.16.42")),
            "gone": ("10.0.16.43", topo.new_pod("gone", "10.0.16.43"))}
    for cid, (ip, path) in pods.items():
        ok(cni(topo, "ADD", config("1.1.0", prev_result("1.1.0", ip=ip), ipMasq=True),
               container_id=cid, netns=path))
    # "gone": the sandbox vanished without a DEL: its veth died, its rule and chain did not.
    sh("ip", "netns", "del", pods["gone"][1].rsplit("/", 1)[1])
    # An unrelated rule and table, not ours: GC must leave them alone.
    sh("ip", "rule", "add", "priority", "2000", "iif", "eth0", "lookup", "4000",
       netns=topo.node)
    sh("ip", "route", "add", "10.99.0.0/16", "dev", "lo", "table", "4000", netns=topo.node)

    gc = config("1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]})
    ok(cni(topo, "GC", gc, netns=""))

    links = [link["ifname"] for link in ip_json(topo.node, "link", "show")]
    assert veth("keep") in links and veth("stale") not in links
    iifs = sorted(r["iif"] for r in ip_json(topo.node, "rule", "show") if r.get("iif"))
    assert iifs == sorted(["eth0", veth("keep")])
    nat = "\n".join(iptables_rules(topo.node, "nat"))
    assert chain("keep") in nat
    assert chain("stale") not in nat and chain("gone") not in nat
    assert ip_json(topo.node, "route", "show", "table", "4000")
    sh("ping", "-c1", "-W2", "10.0.16.41", netns=topo.node)
    # Nothing left to collect: a second GC is a no-op.
    ok(cni(topo, "GC", gc, netns=""))
    assert veth("keep") in [link["ifname"] for link in ip_json(topo.node, "link", "show")]


def test_gc_ignores_other_networks_and_needs_the_list(topo: Topo) -> None:
    ok(cni(topo, "ADD", config("1.1.0", prev_result("1.1.0"), ipMasq=True),
           container_id="ctr1"))
    other = config("1.1.0", **{"cni.dev/valid-attachments": []})
    other["name"] = "another-network"
    ok(cni(topo, "GC", other, netns=""))
    # No valid-attachments key at all is not "nothing is valid": refused, nothing removed.
    refused = cni(topo, "GC", config("1.1.0"), netns="")
    assert refused.code == 1 and refused.error["code"] == 7
    assert veth("ctr1") in [link["ifname"] for link in ip_json(topo.node, "link", "show")]
    assert chain("ctr1") in "\n".join(iptables_rules(topo.node, "nat"))


def test_status(topo: Topo) -> None:
    assert ok(cni(topo, "STATUS", config("1.1.0"), netns="")) is None
    missing = config("1.1.0", hostInterface="nope0")
    reply = cni(topo, "STATUS", missing, netns="")
    assert reply.code == 1
    assert reply.error["code"] == 50 and "nope0" in reply.error["msg"]
