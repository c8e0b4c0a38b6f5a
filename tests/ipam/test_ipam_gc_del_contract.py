"""The GC and DEL contract against the lab, chained (``cnivpc ipam``) and fused (a program named
``cnivpc`` exec'd with CNI_COMMAND, as a runtime execs the fused entry):

* GC without a valid-attachments list refuses (code 7) and changes nothing; an explicit empty
  list collects everything of this network; a second network sharing the IPAM's dataDir
  (Multus) is never touched by this network's GC, DEL or CHECK;
* DEL finishes what it can: an unusable prevResult, a gone netns, a repeated DEL, a DEL after a
  failed ADD all exit 0 and release the IP;
* in fused mode a failed ADD gives its IP back, and GC, DEL and STATUS reach every part (ptp's
  leftovers in the node netns are removed by the fused GC and DEL);
* ``CNIVPC_AFTERWARDS=inline`` runs the pool refill in the plugin process, before it exits.

ipvlan itself needs a kernel with ipvlan (tests/uml); here its part fails or finds nothing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnivpc.plugins.ptp import naming
from tests.support.ipam import REPO, TAG, Ipam, Reply

pytestmark = pytest.mark.netns

KEY = "cni.dev/valid-attachments"
GARBAGE_PREV = {"cniVersion": "1.0.0", "ips": [{"address": "not-an-address"}],
                "interfaces": "nope"}


def valid(*cids: str, ifname: str = "eth0") -> dict[str, Any]:
    return {KEY: [{"containerID": c, "ifname": ifname} for c in cids]}


def held(ipam: Ipam) -> set[tuple[str, str, str]]:
    """(network, container ID, ifname) of every allocation in the store."""
    with ipam.db() as conn:
        return {(str(n), str(c), str(i)) for n, c, i in conn.execute(
            "SELECT COALESCE(network, ''), container_id, ifname FROM ips "
            "WHERE container_id IS NOT NULL")}


@pytest.fixture
def pod_netns() -> Iterator[str]:
    """A throw-away netns standing in for a pod sandbox (never the host's: the ipvlan part's
    DEL deletes links by name in CNI_NETNS); its path."""
    name = "cnt-" + secrets.token_hex(4) + "-pod"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# -- chained -----------------------------------------------------------------------------------

def test_gc_without_the_list_changes_nothing_and_an_empty_list_collects_all(
        ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    for cid in ("c1", "c2"):
        assert ipam.add(cid).code == 0
    before = ipam.allocations()
    for conf in (ipam.config(cniVersion="1.1.0"),
                 ipam.config(cniVersion="1.1.0", **{"cni.dev/other": []})):
        reply = ipam.run("GC", conf=conf)
        assert reply.code == 1 and reply.doc["code"] == 7, reply.doc
        assert "valid-attachments" in reply.doc["msg"]
        assert ipam.allocations() == before  # (it used to release every IP of the node)
    reply = ipam.run("GC", conf=ipam.config(cniVersion="1.1.0", **{KEY: []}))
    assert reply.code == 0, reply.doc
    assert ipam.allocations() == {}


def test_a_second_network_is_never_touched(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")

    def run(network: str, command: str, cid: str = "", ifname: str = "eth0",
            **conf: Any) -> Reply:
        return ipam.run(command, cid, ifname=ifname,
                        conf=ipam.config(cniVersion="1.1.0", name=network, **conf))

    a1 = run("net-a", "ADD", "c1")
    b1 = run("net-b", "ADD", "c1", "net1")
    assert a1.code == 0 and b1.code == 0 and run("net-b", "ADD", "c2", "net1").code == 0
    assert held(ipam) == {("net-a", "c1", "eth0"), ("net-b", "c1", "net1"),
                          ("net-b", "c2", "net1")}
    # net-b's GC knows only its own attachments: net-a's are not in its list.
    assert run("net-b", "GC", **valid("c2", ifname="net1")).code == 0
    assert held(ipam) == {("net-a", "c1", "eth0"), ("net-b", "c2", "net1")}
    # DEL and CHECK of net-b for an attachment net-a holds: not net-b's to release or see.
    assert run("net-b", "DEL", "c1").code == 0
    check = run("net-b", "CHECK", "c1", prevResult=a1.doc)
    assert check.code == 1 and check.doc["code"] == 7
    assert run("net-a", "CHECK", "c1", prevResult=a1.doc).code == 0
    # An empty list means "nothing of net-b is valid", not "nothing anywhere".
    assert run("net-b", "GC", **valid()).code == 0
    assert held(ipam) == {("net-a", "c1", "eth0")}
    assert run("net-a", "DEL", "c1").code == 0
    assert held(ipam) == set()


def test_del_finishes_what_it_can(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    # A DEL after a failed ADD (EC2 refuses the first ENI: nothing was allocated).
    ipam.lab.ec2.control.deny("CreateNetworkInterface")
    failed = ipam.add("c0", conf=ipam.config(timeout=5))
    assert failed.code == 1
    assert ipam.delete("c0").code == 0
    ipam.lab.ec2.control.allow("CreateNetworkInterface")
    assert ipam.add("c1").code == 0 and ipam.add("c2").code == 0
    # An unparsable prevResult: the IPAM never needed it (it used to fail with code 7 and keep
    # the IP, and the kubelet retried forever).
    bad = ipam.delete("c1", conf=ipam.config(prevResult=GARBAGE_PREV))
    assert bad.code == 0, bad.doc
    assert "prevResult is unusable" in bad.stderr
    assert set(ipam.allocations()) == {"c2"}
    assert ipam.delete("c1", conf=ipam.config(prevResult=GARBAGE_PREV)).code == 0  # twice
    # The netns gone (path removed) or not given at all.
    assert ipam.delete("c2", netns="/run/netns/cnt-gone-pod").code == 0
    assert ipam.delete("c2", netns="").code == 0
    assert ipam.allocations() == {}


def test_afterwards_inline_runs_the_refill_in_the_plugin_process(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")  # 15 IPs per ENI; the next ENI below 11 free
    for i in range(4):  # the first ADD creates an ENI with 15 IPs: 11 free after four
        assert ipam.add(f"p{i}").code == 0
    ipam.settle()
    log = ipam.workdir / "cnivpc.log"
    lines_before = len(log.read_text().splitlines())
    reply = ipam.add("p4", env={"CNIVPC_AFTERWARDS": "inline"})  # 10 free: the next ENI
    assert reply.code == 0, reply.doc
    assert ipam.background() == []  # no child was left behind...
    new = log.read_text().splitlines()[lines_before:]
    add_pid = {line.split()[2] for line in new if "ADD container=p4" in line}
    refill_pid = {line.split()[2] for line in new if "pool refill" in line}
    assert len(add_pid) == 1 and refill_pid == add_pid, new  # ... the ADD's process did it
    pod_enis = [e for e in ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]
    assert len(pod_enis) == 2  # before the plugin exited


# -- fused -------------------------------------------------------------------------------------

def fused_program(workdir: Path) -> Path:
    """An executable named ``cnivpc`` running the checkout's entry point: what a runtime
    execs for the fused conflist entry (argv[0] ``cnivpc``, CNI_COMMAND set, no arguments)."""
    path = workdir / "bin" / "cnivpc"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"#!{sys.executable}\nimport sys\n"
                        "from cnivpc.__main__ import main\nsys.exit(main())\n")
        path.chmod(0o755)
    return path


def fused_config(ipam: Ipam, **extra: Any) -> dict[str, Any]:
    ipam_keys = {k: v for k, v in ipam.config().items()
                 if k not in ("cniVersion", "name", "type", "logFile", "logLevel")}
    conf: dict[str, Any] = {
        "cniVersion": "1.1.0", "name": "cnivpc", "type": "cnivpc",
        "logFile": str(ipam.workdir / "cnivpc.log"), "logLevel": "debug",
        "ipam": ipam_keys, "ipvlan": {"mode": "l2"},
        "ptp": {"hostInterface": "eth0", "containerInterface": "eth1", "ipMasq": True}}
    for key, value in extra.items():
        if key in ("ipam", "ipvlan", "ptp"):
            conf[key] = {**conf[key], **value}
        else:
            conf[key] = value
    return conf


def fused(ipam: Ipam, command: str, container_id: str = "", netns: str = "",
          conf: dict[str, Any] | None = None) -> Reply:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin",
           "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773", "PYTHONPATH": str(REPO),
           TAG: str(ipam.workdir)}
    if container_id:
        env.update(CNI_CONTAINERID=container_id, CNI_IFNAME="eth0", CNI_NETNS=netns,
                   CNI_ARGS=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
                            f"K8S_POD_NAME=pod-{container_id}")
    proc = subprocess.run(
        ["ip", "netns", "exec", ipam.node.netns, str(fused_program(ipam.workdir))],
        input=json.dumps(conf if conf is not None else fused_config(ipam)), env=env,
        capture_output=True, text=True, timeout=120, cwd=REPO)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return Reply(proc.returncode, doc, proc.stderr)


def node_sh(ipam: Ipam, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ipam.node.netns, *argv], check=True,
                          capture_output=True, text=True).stdout


def ptp_leftovers(ipam: Ipam, cid: str, ip: str, table: int) -> None:
    """What a ptp ADD leaves on the node for ``cid``: the host veth (stable name, alias), its
    iif rule and table, the masquerade chain and the POSTROUTING jump to it."""
    veth = naming.host_veth_name(cid, "eth0")
    chain = naming.masq_chain("cnivpc", cid)
    comment = naming.masq_comment("cnivpc", cid)
    peer = "cnq" + secrets.token_hex(5)
    node_sh(ipam, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    node_sh(ipam, "ip", "link", "set", veth, "alias", naming.veth_alias("cnivpc", cid, "eth0"))
    node_sh(ipam, "ip", "link", "set", peer, "up")
    node_sh(ipam, "ip", "link", "set", veth, "up")
    node_sh(ipam, "ip", "route", "add", "10.0.0.0/16", "dev", veth, "table", str(table))
    node_sh(ipam, "ip", "rule", "add", "iif", veth, "lookup", str(table), "priority", "1024")
    node_sh(ipam, "iptables", "-w", "-t", "nat", "-N", chain)
    node_sh(ipam, "iptables", "-w", "-t", "nat", "-A", chain, "-d", f"{ip}/32", "-j", "ACCEPT",
            "-m", "comment", "--comment", comment)
    node_sh(ipam, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", ip, "-j", chain,
            "-m", "comment", "--comment", comment)


def ptp_state(ipam: Ipam, cid: str) -> dict[str, bool]:
    veth = naming.host_veth_name(cid, "eth0")
    chain = naming.masq_chain("cnivpc", cid)
    return {"veth": veth in node_sh(ipam, "ip", "-o", "link", "show"),
            "rule": bool(re.search(rf"iif {veth}\b", node_sh(ipam, "ip", "rule", "show"))),
            "chain": chain in node_sh(ipam, "iptables", "-w", "-t", "nat", "-S")}


GONE = {"veth": False, "rule": False, "chain": False}
THERE = {"veth": True, "rule": True, "chain": True}


def test_fused_failed_add_gives_its_ip_back_and_del_after_it_is_clean(
        ipam_node: Any, pod_netns: str) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    # The ipvlan part fails (its master does not exist) after the IPAM part allocated.
    conf = fused_config(ipam, ipvlan={"master": "nomaster0"})
    reply = fused(ipam, "ADD", "f1", pod_netns, conf)
    assert reply.code == 1 and "nomaster0" in reply.doc["msg"], reply.doc
    assert ipam.allocations() == {}  # rolled back: the IP is free again
    with ipam.db() as conn:
        assert conn.execute("SELECT COUNT(*) FROM ips").fetchone()[0] > 0  # it had one
    for _ in range(2):  # the runtime's DEL after a failed ADD, and a repeated one
        again = fused(ipam, "DEL", "f1", pod_netns)
        assert again.code == 0, again.doc


def test_fused_del_finishes_what_it_can(ipam_node: Any, pod_netns: str) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    # State as a fused ADD leaves it (the ipvlan slave aside: this kernel has none): the
    # IPAM's allocation and ptp's host side.
    added = ipam.add("f1", netns=pod_netns)
    assert added.code == 0
    ptp_leftovers(ipam, "f1", added.ip, 3001)
    subprocess.run(["ip", "netns", "del", pod_netns.rsplit("/", 1)[1]], check=True)
    # The netns is gone and prevResult cannot be parsed: everything found is removed anyway.
    conf = fused_config(ipam, prevResult=GARBAGE_PREV)
    reply = fused(ipam, "DEL", "f1", pod_netns, conf)
    assert reply.code == 0, (reply.doc, reply.stderr[-2000:])
    assert ipam.allocations() == {}
    assert ptp_state(ipam, "f1") == GONE
    assert fused(ipam, "DEL", "f1", pod_netns, conf).code == 0  # and again
    assert fused(ipam, "DEL", "f1", "", conf).code == 0  # without a netns


def test_fused_gc_reaches_every_part(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    keep, gone = ipam.add("keep"), ipam.add("gone")
    assert keep.code == 0 and gone.code == 0
    ptp_leftovers(ipam, "keep", keep.ip, 3001)
    ptp_leftovers(ipam, "gone", gone.ip, 3002)
    # No list: refused, nothing removed anywhere.
    refused = fused(ipam, "GC")
    assert refused.code == 1 and refused.doc["code"] == 7, refused.doc
    assert set(ipam.allocations()) == {"keep", "gone"}
    assert ptp_state(ipam, "keep") == THERE and ptp_state(ipam, "gone") == THERE
    # With the list: the IPAM and ptp parts both collect "gone" (ptp never got it before).
    reply = fused(ipam, "GC", conf=fused_config(ipam, **valid("keep")))
    assert reply.code == 0, (reply.doc, reply.stderr[-2000:])
    assert set(ipam.allocations()) == {"keep"}
    assert ptp_state(ipam, "gone") == GONE and ptp_state(ipam, "keep") == THERE
    # An empty list: nothing of this network is valid.
    assert fused(ipam, "GC", conf=fused_config(ipam, **valid())).code == 0
    assert ipam.allocations() == {} and ptp_state(ipam, "keep") == GONE


def test_fused_status_asks_every_part(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    assert fused(ipam, "STATUS").code == 0
    bad_ptp = fused(ipam, "STATUS", conf=fused_config(ipam, ptp={"hostInterface": "nope0"}))
    assert bad_ptp.code == 1 and bad_ptp.doc["code"] == 50 and "nope0" in bad_ptp.doc["msg"]
    bad_ipvlan = fused(ipam, "STATUS", conf=fused_config(ipam, ipvlan={"master": "nomaster0"}))
    assert bad_ipvlan.code == 1 and bad_ipvlan.doc["code"] == 50
    assert "nomaster0" in bad_ipvlan.doc["msg"]
    ipam.lab.ec2.control.deny("DescribeNetworkInterfaces")  # no free IP, EC2 refuses: IPAM 50
    bad_ipam = fused(ipam, "STATUS")
    assert bad_ipam.code == 1 and bad_ipam.doc["code"] == 50
    assert "EC2" in bad_ipam.doc["msg"]
