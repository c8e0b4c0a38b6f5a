"""A CLI that never lies, against the lab: every failure is ``error:``/``hint:`` on stderr with a
documented exit code (EC2 refusals included, no traceback); max-pods prints a number or fails
clearly; read-only commands create nothing; gc's exit status says whether it worked; the
commands Lyft's tool had (every bound address; unassign an IP, refusing one in use); and the
EC2 client's credentials come from IMDSv2 only, never through an inherited proxy."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cnivpc.cli.exits import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE
from tests.support.cli import REPO, Cli, Out
from tests.support.lab import make_client

pytestmark = pytest.mark.netns

# A proxy nobody listens on: a request sent through it fails at once (connection refused).
DEAD_PROXY = "http://127.0.0.1:9"
PROXY_ENV = {"HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "http_proxy": DEAD_PROXY,
             "https_proxy": DEAD_PROXY, "NO_PROXY": "", "no_proxy": ""}

READ_ONLY = [("status",), ("doctor",), ("max-pods",), ("gc", "--dry-run"),
             ("ipam", "allocations"), ("ipam", "free"), ("ipam", "enis"),
             ("ipam", "addresses"), ("ipam", "subnets"), ("ipam", "limits"),
             ("ipam", "vpc-cidrs"), ("ipam", "peer-cidrs"), ("ipam", "bugs")]


def no_traceback(out: Out) -> None:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert any(line.startswith("error: ") for line in lines), out.stderr
    assert any(line.startswith("hint: ") for line in lines), out.stderr


def state_dir(c: Cli) -> Path:
    return Path(c.ipam.config()["dataDir"])


def test_max_pods_when_ec2_refuses(cli: Any) -> None:
    """Was: a Python traceback (Ec2Error) on stderr, nothing on stdout, exit 1."""
    c: Cli = cli("c5.xlarge")
    c.ipam.lab.ec2.control.deny("DescribeInstanceTypes")
    known = c("max-pods")
    # c5.xlarge is in the built-in table: a number, and a note saying where it came from
    assert known.code == 0 and known.stdout == "42\n", known.stderr
    assert "built-in table" in known.stderr and "UnauthorizedOperation" in known.stderr
    assert c("max-pods", "--json").doc["source"] == "built-in table"
    unknown = c("max-pods", "--instance-type", "x9.weird")
    assert unknown.code == EXIT_ERROR and unknown.stdout == ""
    no_traceback(unknown)
    assert "x9.weird" in unknown.stderr and "--enis" in unknown.stderr


def test_max_pods_uses_the_ipam_cache(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    assert c.ipam.add("web").code == 0  # the plugin caches DescribeInstanceTypes' answer
    c.ipam.lab.ec2.control.deny("DescribeInstanceTypes")
    cached = c("max-pods", "--json")
    assert cached.code == 0 and cached.doc["source"] == "cache" and cached.doc["max_pods"] == 42
    assert cached.stderr == ""


def test_ec2_refusals_are_errors_with_hints(cli: Any) -> None:
    c: Cli = cli("c5.xlarge", warmIPTarget=0)
    c.ipam.lab.ec2.control.deny("CreateNetworkInterface")
    refused = c("ipam", "new-eni", "--count", "2")
    assert refused.code == EXIT_ERROR
    no_traceback(refused)
    assert "UnauthorizedOperation" in refused.stderr and "iam-policy.json" in refused.stderr
    c.ipam.lab.ec2.control.deny("DescribeVpcPeeringConnections")
    peers = c("ipam", "peer-cidrs")
    assert peers.code == EXIT_ERROR and peers.stdout == ""
    no_traceback(peers)
    bad = c("ipam", "grow", "--count", "x")
    assert bad.code == EXIT_USAGE and bad.stderr.startswith("error: ")
    no_traceback(bad)


def test_read_only_commands_create_nothing(cli: Any) -> None:
    """Was: every one of them created the state directory and database (and wrote the boot id
    and cached EC2 answers into it)."""
    c: Cli = cli("c5.xlarge")
    data = state_dir(c)
    assert not data.exists()
    for argv in READ_ONLY:
        out = c(*argv)
        assert "Traceback" not in out.stderr, (argv, out.stderr)
        assert not data.exists(), f"{argv} created {data}"
        if argv[-1] in ("allocations", "free"):  # only the state could answer: say it is absent
            assert out.code == EXIT_NOT_FOUND, (argv, out)
            assert "no IPAM state" in out.stderr and "hint: " in out.stderr
        else:
            assert out.code in (0, 3), (argv, out.code, out.stderr)  # doctor: 3 (a veth? no)
    assert c("ipam", "limits", "--json").doc[0]["max_pods"] == 42  # EC2 still answers


def test_read_only_commands_write_nothing_to_existing_state(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    assert c.ipam.add("web").code == 0
    c.ipam.settle()
    db = state_dir(c) / "ipam.db"

    def snapshot() -> list[Any]:
        with sqlite3.connect(db) as conn:
            return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                    for t in ("meta", "ips", "enis", "cache")]

    with sqlite3.connect(db) as conn:  # an expired cache entry a writer would refresh
        conn.execute("UPDATE cache SET expires = 0")
    before = snapshot()
    for argv in READ_ONLY:
        assert "Traceback" not in c(*argv).stderr, argv
    assert snapshot() == before
    # ...but their EC2 calls drew on the node's shared token bucket, like the plugins'
    with sqlite3.connect(db) as conn:
        buckets = dict(conn.execute("SELECT name, tokens FROM buckets").fetchall())
    assert buckets["non-mutating"] < 100


def test_gc_exit_status_says_whether_it_worked(cli: Any) -> None:
    """Was: exit 0 with a 'warning:' line on stdout when the leaked-ENI sweep failed."""
    c: Cli = cli("c5.xlarge")
    assert c.ipam.add("web").code == 0
    ok = c("gc")
    assert ok.code == 0, ok.stderr
    c.ipam.lab.ec2.control.deny("DescribeNetworkInterfaces")
    failed = c("gc")
    assert failed.code == EXIT_ERROR
    no_traceback(failed)
    assert "leaked-ENI sweep" in failed.stderr


def test_gc_unassigns_idle_ips(cli: Any) -> None:
    """cnivpc-gc.service says gc unassigns long-free IPs: it does (freeIPMaxAge)."""
    c: Cli = cli("c5.xlarge", warmIPTarget=0, freeIPMaxAge=1)
    assert c("ipam", "grow", "--count", "4").code == 0
    with sqlite3.connect(state_dir(c) / "ipam.db") as conn:
        conn.execute("UPDATE ips SET freed_at = 0 WHERE container_id IS NULL")
    dry = c("gc", "--dry-run", "--json")
    # The new ENI's 4 pod IPs are all secondaries (its primary is never in the pool).
    assert dry.code == 0 and len(dry.doc["unassigned"]) == 4
    done = c("gc", "--json")
    assert done.code == 0 and sorted(done.doc["unassigned"]) == sorted(dry.doc["unassigned"])
    eni = next(e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 1)
    assert len(eni["PrivateIpAddresses"]) == 1


def test_addresses_lists_host_and_pod_namespaces(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    netns = f"cnivpc-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "addr", "add", "10.99.0.7/32", "dev", "lo"],
                       check=True)
        rows = c("ipam", "addresses", "--json")
        assert rows.code == 0, rows.stderr
        found = {(r["netns"], r["address"]) for r in rows.doc}
        assert ("host", "127.0.0.1/8") in found
        assert any(r["netns"] == "host" and r["link"] == "eth0" for r in rows.doc)
        assert (f"/var/run/netns/{netns}", "10.99.0.7/32") in found
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def test_unassign_refuses_an_ip_in_use(cli: Any) -> None:
    c: Cli = cli("c5.xlarge", warmIPTarget=0)
    assert c("ipam", "grow", "--count", "3").code == 0
    assert c.ipam.add("web").code == 0
    held = c.ipam.allocations()["web"]
    refused = c("ipam", "unassign", held)
    assert refused.code == EXIT_USAGE and "default/pod-web" in refused.stderr
    assert "release" in refused.stderr  # the hint: release first, if the pod is gone
    free = [f["ip"] for f in c("ipam", "free", "--json").doc]
    eni = next(e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 1)
    primary = eni["PrivateIpAddress"]
    victim = next(ip for ip in free if ip != primary)
    done = c("ipam", "unassign", victim)
    assert done.code == 0, done.stderr
    eni = next(e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] == 1)
    assert victim not in {a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]}
    assert victim not in [f["ip"] for f in c("ipam", "free", "--json").doc]
    assert c("ipam", "unassign", primary).code == EXIT_USAGE  # EC2 never unassigns a primary
    missing = c("ipam", "unassign", "10.9.9.9")
    assert missing.code == EXIT_NOT_FOUND
    no_traceback(missing)


CREDENTIALS = """
import json, sys, time
from cnivpc.aws.ec2 import Ec2
from cnivpc.aws.metadata import Metadata
metadata = Metadata()
ec2 = Ec2(metadata.identity().region, deadline=time.monotonic() + 20, metadata=metadata)
answer = ec2.call("DescribeInstanceTypes", InstanceTypes=["c5.xlarge"])
print(json.dumps({"enis": answer["InstanceTypes"][0]["NetworkInfo"]["MaximumNetworkInterfaces"],
                  "method": ec2.client._request_signer._credentials.method}))
