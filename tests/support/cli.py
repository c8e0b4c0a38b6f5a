"""Fixtures for the operator CLI against the lab: ``cli`` runs ``cnivpc <args>`` inside a lab
node's netns (where the metadata and EC2 answer with production defaults), reading the IPAM
settings from a conflist written like an operator's; ``node`` is the same with the built zipapp
exec'd for the IPAM and the CLI, seeing the node's own boot id. Helpers: ``lab_cli`` (the lab's
command line for this lab), ``calls_of`` (EC2 calls the lab counted), ``audit`` (``cnivpc ipam
audit --json``'s violations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.ipam import REPO, Ipam
from tests.support.zipapp import Zipapp

WITH_CONF = ("status", "ipam", "doctor", "gc", "max-pods")


@dataclass
class Out:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    ipam: Ipam
    conflist: Path

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Out:
        full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773", **(env or {})}
        proc = subprocess.run(
            self.ipam.command(*args, *(["--conf", str(self.conflist)]
                                       if args[0] in WITH_CONF else []), env=full),
            capture_output=True, text=True, timeout=120, cwd=REPO)
        return Out(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(ipam_node: Callable[..., Ipam], tmp_path: Path) -> Callable[..., Cli]:
    """Name: cli. Scope: function. ``cli(instance_type, **ipam conf)`` -> Cli."""

    def make(instance_type: str = "c5.xlarge", **conf: Any) -> Cli:
        ipam = ipam_node(instance_type, **conf)
        entry = {k: v for k, v in ipam.config().items() if k not in ("cniVersion", "name")}
        doc = {"cniVersion": "1.1.0", "name": "cnivpc", "plugins": [
            entry, {"type": "cnivpc-ipvlan"},
            {"type": "cnivpc-ptp", "hostInterface": "eth0", "containerInterface": "eth1"}]}
        path = tmp_path / "10-cnivpc.conflist"
        path.write_text(json.dumps(doc))
        return Cli(ipam, path)

    return make


# -- the built zipapp on a lab node, the lab's command line, the audit ----------------------


def lab_cli(ipam: Ipam, *args: str) -> dict[str, Any]:
    """``python -m cnivpc.lab <args> --lab-id <this lab>``: the lab's command line."""
    proc = subprocess.run([sys.executable, "-m", "cnivpc.lab", *args, "--lab-id",
                           ipam.lab.lab_id], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def calls_of(ipam: Ipam, action: str) -> int:
    counts = lab_cli(ipam, "counts")["counts"]
    return sum(int(per.get(action, {}).get("calls", 0)) for per in counts.values())


def audit(c: Cli, *extra: str) -> list[dict[str, Any]]:
    out = c("ipam", "audit", "--json", *extra)
    assert out.code in (0, 3), out.stderr
    violations: list[dict[str, Any]] = out.doc["violations"]
    assert (out.code == 3) == bool(violations)
    return violations




@pytest.fixture
def node(cli: Callable[..., Cli], zipapp: Zipapp) -> Callable[..., Cli]:
    """Name: node. Scope: function. Depends: cli, zipapp. ``node(instance_type, **ipam
    conf)`` -> Cli whose IPAM and CLI runs exec the built zipapp and see the node's own boot
    id."""

    def make(instance_type: str = "c5.xlarge", **conf: Any) -> Cli:
        c = cli(instance_type, **conf)
        c.ipam.use_zipapp(zipapp).with_node_boot_id()
        return c

    return make
