"""The warm pool against the lab: the refill runs after the ADD's answer in a detached child (the
ADD does not wait for it, the child holds no pipe, concurrent ADDs claim its IPs instead of
creating another ENI), the next ENI is started ahead of need, ``cnivpc ipam warm`` fills the
pool before the first pod, and DEL keeps the warm target."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.support.ipam import REPO, TAG, Ipam

pytestmark = pytest.mark.netns

MUTATING = ("Assign", "Unassign", "Create", "Attach", "Detach", "Delete", "Modify")


def warm_proc(ipam: Ipam, **conf: Any) -> subprocess.CompletedProcess[str]:
    """``cnivpc ipam warm --json`` in the node, with this node's IPAM config."""
    path = ipam.workdir / "warm.conflist"
    path.write_text(json.dumps({"cniVersion": "1.1.0", "name": "cnivpc",
                                "plugins": [ipam.config(**conf)]}))
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773", "PYTHONPATH": str(REPO),
           TAG: str(ipam.workdir)}
    proc = subprocess.run(
        ["ip", "netns", "exec", ipam.node.netns, sys.executable, "-m", "cnivpc", "ipam", "warm",
         "--conf", str(path), "--json"], env=env, capture_output=True, text=True, timeout=120,
        cwd=REPO)
    return proc


def warm(ipam: Ipam, **conf: Any) -> dict[str, Any]:
    proc = warm_proc(ipam, **conf)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def mutating(calls: dict[str, int]) -> int:
    return sum(n for op, n in calls.items() if op.startswith(MUTATING))


def free_count(ipam: Ipam) -> int:
    with ipam.db() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM ips WHERE container_id IS NULL")
                   .fetchone()[0])


def pod_enis(ipam: Ipam) -> list[dict[str, Any]]:
    return [e for e in ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]


def test_warm_from_empty_then_idempotent(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    first = warm(ipam)
    # A new ENI comes full: 14 pod IPs (15 less its primary, never a pod's).
    assert first["actions"] and first["actions"][0].startswith("create 14 IPs"), first
    assert first["free"] == 14 >= first["warm_ip_target"] == 8
    assert first["warm_eni_threshold"] == 10  # max(warmIPTarget, 14 * 3 // 4)
    assert len(pod_enis(ipam)) == 1
    again = warm(ipam)
    assert again["actions"] == [] and mutating(again["ec2_calls"]) == 0, again
    # The first pod is served from the pool: no EC2 call at all.
    reply = ipam.add("first-pod")
    assert reply.code == 0, reply.doc
    assert ipam.ec2_calls() == {}
    off = warm(ipam, warmIPTarget=0)
    assert off["actions"] == [] and mutating(off["ec2_calls"]) == 0


def test_warm_reports_ec2_failures_with_exit_1(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge")
    ipam.lab.ec2.control.deny("CreateNetworkInterface")
    proc = warm_proc(ipam, timeout=5)
    assert proc.returncode == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert pod_enis(ipam) == []
    ipam.lab.ec2.control.allow("CreateNetworkInterface")
    assert warm(ipam)["free"] == 14  # and the next run does the work


def test_add_answers_before_the_background_refill(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge", latency="aws-like")
    warm(ipam)  # one pod ENI, 14 free IPs; the next ENI below 10 free
    for i in range(4):
        assert ipam.add(f"p{i}").code == 0
    assert ipam.background() == [] and len(pod_enis(ipam)) == 1  # 10 free: still warm
    started = time.monotonic()
    reply = ipam.add("p4")  # leaves 9 free: the next ENI, after the answer
    add_seconds = time.monotonic() - started
    assert reply.code == 0, reply.doc
    children = ipam.background()
    assert len(children) == 1, "the refill runs on in a detached child"
    child = children[0]
    with open(f"/proc/{child}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    assert int(fields[3]) == child  # its own session (setsid)
    fds = {}
    for fd in os.listdir(f"/proc/{child}/fd"):
        with contextlib.suppress(FileNotFoundError):  # the child opens and closes files
            fds[fd] = os.readlink(f"/proc/{child}/fd/{fd}")
    assert {fds["0"], fds["1"], fds["2"]} == {"/dev/null"}
    assert not [t for t in fds.values() if t.startswith("pipe:")]
    refill_seconds = add_seconds + ipam.settle()
    # Create + attach + the link appearing take seconds with aws-like latency; the pod did
    # not wait for them.
    assert add_seconds < refill_seconds / 2, (add_seconds, refill_seconds)
    assert len(pod_enis(ipam)) == 2
    assert free_count(ipam) == 9 + 14
    calls = ipam.ec2_calls()  # the child logged its own line
    assert calls["CreateNetworkInterface"] == 1 and calls["AttachNetworkInterface"] == 1


def test_concurrent_adds_claim_the_ips_of_a_background_create(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge", latency="aws-like")
    warm(ipam)
    for i in range(5):  # the fifth starts the next ENI in the background
        assert ipam.add(f"p{i}").code == 0
    assert ipam.background(), "the background create is in flight"
    # 9 free IPs for 13 pods: 4 of them wait for the ENI being created, none creates its own.
    replies = ipam.many("ADD", [f"q{i:02d}" for i in range(13)], workers=13)
    assert [r.doc for r in replies if r.code] == []
    assert len({r.ip for r in replies}) == 13
    ipam.settle()
    assert len(pod_enis(ipam)) == 2  # 18 pods on 28 pod IPs, 10 free: no third ENI
    calls = ipam.ec2_calls()
    assert calls.get("CreateNetworkInterface") == 1, calls  # the background one only
    assert calls.get("AssignPrivateIpAddresses", 0) == 0


def test_eni_ahead_of_need_during_a_burst(ipam_node: Any) -> None:
    """m5.24xlarge (49 pod IPs per ENI: 50 less its primary): the next ENI starts below 36
    free, so a burst does not find the pool empty, and 110 pods still cost three ENIs (37 free
    at the end: no fourth)."""
    ipam: Ipam = ipam_node("m5.24xlarge")
    warm(ipam)
    replies = ipam.many("ADD", [f"b{i:03d}" for i in range(110)], workers=8)
    assert all(r.code == 0 for r in replies), [r.doc for r in replies if r.code][:2]
    ipam.settle()
    assert len(pod_enis(ipam)) == 3
    calls = ipam.ec2_calls()
    assert calls.get("CreateNetworkInterface") == 2  # the warm step made the first
    with open(ipam.workdir / "cnivpc.log") as f:
        log = f.read()
    assert log.count("refilling the pool") == 2  # both ENIs of the burst were started ahead


def test_del_keeps_the_warm_target(ipam_node: Any) -> None:
    ipam: Ipam = ipam_node("c5.xlarge", maxFreeIPs=0)
    ids = ["a", "b", "c"]
    assert all(r.code == 0 for r in ipam.many("ADD", ids, workers=1))
    for cid in ids:
        assert ipam.delete(cid).code == 0
    ipam.settle()
    (eni,) = pod_enis(ipam)
    # maxFreeIPs 0, but never below warmIPTarget: 8 pod IPs, and the ENI's primary.
    assert len(eni["PrivateIpAddresses"]) == 9
    assert free_count(ipam) == 8 and ipam.allocations() == {}
    calls = ipam.ec2_calls()
    assert calls.get("UnassignPrivateIpAddresses") == 3  # each DEL gives back its surplus
    assert calls.get("AssignPrivateIpAddresses", 0) == 0  # nothing churned back
