"""The ipvlan plugin's DEL on the host kernel (DEL creates nothing, so it needs no ipvlan
support; ADD does, see tests/uml): it removes its slaves by name in the pod netns when they are
there, and exits 0 when the netns is gone, not given, not a netns, or prevResult is unusable.
Stand-ins for the slaves are veths named as the slaves would be (this kernel has neither ipvlan
nor dummy links)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Reply, Topo, ip_json, sh

pytestmark = pytest.mark.netns

GARBAGE_PREV = {"cniVersion": "1.0.0", "interfaces": 5, "ips": [{"address": "x"}]}


def ipvlan(topo: Topo, command: str, netns: str, prev: Any = None) -> Reply:
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "cnivpc-test",
                            "type": "cnivpc-ipvlan"}
    if prev is not None:
        conf["prevResult"] = prev
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_CONTAINERID": "ctr1", "CNI_IFNAME": "eth0",
           "CNI_NETNS": netns, "PYTHONPATH": REPO}
    done = subprocess.run(["ip", "netns", "exec", topo.node, sys.executable, "-m", "cnivpc",
                           "ipvlan"], input=json.dumps(conf), capture_output=True, text=True,
                          env=env, check=False)
    return Reply(done.returncode, json.loads(done.stdout) if done.stdout.strip() else None,
                 done.stderr)


def pod_links(topo: Topo) -> list[str]:
    return sorted(link["ifname"] for link in ip_json(topo.pod, "link", "show"))


def test_del_removes_the_slaves_and_ignores_an_unusable_prev_result(topo: Topo) -> None:
    for name, peer in (("eth0.1", "x1"), ("eth0.2", "x2"), ("other0", "other1")):
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", peer, netns=topo.pod)
    reply = ipvlan(topo, "DEL", topo.pod_path, GARBAGE_PREV)
    assert reply.code == 0, reply
    # eth0 (the stand-in veth) and its .N siblings are ours by name; other0 is not.
    assert pod_links(topo) == ["lo", "other0", "other1"]
    assert ipvlan(topo, "DEL", topo.pod_path, GARBAGE_PREV).code == 0  # twice


def test_del_without_a_usable_netns_exits_0(topo: Topo, tmp_path: Path) -> None:
    not_a_netns = tmp_path / "plain-file"
    not_a_netns.write_text("")
    for netns in ("", "/run/netns/cnt-gone-pod", str(not_a_netns)):
        reply = ipvlan(topo, "DEL", netns)
        assert reply.code == 0, (netns, reply)
