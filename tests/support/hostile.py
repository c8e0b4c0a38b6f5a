"""The hostile-input suites' shared harness (a plugin: tests/unit/test_hostile_input.py runs
the cases in-process, tests/artifact/test_zipapp_hostile_input.py through the built zipapp):
a temp root whose ``state`` the plugins may write and whose ``outside`` holds canaries
compared before and after (the ``root`` fixture), and a valid config and CNI environment each
case then breaks in one place.

Imports nothing of cnivpc."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Root:
    """A temp root: ``state`` is what the plugins may write; ``outside`` holds the canaries."""

    base: Path

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    @property
    def canary(self) -> Path:
        return self.outside / "canary"

    @property
    def canary_dir(self) -> Path:
        return self.outside / "canary-dir"

    def link(self, name: str, target: Path) -> Path:
        """A symlink in the state directory pointing at ``target`` (outside)."""
        path = self.state / name
        path.symlink_to(target)
        return path

    def snapshot(self) -> dict[str, tuple[int, bytes | str]]:
        """Every entry under ``outside``: mode and content (a link's target)."""
        seen: dict[str, tuple[int, bytes | str]] = {}
        for path in sorted(self.outside.rglob("*")):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                seen[str(path)] = (st.st_mode, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                seen[str(path)] = (st.st_mode, path.read_bytes())
            else:
                seen[str(path)] = (st.st_mode, "")
        return seen


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    r = Root(tmp_path)
    r.state.mkdir()
    r.outside.mkdir()
    r.canary.write_text("do not touch\n")
    r.canary.chmod(0o644)
    r.canary_dir.mkdir(mode=0o755)
    (r.canary_dir / "keep").write_text("keep\n")
    before = r.snapshot()
    yield r
    assert r.snapshot() == before, "a file outside the state directory changed"


def config(program: str, root: Root, **extra: Any) -> dict[str, Any]:
    """A valid config of ``program`` whose state (and locks) stay under ``root.state``."""
    ipam = {"dataDir": str(root.state / "data"), "lockPath": str(root.state / "ipam.lock")}
    ptp = {"hostInterface": "lo", "containerInterface": "eth1"}
    base: dict[str, Any] = {"cniVersion": "1.1.0", "name": "net", "type": program}
    if program == "cnivpc-ipam":
        base.update(ipam)
    elif program == "cnivpc-ptp":
        base.update(ptp)
    elif program == "cnivpc":
        base.update(ipam=ipam, ptp=ptp)
    base.update(extra)
    return base


def env(command: str = "ADD", **over: str) -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": "c0ffee", "CNI_IFNAME": "eth0",
            "CNI_NETNS": "/var/run/netns/hostile-test",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1", **over}
