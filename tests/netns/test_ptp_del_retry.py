"""ptp on a real kernel: DEL finishes what it can (an unusable prevResult, the pod netns gone, a
repeat, after a failed ADD: all exit 0 with the host state gone), GC without the list refuses
and changes nothing, and a retried ADD replaces what a killed ADD left (the nat chain and its
POSTROUTING jump) instead of failing on it."""

from __future__ import annotations

import ipaddress

import pytest

from cnivpc.plugins.ptp import naming

from .conftest import POD_IP, Topo, cni, config, ip_json, iptables_rules, ok, prev_result, sh

pytestmark = pytest.mark.netns

CID = "ctr1"
VETH = naming.host_veth_name(CID, "eth0")
CHAIN = naming.masq_chain("cnivpc-test", CID)
COMMENT = naming.masq_comment("cnivpc-test", CID)
GARBAGE_PREV = {"cniVersion": "1.0.0", "ips": [{"address": "nope"}], "routes": "x"}


def host_state(topo: Topo) -> dict[str, object]:
    nat = iptables_rules(topo.node, "nat")
    return {"veth": VETH in [link["ifname"] for link in ip_json(topo.node, "link", "show")],
            "rules": [r["table"] for r in ip_json(topo.node, "rule", "show")
                      if r.get("iif") == VETH],
            "chain_rules": [line for line in nat if line.startswith(f"-A {CHAIN} ")],
            "jumps": [line for line in nat if line.startswith("-A POSTROUTING")
                      and f"-j {CHAIN}" in line]}


CLEAN = {"veth": False, "rules": [], "chain_rules": [], "jumps": []}


def test_del_with_unusable_prev_result_and_gone_netns_removes_everything(topo: Topo) -> None:
    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True)))
    assert host_state(topo)["veth"] is True
    sh("ip", "netns", "del", topo.pod)
    reply = cni(topo, "DEL", config("1.0.0", GARBAGE_PREV, ipMasq=True))
    assert reply.code == 0, reply
    assert "prevResult is unusable" in reply.stderr
    assert host_state(topo) == CLEAN
    assert f"CNI-{CHAIN[4:]}" not in "\n".join(iptables_rules(topo.node, "nat"))
    for netns in (topo.pod_path, ""):  # again, with the netns path gone or not given
        assert cni(topo, "DEL", config("1.0.0", GARBAGE_PREV, ipMasq=True),
                   netns=netns).code == 0


def test_del_with_an_unusable_optional_key_still_tears_down(topo: Topo) -> None:
    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True)))
    reply = cni(topo, "DEL", config("1.0.0", prev_result("1.0.0"), ipMasq=True,
                                    mtu="jumbo", routeTableStart=-1))
    assert reply.code == 0, reply
    assert host_state(topo) == CLEAN
    assert not [line for line in iptables_rules(topo.pod, "nat") if "MASQUERADE" in line]


def test_del_after_a_failed_add_exits_0(topo: Topo) -> None:
    sh("ip", "route", "add", f"{POD_IP}/32", "dev", "lo", netns=topo.node)  # ADD fails late
    assert cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True)).code == 1
    for _ in range(2):
        assert cni(topo, "DEL", config("1.0.0", prev_result("1.0.0"), ipMasq=True)).code == 0
    assert host_state(topo) == CLEAN


def test_gc_without_the_list_refuses_and_keeps_everything(topo: Topo) -> None:
    ok(cni(topo, "ADD", config("1.1.0", prev_result("1.1.0"), ipMasq=True)))
    before = host_state(topo)
    reply = cni(topo, "GC", config("1.1.0"), netns="")
    assert reply.code == 1 and reply.error["code"] == 7
    assert "valid-attachments" in reply.error["msg"]
    assert host_state(topo) == before


def test_retried_add_replaces_the_leftovers_of_a_killed_add(topo: Topo) -> None:
    """A killed ADD left the pod's nat chain (with rules for another IP: an older attempt) and
    a POSTROUTING jump to it, and a rule ``iif <veth>`` to a table; its veth died with the
    netns. The retried ADD must replace the chain (``-F``, not ``-N``: iptables-restore
    refuses to create a chain that exists) and leave exactly one set of rules."""
    old_ip = "10.0.16.99"
    sh("iptables", "-w", "-t", "nat", "-N", CHAIN, netns=topo.node)
    for rule in naming.masq_chain_rules(ipaddress.ip_address(old_ip), COMMENT):
        sh("iptables", "-w", "-t", "nat", "-A", CHAIN, *rule, netns=topo.node)
    sh("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", old_ip, "-j", CHAIN,
       "-m", "comment", "--comment", COMMENT, netns=topo.node)
    sh("ip", "rule", "add", "priority", "1024", "iif", VETH, "lookup", "4001", netns=topo.node)

    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True)))
    state = host_state(topo)
    assert state["veth"] is True
    assert len(state["chain_rules"]) == 2 and all(POD_IP in line or "224.0.0.0/4" in line
                                                  for line in state["chain_rules"])
    assert not any(old_ip in line for line in state["chain_rules"])
    assert len(state["jumps"]) == 1 and POD_IP in state["jumps"][0]  # (the old one is gone)
    sh("ping", "-c1", "-W2", POD_IP, netns=topo.node)
    # DEL removes both rules iif the veth, the leftover one too.
    ok(cni(topo, "DEL", config("1.0.0", prev_result("1.0.0"), ipMasq=True)))
    assert host_state(topo) == CLEAN

