"""The zipapp fixture (a plugin: the artifact, IPAM and bench tests use it): the zipapp is built
once per session with build/zipapp.py (into a tmp dir, never build/out) and run the way a
container runtime runs it: through the ``cnivpc-*`` symlinks, under ``env -i`` (no HOME), with a
tmp SHIV_ROOT.

Builds use a snapshot of the source taken once per session and a fixed SOURCE_DATE_EPOCH, so
the reproducibility test compares builds of the same input even while the tree is edited.

The artifact runs on every CPython 3.10-3.14 (its sh launcher picks one; CNIVPC_PYTHON names
it): ``python_for(version)`` finds each on this machine (PATH, then pyenv's versions), and the
``target_python`` fixture parametrizes a test over the five. A version this machine lacks is a
skip whose reason says so, and the session ends with a matrix of what was and was not tested, so
a missing interpreter is never silently a pass.

Imports nothing of cnivpc: the artifact is a black box here.
"""

from __future__ import annotations

import glob
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
# Every interpreter the artifact supports (build/multiabi.py PYTHONS).
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
PYENV_ROOT = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
# The aarch64 interpreters: build/dev's set-up (ensure_aarch64_python) unpacks Debian 12's arm64
# python3.11 and writes a wrapper that runs it under qemu-user-static; no other version has an
# arm64 package here.
AARCH64 = REPO / "build" / "work" / "aarch64"
# Every target: "3.12" is this machine's own architecture, "3.12-aarch64" emulated.
TARGETS = (*PYTHONS, *(f"{v}-aarch64" for v in PYTHONS))
# What each target_python test did, for the end-of-session matrix: target -> {test: outcome}.
MATRIX: dict[str, dict[str, str]] = {v: {} for v in TARGETS}


def python_for(version: str) -> str | None:
    """An interpreter of CPython ``version`` on this machine: ``python3.X`` on PATH (Debian's
    /usr/bin/python3.11), else pyenv's newest ``<root>/versions/3.X.*`` (not a shim); for
    ``3.X-aarch64``, build/dev's qemu wrapper."""
    if version.endswith("-aarch64"):
        wrapper = AARCH64 / f"python{version.removesuffix('-aarch64')}"
        return str(wrapper) if os.access(wrapper, os.X_OK) else None
    for d in os.environ.get("PATH", "").split(os.pathsep):
        found = os.path.join(d, f"python{version}")
        if d and not d.rstrip("/").endswith("/shims") and os.path.isfile(found) \
                and os.access(found, os.X_OK):
            return found
    hits = sorted(glob.glob(f"{PYENV_ROOT}/versions/{version}.*/bin/python{version}"),
                  key=lambda p: [int(n) for n in p.split("/versions/")[1].split("/")[0]
                                 .split(".") if n.isdigit()])
    return hits[-1] if hits else None


@pytest.fixture(params=TARGETS, ids=[f"py{v}" for v in TARGETS])
def target_python(request: pytest.FixtureRequest) -> str:
    """Name: target_python. Scope: function, one per CPython 3.10-3.14 on this machine's
    architecture and on aarch64 (emulated). The interpreter's path (to pass as CNIVPC_PYTHON);
    skips, saying it loudly, when this machine has none."""
    version: str = request.param
    path = python_for(version)
    if path is None:
        MATRIX[version][request.node.name] = "MISSING"
        pytest.skip(f"MISSING INTERPRETER: no CPython {version} on this machine: the artifact "
                    f"is NOT tested under {version}")
    MATRIX[version][request.node.name] = "ran"
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    version = callspec.params.get("target_python") if callspec else None
    # A skip during the test records its own reason (EMULATOR-LIMIT ...) itself.
    if version in MATRIX and report.when == "call" and not report.skipped:
        MATRIX[version][item.name] = report.outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not any(MATRIX.values()):
        return
    terminalreporter.section("cnivpc artifact: interpreter matrix")
    for version, tests in MATRIX.items():
        if not tests:
            continue
        missing = [t for t, o in tests.items() if o == "MISSING"]
        counts = {o: sum(1 for x in tests.values() if x == o) for o in sorted(set(tests.values()))}
        line = (f"CPython {version}: NOT TESTED (no interpreter on this machine; "
                f"{len(missing)} test(s) skipped)" if missing else
                f"CPython {version}: {python_for(version)}: "
                + ", ".join(f"{n} {o}" for o, n in counts.items()))
        terminalreporter.write_line(line)

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
    """Name: zipapp. Scope: session. Depends: build/zipapp.py, the dev venv (pip, shiv), the
    wheelhouse in build/work (filled from PyPI on the first build, offline after)."""
    base = tmp_path_factory.mktemp("zipapp")
    source = snapshot(tmp_path_factory.mktemp("source"))
    path = build(source, base, base / "baked-root")
    return Zipapp(source=source, path=path, baked_root=base / "baked-root",
                  shiv_root=base / "shiv-root")
