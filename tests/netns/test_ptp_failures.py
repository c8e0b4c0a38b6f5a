"""ADD failures on a real kernel: every step already done is rolled back, whatever step
fails, and the node is left exactly as before (shared NodePort state aside)."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from cnivpc.plugins.ptp import naming

from .conftest import (
    POD_IP,
    Topo,
    cni,
    config,
    ip_json,
    iptables_rules,
    ok,
    prev_result,
    sh,
)

pytestmark = pytest.mark.netns

CID = "ctr1"
HOST_VETH = "cnp" + hashlib.sha256(f"{CID}/eth0".encode()).hexdigest()[:12]


def leftovers(topo: Topo) -> dict[str, Any]:
    return {
        "veths": [link["ifname"] for link in ip_json(topo.node, "link", "show")
                  if link["ifname"].startswith("cnp")],
        "pod_eth1": [link["ifname"] for link in ip_json(topo.pod, "link", "show")
                     if link["ifname"] == "eth1"],
        "iif_rules": [r for r in ip_json(topo.node, "rule", "show") if r.get("iif")],
        "tables": [r for r in ip_json(topo.node, "route", "show", "table", "all")
                   if r.get("table") not in (None, "main", "local")],
        "chains": [line for line in iptables_rules(topo.node, "nat") if "CNI-" in line],
        "pod_masq": [line for line in iptables_rules(topo.pod, "nat") if "MASQUERADE" in line],
    }


CLEAN = {"veths": [], "pod_eth1": [], "iif_rules": [], "tables": [], "chains": [],
         "pod_masq": []}


def test_existing_container_interface_fails_cleanly(topo: Topo) -> None:
    sh("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "other", netns=topo.pod)
    reply = cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True))
    assert reply.code == 1
    assert "eth1 already exists" in reply.error["msg"]
    state = leftovers(topo)
    assert state.pop("pod_eth1") == ["eth1"]  # the pre-existing one, untouched
    assert state == {k: v for k, v in CLEAN.items() if k != "pod_eth1"}


def test_ifname_equal_to_container_interface_is_code_7_and_changes_nothing(topo: Topo) -> None:
    """What podman 4.3's `network reload` sends when it picks the veth's name from the old
    result: CNI_IFNAME eth1, ptp's containerInterface. Refused up front, with the clash named
    (it was code 999 'eth1 already exists' after ipvlan had made its eth1)."""
    reply = cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True), ifname="eth1")
    assert reply.code == 1 and reply.out is not None and reply.out["code"] == 7, reply.out
    assert reply.out["msg"] == "CNI_IFNAME eth1 is also the ptp plugin's containerInterface"
    assert leftovers(topo) == CLEAN


def test_failure_after_pod_setup_rolls_back(topo: Topo) -> None:
    # A host route to the pod IP already exists: step 3 fails after the veth, the pod routes
    # and the pod-side MASQUERADE exist.
    sh("ip", "route", "add", f"{POD_IP}/32", "dev", "lo", netns=topo.node)
    reply = cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True))
    assert reply.code == 1
    assert f"add route {POD_IP}/32" in reply.error["msg"]
    assert leftovers(topo) == CLEAN


def test_late_failure_rolls_back_table_and_chain(topo: Topo, tmp_path: Any) -> None:
    # rp_filter cannot be written (read-only bind mount over it in the plugin's mount ns):
    # the ADD fails after the per-pod table, rule and masquerade chain were set up.
    frozen = tmp_path / "rp_filter"
    frozen.write_text("0\n")
    script = ("mount --bind -o ro \"$0\" /proc/sys/net/ipv4/conf/eth0/rp_filter && "
              "exec \"$@\"")
    reply = cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True),
                wrap=("unshare", "-m", "sh", "-c", script, str(frozen)))
    assert reply.code == 1, reply
    assert "rp_filter" in reply.error["msg"]
    assert leftovers(topo) == CLEAN
    # ... and the same ADD works once the obstacle is gone.
    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"), ipMasq=True)))


def test_second_add_without_del_fails_and_keeps_the_first(topo: Topo) -> None:
    conf = config("1.0.0", prev_result("1.0.0"))
    ok(cni(topo, "ADD", conf))
    reply = cni(topo, "ADD", conf)
    assert reply.code == 1 and f"host veth {HOST_VETH} already exists" in reply.error["msg"]
    assert leftovers(topo)["veths"] == [HOST_VETH]
    sh("ping", "-c1", "-W2", POD_IP, netns=topo.node)


def test_table_probe_skips_a_table_in_use(topo: Topo) -> None:
    first = naming.choose_table(256, HOST_VETH, set())
    assert first is not None
    sh("ip", "rule", "add", "priority", "3000", "lookup", str(first), netns=topo.node)
    ok(cni(topo, "ADD", config("1.0.0", prev_result("1.0.0"))))
    rule = next(r for r in ip_json(topo.node, "rule", "show") if r.get("iif") == HOST_VETH)
    assert int(rule["table"]) == naming.choose_table(256, HOST_VETH, {first})
    ok(cni(topo, "DEL", config("1.0.0")))
    # DEL leaves the table someone else's rule points at alone.
    assert [r["priority"] for r in ip_json(topo.node, "rule", "show")
            if r.get("table") == str(first)] == [3000]


def test_concurrent_adds_get_distinct_tables(topo: Topo) -> None:
    pods = {f"ctr{i}": topo.new_pod(f"p{i}", f"10.0.16.{30 + i}") for i in range(3)}
    replies: dict[str, Any] = {}

    def add(cid: str, path: str) -> None:
        prev = prev_result("1.1.0", ip=f"10.0.16.{30 + int(cid[-1])}")
        replies[cid] = cni(topo, "ADD", config("1.1.0", prev, ipMasq=True),
                           container_id=cid, netns=path)

    threads = [threading.Thread(target=add, args=item) for item in pods.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for reply in replies.values():
        ok(reply)
    tables = [r["table"] for r in ip_json(topo.node, "rule", "show") if r.get("iif")]
    assert len(tables) == 3 and len(set(tables)) == 3
    for i in range(3):
        sh("ping", "-c1", "-W2", f"10.0.16.{30 + i}", netns=topo.node)
