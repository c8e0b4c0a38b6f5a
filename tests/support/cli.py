"""Fixtures for the operator CLI against the lab: ``cli`` runs ``cnivpc <args>`` inside a lab
node's netns (where the metadata and EC2 answer with production defaults), reading the IPAM
settings from a conflist written like an operator's."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.ipam import REPO, Ipam

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
