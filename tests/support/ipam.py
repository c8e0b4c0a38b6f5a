"""Fixtures for the IPAM plugin against the lab: a node of the lab (EC2 over HTTP, IMDSv2 at
169.254.169.254 inside the node, ENIs hot-plugged into it), and ``Ipam``, which runs the real
plugin the way a runtime does: a process in the node's network namespace, CNI_* in the
environment, the config on stdin, JSON on stdout.

* ``ipam_node`` -- factory: ``ipam_node(instance_type="c5.xlarge", **conf)`` -> ``Ipam``;
  every lab is torn down after the test. Needs root (network namespaces) and moto.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cnivpc.lab.runtime import logged_ec2_calls, tagged_processes
from tests.support.lab import make_client

REPO = Path(__file__).resolve().parents[2]
# In every plugin process's environment (and so its detached children's): finds them.
TAG = "CNIVPC_TEST_NODE"


@dataclass
class Reply:
    code: int
    doc: dict[str, Any]
    stderr: str

    @property
    def ip(self) -> str:
        return str(self.doc["ips"][0]["address"]).split("/")[0]


@dataclass
class Ipam:
    lab: Any
    node: Any
    workdir: Path
    conf: dict[str, Any] = field(default_factory=dict)
    # The program a run execs: the checkout's ``python -m cnivpc`` (default), or the built
    # zipapp (``use_zipapp``), exec'd under ``env -i`` as a runtime does.
    zipapp: Any = None
    # The node's own boot id file (``Lab.boot_id_file``), bind-mounted over
    # /proc/sys/kernel/random/boot_id for each run, so a lab ``reboot`` is a reboot to the IPAM.
    boot_id_file: Path | None = None

    def use_zipapp(self, zipapp: Any) -> Ipam:
        self.zipapp = zipapp
        return self

    def with_node_boot_id(self) -> Ipam:
        self.boot_id_file = self.lab.boot_id_file(self.node.instance_id)
        return self

    def command(self, *args: str, env: dict[str, str]) -> list[str]:
        """The argv that runs ``cnivpc <args>`` in the node netns with exactly ``env``."""
        boot = [] if self.boot_id_file is None else [
            "sh", "-c", 'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"',
            str(self.boot_id_file)]
        if self.zipapp is None:
            program = [sys.executable, "-m", "cnivpc"]
            env = {**env, "PYTHONPATH": str(REPO)}
        else:
            program = [str(self.zipapp.path)]
            env = {**env, "SHIV_ROOT": str(self.zipapp.shiv_root)}
        return ["ip", "netns", "exec", self.node.netns, *boot, "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), *program, *args]

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "cnivpc", "type": "cnivpc-ipam",
                "dataDir": str(self.workdir / "state"), "lockPath": str(self.workdir / "lock"),
                "logFile": str(self.workdir / "cnivpc.log"), "logLevel": "debug",
                **self.conf, **extra}

    def run(self, command: str, container_id: str = "", ifname: str = "eth0",
            netns: str = "/proc/1/ns/net", conf: dict[str, Any] | None = None,
            env: dict[str, str] | None = None, timeout: float = 120) -> Reply:
        full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin",
                "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773",
                TAG: str(self.workdir)}
        if container_id:
            full.update(CNI_CONTAINERID=container_id, CNI_IFNAME=ifname, CNI_NETNS=netns,
                        CNI_ARGS=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
                                 f"K8S_POD_NAME=pod-{container_id}")
        full.update(env or {})
        proc = subprocess.run(
            self.command("ipam", env=full),
            input=json.dumps(conf if conf is not None else self.config()),
            capture_output=True, text=True, timeout=timeout, cwd=REPO)
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
        return Reply(proc.returncode, doc, proc.stderr)

    def add(self, container_id: str, **kw: Any) -> Reply:
        return self.run("ADD", container_id, **kw)

    def delete(self, container_id: str, **kw: Any) -> Reply:
        return self.run("DEL", container_id, **kw)

    def many(self, command: str, ids: list[str], workers: int = 8, **kw: Any) -> list[Reply]:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda cid: self.run(command, cid, **kw), ids))

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.workdir / "state" / "ipam.db")

    def allocations(self) -> dict[str, str]:
        with self.db() as conn:
            return dict(conn.execute(
                "SELECT container_id, ip FROM ips WHERE container_id IS NOT NULL").fetchall())

    def background(self) -> list[int]:
        """Pids of this node's plugin processes still running: after the ADDs returned, the
        detached children refilling the pool (found by the tag in their environment)."""
        return tagged_processes(TAG, str(self.workdir))

    def settle(self, timeout: float = 90.0) -> float:
        """Wait until no background refill runs; returns the seconds waited."""
        started = time.monotonic()
        while self.background():
            assert time.monotonic() - started < timeout, "background refill still running"
            time.sleep(0.05)
        return time.monotonic() - started

    def ec2_calls(self) -> dict[str, int]:
        """EC2 calls the plugin processes made, from their logs (one line per ADD/DEL, and one
        per background refill: waits for those to end first)."""
        self.settle()
        return logged_ec2_calls(self.workdir / "cnivpc.log")

    def enis(self) -> list[dict[str, Any]]:
        client = make_client(self.lab)
        return list(client.describe_network_interfaces(Filters=[
            {"Name": "attachment.instance-id", "Values": [self.node.instance_id]}])[
                "NetworkInterfaces"])

    def node_links(self) -> dict[str, str]:
        out = subprocess.run(["ip", "-n", self.node.netns, "-j", "link", "show"],
                             capture_output=True, text=True, check=True).stdout
        return {link["address"]: link["ifname"] for link in json.loads(out)}


@pytest.fixture
def ipam_node(lab_factory: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Ipam]]:
    """Name: ipam_node. Scope: function. Depends: lab_factory (root, moto)."""

    def make(instance_type: str = "c5.xlarge", latency: str = "zero",
             **conf: Any) -> Ipam:
        lab = lab_factory(nodes=1, instance_type=instance_type, latency=latency)
        return Ipam(lab=lab, node=lab.node(0), workdir=tmp_path, conf=conf)

    yield make
    # Detached refills must not outlive the test (its lab is torn down next): wait, then stop
    # whatever is left (only this test's processes, found by their tag).
    deadline = time.monotonic() + 30
    while (pids := tagged_processes(TAG, str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
