"""The fault matrix: the IPAM is never wrong, whatever the lab does to it.

Every scenario runs the built zipapp (``cnivpc-ipam`` by its multi-call entry, under
``env -i``, in the node's netns, seeing the node's own boot id) as a runtime execs it, breaks
the lab from the outside through its command line (``python -m cnivpc.lab fault|reboot|...``),
does what a kubelet does to recover (repeat the call, then GC), and ends with
``cnivpc ipam audit`` (store against EC2 and the kernel) finding no violation.

Kills happen at a named step, not after a random sleep: the step's EC2 answer is held by the lab
(``fault lost-response ACTION --hold``), the test waits until the lab has counted that call, and
SIGKILLs the plugin's whole process group while it waits for the answer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import Cli, audit, calls_of, lab_cli
from tests.support.ipam import Ipam
from tests.support.lab import eventually, make_client
from tests.support.zipapp import IMPORTS_PROBE, Zipapp

pytestmark = [pytest.mark.netns, pytest.mark.artifact]

MUTATING = ("Assign", "Unassign", "Attach", "Detach", "Create", "Delete", "Modify")


def tagged_enis(ipam: Ipam, instance_id: str | None = None) -> list[dict[str, Any]]:
    return list(make_client(ipam.lab).describe_network_interfaces(Filters=[
        {"Name": "tag:cnivpc.io/instance-id",
         "Values": [instance_id or ipam.node.instance_id]}])["NetworkInterfaces"])


def pod_enis(ipam: Ipam) -> list[dict[str, Any]]:
    return [e for e in ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]


def start_add(ipam: Ipam, container_id: str, *wrapper: str) -> subprocess.Popen[str]:
    """An ADD in the background, in its own process group (so a kill takes every process of
    it), optionally under ``wrapper`` (e.g. ``unshare --pid --fork``)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD",
           "CNI_PATH": "/opt/cni/bin", "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773",
           "CNI_CONTAINERID": container_id, "CNI_IFNAME": "eth0", "CNI_NETNS": "/proc/1/ns/net",
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container_id}"}
    argv = ipam.command("ipam", env=env)
    proc = subprocess.Popen([*wrapper, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(ipam.config()))
    proc.stdin.close()
    return proc


def kill_when_called(ipam: Ipam, proc: subprocess.Popen[str], action: str,
                     before: int) -> None:
    """Wait until the lab has counted a new ``action`` call (its answer is held), then SIGKILL
    the plugin's process group."""
    deadline = time.monotonic() + 60
    while calls_of(ipam, action) <= before:
        assert proc.poll() is None, f"the plugin ended before calling {action}"
        assert time.monotonic() < deadline, f"no {action} call"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def gc(ipam: Ipam, valid: list[str]) -> None:
    """The runtime's CNI GC with its list of valid attachments."""
    conf = {**ipam.config(), "cniVersion": "1.1.0", "cni.dev/valid-attachments": [
        {"containerID": cid, "ifname": "eth0"} for cid in valid]}
    reply = ipam.run("GC", conf=conf)
    assert reply.code == 0, reply.doc


# -- lost responses: applied by EC2, the answer never arrives ----------------------------------

@pytest.mark.parametrize("action", ["CreateNetworkInterface", "AttachNetworkInterface",
                                    "ModifyNetworkInterfaceAttribute"])
def test_lost_response_while_creating_an_eni(node: Callable[..., Cli], action: str) -> None:
    """Before: a lost Create was retried without a ClientToken (a second ENI, one leaked); a
    lost Attach was rolled back by deleting an ENI EC2 had attached (refused: attached,
    untracked, no DeleteOnTermination)."""
    c = node(warmIPTarget=0)
    lab_cli(c.ipam, "fault", "lost-response", action, "--drop")
    reply = c.ipam.add("pod-a")
    assert reply.code == 0, reply.doc
    assert len(tagged_enis(c.ipam)) == 1  # no second ENI, nothing leaked
    (eni,) = pod_enis(c.ipam)
    assert eni["Attachment"]["DeleteOnTermination"] is True
    assert audit(c) == []


def test_lost_response_of_an_assign(node: Callable[..., Cli]) -> None:
    c = node(warmIPTarget=0, ipBatchSize=1)
    assert c.ipam.add("pod-a").code == 0
    lab_cli(c.ipam, "fault", "lost-response", "AssignPrivateIpAddresses", "--drop")
    reply = c.ipam.add("pod-b")
    assert reply.code == 0, reply.doc
    assert reply.ip != c.ipam.add("pod-a").ip
    assert audit(c) == []


def test_lost_response_of_an_unassign(node: Callable[..., Cli]) -> None:
    """Before: the IPs went back to the pool although EC2 no longer had them (and could give
    them to another node); the audit would show them as on no ENI of ours."""
    c = node(warmIPTarget=0, maxFreeIPs=0, ipBatchSize=2)
    assert c.ipam.add("pod-a").code == 0
    assert c.ipam.add("pod-b").code == 0
    lab_cli(c.ipam, "fault", "lost-response", "UnassignPrivateIpAddresses", "--drop")
    gone = c.ipam.add("pod-b").ip
    assert c.ipam.delete("pod-b").code == 0
    (eni,) = pod_enis(c.ipam)
    assert gone not in {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]}
    free = c("ipam", "free", "--json").doc
    assert gone not in {f["ip"] for f in free}
    assert audit(c) == []