"""
STOCK_BOTOCORE = """
import botocore.session
try:
    print(botocore.session.get_session().get_credentials() is not None)
except Exception as exc:
    print(type(exc).__name__)
"""


def in_node(c: Cli, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773", "PYTHONPATH": str(REPO),
            **env}
    return subprocess.run(["ip", "netns", "exec", c.ipam.node.netns, sys.executable, "-c",
                           script], env=full, capture_output=True, text=True, timeout=60,
                          cwd=REPO)


def test_role_credentials_imdsv2_only_and_never_through_a_proxy(cli: Any) -> None:
    """The lab's IMDS has IMDSv1 off (HttpTokens=required, AWS's default) and serves the role's
    credentials; a proxy variable points at a closed port. botocore's own credential fetch
    (1.44) sends its token PUT to the proxy and fails with ProxyConnectionError: measured below,
    so this test would notice a proxy variable that had no effect. Ours asks IMDS directly,
    with a token, and never without one."""
    c: Cli = cli("c5.xlarge")
    stock = in_node(c, STOCK_BOTOCORE, PROXY_ENV)
    assert stock.stdout.strip() == "ProxyConnectionError", stock.stderr  # the proxy was asked
    assert in_node(c, STOCK_BOTOCORE, {}).stdout.strip() == "True"  # ...it works without
    ours = in_node(c, CREDENTIALS, PROXY_ENV)
    assert ours.returncode == 0, ours.stderr
    doc = json.loads(ours.stdout)
    assert doc == {"enis": 4, "method": "cnivpc-imdsv2-role"}
    # the whole CLI, the same way: an EC2 call with credentials from the instance role
    limits = c("ipam", "limits", "--json", env=PROXY_ENV)
    assert limits.code == 0 and limits.doc[0]["source"] == "DescribeInstanceTypes", limits.stderr


def test_no_credentials_is_a_clear_error(cli: Any) -> None:
    c: Cli = cli("c5.xlarge")
    make_client(c.ipam.lab)  # the lab is up
    c.ipam.lab.imds.config.role = None  # an instance without an instance profile
    out = c("ipam", "subnets")
    assert out.code == EXIT_ERROR
    no_traceback(out)
    assert "no AWS credentials" in out.stderr
