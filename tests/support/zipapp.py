"""The zipapp fixture (a plugin: the artifact, IPAM and bench tests use it): the zipapp is built
once per session with build/zipapp.py (into a tmp dir, never build/out) and run the way a
container runtime runs it: through the ``cnivpc-*`` symlinks, under ``env -i`` (no HOME), with a
tmp SHIV_ROOT.

Builds use a snapshot of the source taken once per session and a fixed SOURCE_DATE_EPOCH, so
the reproducibility test compares builds of the same input even while the tree is edited.

Imports nothing of cnivpc: the artifact is a black box here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "build" / "zipapp.py"
# What containerd's and CRI-O's systemd units give a plugin: a PATH and little else.
BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
PYTHON = "/usr/bin/python3"

# ``python3 -sSE -c IMPORTS_PROBE <symlink>`` runs the archive exactly as exec would (shiv's
# bootstrap reads it from argv[0], the symlink) and prints every imported module name
# (``MODULES=[...]``) and where cnivpc came from (``CNIVPC=...``) on stderr when the process
# ends: at its ``os._exit`` (a plugin process ends that way, skipping the interpreter's
# teardown) or at a normal exit (the CLI). A detached child's stderr is /dev/null.
IMPORTS_PROBE = """
import atexit, json, os, runpy, sys
_exit = os._exit
def report():
    if "cnivpc" in sys.modules:
        print("CNIVPC=" + sys.modules["cnivpc"].__file__, file=sys.stderr)
    print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr, flush=True)
def exit_now(code):
    report()
    _exit(code)
os._exit = exit_now
atexit.register(report)
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass(frozen=True)
class Source:
    """A frozen copy of the project and the commit time to stamp builds with."""

    tree: Path
    epoch: str


def snapshot(dst: Path) -> Source:
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dst / name)
    shutil.copytree(REPO / "cnivpc", dst / "cnivpc",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    epoch = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct", "HEAD"],
                           check=True, capture_output=True, text=True).stdout.strip()
    return Source(dst, epoch)


def build(source: Source, out: Path, root: Path) -> Path:
    """Run the builder in a clean environment; returns the zipapp path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CNI_", "SHIV_", "AWS_", "CNIVPC_"))}
    env["SOURCE_DATE_EPOCH"] = source.epoch
    proc = subprocess.run([sys.executable, str(BUILDER), "--src", str(source.tree),
                           "--out", str(out / "out"), "--work", str(out / "work"),
                           "--root", str(root)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out / "out" / "cnivpc"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.stdout)
        return doc


@dataclass
class Zipapp:
    source: Source
    path: Path
    baked_root: Path   # the --root the build baked in
    shiv_root: Path    # SHIV_ROOT the tests run with

    @property
    def bin(self) -> Path:
        return self.path.parent / "bin"

    def run(self, program: str, env: Mapping[str, str] | None = None, stdin: str = "",
            args: tuple[str, ...] = (), shiv_root: bool = True) -> Run:
        """Exec ``program`` (a bin/ symlink, or "cnivpc") with exactly BASE_ENV + ``env``."""
        exe = self.path if program == "cnivpc" else self.bin / program
        full = dict(BASE_ENV)
        if shiv_root:
            full["SHIV_ROOT"] = str(self.shiv_root)
        full.update(env or {})
        cmd = ["env", "-i", *(f"{k}={v}" for k, v in full.items()), str(exe), *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def site_packages(self) -> Path:
        """The extracted site-packages under SHIV_ROOT (extracting first if needed)."""
        self.run("cnivpc", args=("--version",))
        with zipfile.ZipFile(self.path) as zf:
            build_id = json.loads(zf.read("environment.json"))["build_id"]
        return self.shiv_root / f"cnivpc_{build_id}" / "site-packages"


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Zipapp:
    """Name: zipapp. Scope: session. Depends: build/zipapp.py, the dev venv (pip, shiv), PyPI
    or pip's cache for the pinned runtime wheels."""
    base = tmp_path_factory.mktemp("zipapp")
    source = snapshot(tmp_path_factory.mktemp("source"))
    path = build(source, base, base / "baked-root")
    return Zipapp(source=source, path=path, baked_root=base / "baked-root",
                  shiv_root=base / "shiv-root")