def test_lost_responses_when_removing_an_eni(node: Callable[..., Cli]) -> None:
    c = node(warmIPTarget=0)
    assert c.ipam.add("pod-a").code == 0
    assert c.ipam.delete("pod-a").code == 0
    (eni,) = pod_enis(c.ipam)
    lab_cli(c.ipam, "fault", "lost-response", "DetachNetworkInterface", "--drop")
    lab_cli(c.ipam, "fault", "lost-response", "DeleteNetworkInterface", "--drop")
    removed = c("ipam", "remove-eni", eni["NetworkInterfaceId"])
    assert removed.code == 0, removed.stderr
    assert tagged_enis(c.ipam) == []
    assert audit(c) == []


# -- SIGKILL at a step, then the kubelet's recovery: repeat the ADD, then GC --------------------

KILL_STEPS = [
    # (the EC2 call the plugin is killed in, conf)
    ("CreateNetworkInterface", {"warmIPTarget": 0}),
    ("AttachNetworkInterface", {"warmIPTarget": 0}),
    ("ModifyNetworkInterfaceAttribute", {"warmIPTarget": 0}),
    ("AssignPrivateIpAddresses", {"warmIPTarget": 0, "ipBatchSize": 1}),
]


@pytest.mark.parametrize(("action", "conf"), KILL_STEPS, ids=[s[0] for s in KILL_STEPS])
@pytest.mark.parametrize("pidns", [False, True], ids=["host-pidns", "own-pidns"])
def test_sigkill_at_a_step_then_retry_and_gc(node: Callable[..., Cli], action: str,
                                             conf: dict[str, Any], pidns: bool) -> None:
    """Before, in its own pid namespace: the killed op's recorded pid (1) named the host's
    init, so the op never expired and the retried ADD waited for it and failed with 11."""
    c = node(**conf)
    if action == "AssignPrivateIpAddresses":
        assert c.ipam.add("first").code == 0  # an ENI with room, no free IP
    before = calls_of(c.ipam, action)
    lab_cli(c.ipam, "fault", "lost-response", action, "--hold", "120")
    wrapper = ("unshare", "--pid", "--fork", "--kill-child") if pidns else ()
    proc = start_add(c.ipam, "pod-k", *wrapper)
    kill_when_called(c.ipam, proc, action, before)
    lab_cli(c.ipam, "fault", "clear")
    started = time.monotonic()
    retry = c.ipam.add("pod-k")
    assert retry.code == 0, retry.doc
    assert time.monotonic() - started < 30  # nobody waited for the dead process's work
    gc(c.ipam, ["pod-k"] + (["first"] if action == "AssignPrivateIpAddresses" else []))
    assert audit(c) == []
    # At most one ENI beyond what the node uses: the one a killed create left, tagged and
    # detached, which the leaked-ENI sweep collects (the audit flags it after 5 minutes).
    attached = [e for e in tagged_enis(c.ipam) if e["Status"] == "in-use"]
    assert len(attached) == 1


# -- the metadata, reboots, moved disks --------------------------------------------------------

def test_metadata_lag_does_not_make_reconcile_forget_a_new_eni(node: Callable[..., Cli]) -> None:
    """Before: the next reconcile dropped an ENI whose MAC the metadata did not list yet: its
    free IPs vanished and the next ADD tried a second ENI at its device index."""
    c = node(warmIPTarget=0, reconcileInterval=0, ipBatchSize=4)
    lab_cli(c.ipam, "imds-lag", "--lag", "30")
    replies = [c.ipam.add(f"pod-{i}") for i in range(4)]
    assert [r.code for r in replies] == [0, 0, 0, 0], [r.doc for r in replies]
    assert len(pod_enis(c.ipam)) == 1
    assert len(tagged_enis(c.ipam)) == 1
    assert audit(c) == []


