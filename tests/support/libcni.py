"""libcni as a test client (a plugin: the libcni and podman tests use it).

``tests/runtimes/libcni/main.go`` is our own small driver over libcni's network-list API
(AddNetworkList, CheckNetworkList, DelNetworkList, the result cache): what containerd, CRI-O
and podman's CNI backend call. It is built offline in GOPATH mode with Debian's golang-go
against the libcni 1.1.2 source of golang-github-appc-cni-dev, once per source hash, into
build/cache/libcni/ (not build/work: the zipapp builder wipes that). build/dev builds it on the
host before the UML run, so the guest only finds it.

``python -m tests.support.libcni`` builds it and prints its path.

* ``libcni_driver`` -- session: the driver's path. Without Go or the libcni source the test
  fails with what to install: a missing client is never a pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "runtimes" / "libcni"
CACHE = REPO / "build" / "cache" / "libcni"
GOPATH = "/usr/share/gocode"  # golang-github-appc-cni-dev puts libcni 1.1.2 here
LIBCNI = Path(GOPATH) / "src" / "github.com" / "containernetworking" / "cni" / "libcni"
BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class DriverUnavailable(RuntimeError):
    pass


def build_driver() -> Path:
    """The driver binary for the current source, built if this source has none yet."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE.glob("*.go")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out = CACHE / digest.hexdigest()[:16] / "cnivpc-libcni"
    if out.exists():
        return out
    go = shutil.which("go")
    if go is None or not LIBCNI.is_dir():
        raise DriverUnavailable("needs golang-go and golang-github-appc-cni-dev "
                                "(./build/dev setup installs them)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    # GOPATH mode, offline: every import resolves under GOPATH; nothing is downloaded.
    env = {"PATH": os.environ.get("PATH", BASE_PATH), "HOME": str(CACHE),
           "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "", "GOPROXY": "off",
           "GOCACHE": str(CACHE / "gocache"), "CGO_ENABLED": "0"}
    proc = subprocess.run([go, "build", "-o", str(tmp), "."], cwd=SOURCE, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise DriverUnavailable(f"go build failed:\n{proc.stderr}")
    tmp.replace(out)
    return out


@dataclass
class Reply:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.stdout) if self.stdout.strip() else {}
        return doc


@dataclass
class Libcni:
    """Runs the driver in a node's netns (libcni execs plugins in its own; "": this one), with
    exactly ``env`` as its environment: libcni gives plugins its environment plus CNI_*."""

    driver: Path
    conflist: Path
    cache: Path
    plugin_dirs: list[Path]
    node_ns: str
    env: Mapping[str, str]
    netns: str = ""  # the pod's netns path, unless a call names another

    def __call__(self, command: str, container_id: str, netns: str | None = None,
                 env: Mapping[str, str] | None = None, args: str = "",
                 timeout: float = 300) -> Reply:
        full = {"PATH": BASE_PATH, **(self.env if env is None else env)}
        cmd = [*(["ip", "netns", "exec", self.node_ns] if self.node_ns else []), "env", "-i",
               *(f"{k}={v}" for k, v in full.items()), str(self.driver), command,
               "-conflist", str(self.conflist), "-id", container_id,
               "-netns", self.netns if netns is None else netns,
               "-path", ":".join(map(str, self.plugin_dirs)), "-cache", str(self.cache),
               "-args", args or f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
                                f"K8S_POD_NAME={container_id}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return Reply(proc.returncode, proc.stdout, proc.stderr)

    def cache_files(self) -> list[str]:
        return sorted(p.name for p in self.cache.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def libcni_driver() -> Path:
    """Name: libcni_driver. Scope: session. Depends: golang-go, golang-github-appc-cni-dev."""
    try:
        return build_driver()
    except DriverUnavailable as exc:
        pytest.fail(f"the libcni driver: {exc}")


if __name__ == "__main__":
    print(build_driver())
