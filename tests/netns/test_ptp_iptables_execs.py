"""How many iptables execs a ptp ADD makes with ipMasq, counted by shims in front of the real
iptables binaries, and that the fewer execs leave the same rules: one in the pod and one
iptables-restore on the host per pod, but for the node's first pod (its NodePort marks are
missing: the restore's check fails and the listing path adds them, once); a chain an
interrupted ADD left behind is flushed, not kept; DEL removes exactly its own pod's rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cnivpc.plugins.ptp import naming

from .conftest import POD_IP, Topo, cni, config, iptables_rules, ok, prev_result, sh

pytestmark = pytest.mark.netns

TOOLS = ("iptables", "iptables-restore", "ip6tables", "ip6tables-restore")


@pytest.fixture
def execs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Name: execs. Scope: function. A log with one line per iptables exec ("tool args")."""
    log, shims = tmp_path / "execs", tmp_path / "shims"
    shims.mkdir()
    for tool in TOOLS:
        real = next(p for d in ("/usr/sbin", "/sbin", "/usr/bin")
                    if os.access(p := f"{d}/{tool}", os.X_OK))
        (shims / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexec {real} "$@"\n')
        (shims / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}")
    log.touch()
    return log


def counted(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    log.write_text("")
    return lines


def add(topo: Topo, cid: str, netns: str, ip: str) -> None:
    prev = prev_result("1.1.0", ip=ip, netns=netns)
    ok(cni(topo, "ADD", config("1.1.0", prev, ipMasq=True), container_id=cid, netns=netns))


def test_one_exec_in_the_pod_and_one_on_the_host_after_the_first_pod(topo: Topo,
                                                                      execs: Path) -> None:
    add(topo, "ctr1", topo.pod_path, POD_IP)
    first = counted(execs)
    # The node's first pod: pod -A, the host's attempt (NodePort marks missing), then the
    # listing path: nat -S, mangle -S, restore.
    assert [line.split()[0] for line in first] == [
        "iptables", "iptables-restore", "iptables", "iptables", "iptables-restore"], first
    second_pod = topo.new_pod("b", "10.0.16.24")
    add(topo, "ctr2", second_pod, "10.0.16.24")
    second = counted(execs)
    assert [line.split()[0] for line in second] == ["iptables", "iptables-restore"], second
    assert " -A POSTROUTING -o eth0 -j MASQUERADE" in second[0]

    mangle = [r for r in iptables_rules(topo.node, "mangle") if naming.NODEPORT_COMMENT in r]
    assert len(mangle) == 3  # added once, by the first pod
    nat = iptables_rules(topo.node, "nat")
    for cid, ip in (("ctr1", POD_IP), ("ctr2", "10.0.16.24")):
        chain = naming.masq_chain("cnivpc-test", cid)
        assert len([r for r in nat if r.startswith("-A POSTROUTING") and chain in r]) == 1
        assert len([r for r in nat if r.startswith(f"-A {chain} ")]) == 2
        assert any(f"-s {ip}/32" in r for r in nat if chain in r)
    pod_nat = iptables_rules(second_pod.rsplit("/", 1)[1], "nat")
    assert len([r for r in pod_nat if "MASQUERADE" in r]) == 1


def test_a_leftover_chain_is_flushed_and_del_removes_only_its_pod(topo: Topo,
                                                                  execs: Path) -> None:
    add(topo, "ctr1", topo.pod_path, POD_IP)
    chain = naming.masq_chain("cnivpc-test", "ctr2")
    # What an ADD killed between its restore and its answer could leave: the chain, with
    # something stale in it.
    sh("iptables", "-t", "nat", "-N", chain, netns=topo.node)
    sh("iptables", "-t", "nat", "-A", chain, "-j", "RETURN", netns=topo.node)
    second_pod = topo.new_pod("b", "10.0.16.24")
    counted(execs)
    add(topo, "ctr2", second_pod, "10.0.16.24")
    assert [line.split()[0] for line in counted(execs)] == ["iptables", "iptables-restore"]
    rules = [r for r in iptables_rules(topo.node, "nat") if r.startswith(f"-A {chain} ")]
    assert len(rules) == 2 and not any("RETURN" in r for r in rules), rules

    conf = config("1.1.0", prev_result("1.1.0", ip="10.0.16.24", netns=second_pod),
                  ipMasq=True)
    ok(cni(topo, "DEL", conf, container_id="ctr2", netns=second_pod))
    nat = iptables_rules(topo.node, "nat")
    assert not [r for r in nat if chain in r]
    mine = naming.masq_chain("cnivpc-test", "ctr1")
    assert len([r for r in nat if mine in r]) == 4  # -N, two rules, the jump
    assert len([r for r in iptables_rules(topo.node, "mangle")
                if naming.NODEPORT_COMMENT in r]) == 3