def test_ips_unassigned_behind_our_back_are_never_handed_out(node: Callable[..., Cli]) -> None:
    """Before: a free IP unassigned outside cnivpc stayed free and went to the next pod, which
    then had no network."""
    c = node(warmIPTarget=0, reconcileInterval=0, ipBatchSize=7)
    lab_cli(c.ipam, "imds-lag", "--lag", "0", "--remove-lag", "0")
    assert c.ipam.add("pod-0").code == 0
    # A second ADD reconciles with a metadata that lists the new ENI's IPs: from then on the
    # metadata, not our own create's answer, says which IPs the ENI has.
    assert c.ipam.add("pod-1").code == 0
    (eni,) = pod_enis(c.ipam)
    free = sorted(f["ip"] for f in c("ipam", "free", "--json").doc)
    stolen = free[:3]
    lab_cli(c.ipam, "unassign", eni["NetworkInterfaceId"], *stolen)
    got = {c.ipam.add(f"pod-{i}").ip for i in range(2, 4)}
    assert not got & set(stolen)
    found = {v["subject"] for v in audit(c)}
    assert found <= set(stolen)  # what the metadata still lists for a while, if anything
    assert audit(c, "--repair") == []


def test_reboot_voids_allocations_and_brings_the_enis_up(node: Callable[..., Cli]) -> None:
    c = node()
    assert c("ipam", "warm").code == 0
    assert all(c.ipam.add(f"pod-{i}").code == 0 for i in range(3))
    lab_cli(c.ipam, "reboot", c.ipam.node.instance_id)
    down = audit(c, "--no-ec2")
    assert {v["invariant"] for v in down} == {"eni-ready"}  # ENIs DOWN after the reboot
    reply = c.ipam.add("after-boot")
    assert reply.code == 0, reply.doc
    assert set(c.ipam.allocations()) == {"after-boot"}  # the old boot's pods are gone
    assert audit(c) == []


def test_state_copied_to_another_node_is_not_trusted(node: Callable[..., Cli],
                                                     zipapp: Zipapp) -> None:
    """Before: a store carried to another instance (a baked image, a moved volume) handed out
    the old instance's IPs from the warm path, without reading the metadata."""
    a = node()
    assert a("ipam", "warm").code == 0
    assert a.ipam.add("pod-a").code == 0
    lab = a.ipam.lab
    other = lab.add_node() if len(lab.nodes) < 2 else lab.node(1)
    b = Cli(Ipam(lab=lab, node=other, workdir=a.ipam.workdir / "b", conf=a.ipam.conf),
            a.conflist)
    b.ipam.use_zipapp(zipapp).with_node_boot_id()
    shutil.copytree(a.ipam.workdir / "state", b.ipam.workdir / "state")
    b_conf = {**b.ipam.config()}
    b.conflist = a.conflist.with_name("b.conflist")
    doc = json.loads(a.conflist.read_text())
    doc["plugins"][0].update({k: b_conf[k] for k in ("dataDir", "lockPath", "logFile")})
    b.conflist.write_text(json.dumps(doc))
    a_ips = {x["PrivateIpAddress"] for e in pod_enis(a.ipam) for x in e["PrivateIpAddresses"]}
    reply = b.ipam.add("pod-b")
    assert reply.code == 0, reply.doc
    assert reply.ip not in a_ips
    assert audit(b) == []
    assert audit(a) == []


def test_ec2_down_for_minutes_while_the_pool_is_warm(node: Callable[..., Cli]) -> None:
    """Before: DescribeVpcs and friends ran inside the decision, under the host lock: with EC2
    unreachable, ADDs failed with 999 although free IPs were in the pool."""
    c = node(reconcileInterval=0)
    assert c("ipam", "warm").code == 0
    lab_cli(c.ipam, "fault", "fail", "*", "--count", "100000", "--status", "503")
    lab_cli(c.ipam, "fault", "deny", "Describe*")
    for i in range(4):
        assert c.ipam.add(f"pod-{i}").code == 0
    for i in range(4):
        assert c.ipam.delete(f"pod-{i}").code == 0
    lab_cli(c.ipam, "fault", "clear")
    assert audit(c) == []


def test_enis_of_an_instance_that_died_mid_creation_are_collected(
        node: Callable[..., Cli], zipapp: Zipapp) -> None:
    """Before: an ENI created for an instance that died before attaching it was tagged with that
    instance and collected by nobody (only a node's own ENIs were swept)."""
    a = node()
    lab = a.ipam.lab
    doomed = lab.add_node()
    b = Ipam(lab=lab, node=doomed, workdir=a.ipam.workdir / "doomed",
             conf={"warmIPTarget": 0}).use_zipapp(zipapp).with_node_boot_id()
    before = calls_of(b, "CreateNetworkInterface")
    lab_cli(b, "fault", "lost-response", "CreateNetworkInterface", "--hold", "120")
    proc = start_add(b, "pod-x")
    kill_when_called(b, proc, "CreateNetworkInterface", before)
    lab_cli(b, "fault", "clear")
    assert len(tagged_enis(b, doomed.instance_id)) == 1
    lab_cli(b, "terminate", doomed.instance_id)
    dry = a("gc", "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    orphan = tagged_enis(b, doomed.instance_id)[0]["NetworkInterfaceId"]
    assert orphan in dry.doc["leaked_enis"]
    assert tagged_enis(b, doomed.instance_id) != []  # --dry-run deleted nothing
    done = a("gc", "--json")
    assert done.code == 0, done.stderr
    assert tagged_enis(b, doomed.instance_id) == []
    assert audit(a) == []


def test_the_background_refill_keeps_the_configs_deadline(node: Callable[..., Cli]) -> None:
    """The detached refill ends by the conf's ``timeout`` even when EC2 never answers (a
    refill deadline that ignored it would hold its work, and every ADD that waits on it, for
    the plugin's default minute or more)."""
    c = node(timeout=4)
    assert c("ipam", "warm").code == 0
    lab_cli(c.ipam, "fault", "lost-response", "Create*", "--hold", "120")
    for i in range(5):  # leaves the pool below the next-ENI threshold: a background create
        assert c.ipam.add(f"pod-{i}").code == 0
    assert c.ipam.background(), "the refill runs in the background"
    started = time.monotonic()
    c.ipam.settle(timeout=60)
    # timeout (4 s), plus one EC2 read timeout (10 s) the last call may be waiting in.
    assert time.monotonic() - started < 20
    lab_cli(c.ipam, "fault", "clear")


WARM_ADD_BUDGET = 132


def test_a_warm_add_imports_no_botocore_nor_compression(node: Callable[..., Cli],
                                                        zipapp: Zipapp) -> None:
    """The warm path pays Python start-up only for what it uses: no botocore, and none of the
    bz2/lzma that shutil's import drags in (what the leases' cleanup first used)."""
    c = node()
    assert c("ipam", "warm").code == 0
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SHIV_ROOT": str(zipapp.shiv_root),
           "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773", "CNI_COMMAND": "ADD",
           "CNI_PATH": "/opt/cni/bin", "CNI_CONTAINERID": "warm-1", "CNI_IFNAME": "eth0",
           "CNI_NETNS": "/proc/1/ns/net"}
    boot = c.ipam.boot_id_file
    assert boot is not None  # the node's own boot: the one the warm step saw
    proc = subprocess.run(["ip", "netns", "exec", c.ipam.node.netns, "sh", "-c",
                           'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"',
                           str(boot), "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           "/usr/bin/python3", "-sSE", "-c", IMPORTS_PROBE,
                           str(zipapp.bin / "cnivpc-ipam")],
                          input=json.dumps(c.ipam.config()), capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert json.loads(proc.stdout)["ips"], proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES=")][-1]
    modules = set(json.loads(line.removeprefix("MODULES=")))
    assert "cnivpc.plugins.ipam.allocator" in modules
    tops = {m.split(".")[0] for m in modules}
    assert tops & {"botocore", "urllib3", "shutil", "bz2", "lzma", "_bz2", "_lzma"} == set()
    # Nor pydantic's Python layer, pydantic_core's type hints or OpenSSL's hashes; and the
    # warm path's import budget (measured, a few modules of slack).
    assert tops & {"pydantic", "typing_extensions", "_hashlib", "decimal"} == set()
    # Nor dataclasses (inspect, ast): its records are cni.records.Record.
    assert tops & {"dataclasses", "inspect", "ast", "dis"} == set()
    # Nor logging (cni.logs writes the lines: the stdlib's, with threading and traceback, is
    # ~300 page faults per exec).
    assert tops & {"logging", "threading", "traceback"} == set()
    assert "pydantic_core.core_schema" not in modules
    assert "pydantic_core._pydantic_core" not in modules  # cni.pyvalidate validates
    print(f"BUDGET ipam warm ADD: {len(modules)} modules")
    assert len(modules) <= WARM_ADD_BUDGET, len(modules)


def test_a_leaked_eni_is_swept_once_seen_twice_five_minutes_apart(
        node: Callable[..., Cli]) -> None:
    """An ENI a killed ADD created and never attached: the first GC only notes it (an ENI
    between create and attach is briefly detached too), a GC 5 minutes later deletes it;
    ``--dry-run`` says so and deletes nothing. The 5 minutes pass in the state file."""
    c = node(warmIPTarget=0)
    before = calls_of(c.ipam, "CreateNetworkInterface")
    lab_cli(c.ipam, "fault", "lost-response", "CreateNetworkInterface", "--hold", "120")
    kill_when_called(c.ipam, start_add(c.ipam, "pod-l"), "CreateNetworkInterface", before)
    lab_cli(c.ipam, "fault", "clear")
    [leaked] = [e["NetworkInterfaceId"] for e in tagged_enis(c.ipam)
                if e["Status"] == "available"]
    first = c("gc", "--json")
    assert first.code == 0, first.stderr
    assert leaked not in first.doc["leaked_enis"]
    key = f"leak-seen:{leaked}"
    with sqlite3.connect(c.ipam.workdir / "state" / "ipam.db") as conn:
        (seen,) = conn.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
        conn.execute("UPDATE cache SET value = ? WHERE key = ?",
                     (json.dumps(json.loads(seen) - 301), key))
    dry = c("gc", "--dry-run", "--json")
    assert dry.code == 0 and leaked in dry.doc["leaked_enis"], dry.stdout + dry.stderr
    assert leaked in [e["NetworkInterfaceId"] for e in tagged_enis(c.ipam)]
    done = c("gc", "--json")
    assert done.code == 0 and leaked in done.doc["leaked_enis"], done.stdout + done.stderr
    assert leaked not in [e["NetworkInterfaceId"] for e in tagged_enis(c.ipam)]
    assert audit(c) == []


@pytest.mark.parametrize("family", [{}, {"ipv6": True, "ipv4": False}],
                         ids=["ipv4", "ipv6-only"])
def test_an_eni_adopted_soon_after_a_settling_still_gets_delete_on_termination(
        node: Callable[..., Cli], family: dict[str, bool]) -> None:
    """Found by the chaos run (seed 20261205, ``ipam new-eni`` killed in its Attach): an ENI of
    ours attached without DeleteOnTermination, adopted by the next ADD while the last settling
    of the marks was under a minute old. ADDs start a settling only once that expires (so a
    Modify EC2 keeps refusing is not retried by each), so nothing marked it and the audit found
    it unmarked. A newly adopted ENI now clears that wait. (IPv6-only pods' ADDs started no
    settling at all, and ``ipam warm`` in that mode skipped it.)"""
    from cnivpc.plugins.ipam.ec2work import TAG_INSTANCE

    c = node(warmIPTarget=0, reconcileInterval=0, **family)
    assert c.ipam.add("pod-a").code == 0
    (first,) = pod_enis(c.ipam)
    with c.ipam.db() as db:  # a settling just ran: its wait stands for ten minutes
        db.execute("INSERT OR REPLACE INTO cache(key, value, expires) VALUES('dot-tried', "
                   "'0', ?)", (time.time() + 600,))
    client = make_client(c.ipam.lab)
    eni = client.create_network_interface(SubnetId=first["SubnetId"], TagSpecifications=[{
        "ResourceType": "network-interface",
        "Tags": [{"Key": TAG_INSTANCE, "Value": c.ipam.node.instance_id}]}])["NetworkInterface"]
    client.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                    InstanceId=c.ipam.node.instance_id, DeviceIndex=2)
    eventually(lambda: eni["MacAddress"] in c.ipam.node_links())
    assert c.ipam.add("pod-b").code == 0  # adopts it (reconcileInterval 0)
    c.ipam.settle()
    (att,) = [e["Attachment"] for e in pod_enis(c.ipam)
              if e["NetworkInterfaceId"] == eni["NetworkInterfaceId"]]
    assert att["DeleteOnTermination"] is True
    assert audit(c) == []
