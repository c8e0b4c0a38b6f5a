"""The artifact's sh launcher (build/launcher.sh, the head of the zipapp): which interpreter it
picks (CNIVPC_PYTHON, then cnivpc.python beside the binary, then the newest python3.14 ...
python3.10 on PATH), that argv[0] dispatch through the plugin symlinks survives it, and what a
node without a usable Python gets: a CNI error on stdout (DEL succeeds) or a clear message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.zipapp import PYTHONS, Run, Zipapp, python_for

pytestmark = pytest.mark.artifact

PRESENT = [(v, p) for v in PYTHONS if (p := python_for(v))]
ADD = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/none",
       "CNI_IFNAME": "eth0"}


def run(exe: Path, env: dict[str, str], args: tuple[str, ...] = (), stdin: str = "",
        shell: str | None = None) -> Run:
    """Exec ``exe`` with exactly ``env`` (no PATH unless given)."""
    cmd = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
           *([shell] if shell else []), str(exe), *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def picked(r: Run) -> str:
    """The interpreter version ``cnivpc version`` reports (its second line)."""
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[1].split()[1].rsplit(".", 1)[0]


def bindir(tmp_path: Path, versions: list[tuple[str, str]]) -> Path:
    """A PATH directory holding ``python3.X`` links to the given interpreters, nothing else."""
    d = tmp_path / "pybin"
    d.mkdir(exist_ok=True)
    for v, path in versions:
        (d / f"python{v}").symlink_to(path)
    return d


def test_the_newest_on_path_wins(zipapp: Zipapp, tmp_path: Path) -> None:
    if len(PRESENT) < 2:
        pytest.skip(f"MISSING INTERPRETERS: needs two of CPython {PYTHONS}, found {PRESENT}")
    d = bindir(tmp_path, PRESENT)
    env = {"PATH": str(d), "SHIV_ROOT": str(zipapp.shiv_root)}
    assert picked(run(zipapp.path, env, ("version",))) == PRESENT[-1][0]
    (d / f"python{PRESENT[-1][0]}").unlink()
    assert picked(run(zipapp.path, env, ("version",))) == PRESENT[-2][0]
    # A version manager's shims directory (pyenv, asdf) is skipped, even first on PATH.
    shims = tmp_path / "pyenv" / "shims"
    shims.mkdir(parents=True)
    (shims / f"python{PRESENT[-1][0]}").symlink_to(PRESENT[-1][1])
    env["PATH"] = f"{shims}:{d}"
    assert picked(run(zipapp.path, env, ("version",))) == PRESENT[-2][0]
    # ... and through a plugin symlink, the plugin (argv[0]) still answers.
    r = run(zipapp.bin / "cnivpc-ipam", {**env, "CNI_COMMAND": "VERSION"})
    assert r.returncode == 0 and "supportedVersions" in r.doc, r.stderr


def test_overrides_env_then_file(zipapp: Zipapp, tmp_path: Path) -> None:
    if len(PRESENT) < 3:
        pytest.skip(f"MISSING INTERPRETERS: needs three of CPython {PYTHONS}, found {PRESENT}")
    (low, low_path), (mid, mid_path) = PRESENT[0], PRESENT[1]
    # A copy installed as on a node: the binary, its symlinks, and cnivpc.python beside them.
    node = tmp_path / "opt-cni-bin"
    node.mkdir()
    shutil.copy2(zipapp.path, node / "cnivpc")
    (node / "cnivpc-ptp").symlink_to("cnivpc")
    env = {"PATH": str(bindir(tmp_path, PRESENT)), "SHIV_ROOT": str(zipapp.shiv_root)}
    assert picked(run(node / "cnivpc", env, ("version",))) == PRESENT[-1][0]
    (node / "cnivpc.python").write_text(f"{mid_path}\n")
    assert picked(run(node / "cnivpc", env, ("version",))) == mid
    r = run(node / "cnivpc-ptp", {**env, "CNI_COMMAND": "VERSION"})
    assert r.returncode == 0 and "supportedVersions" in r.doc, r.stderr
    assert picked(run(node / "cnivpc", {**env, "CNIVPC_PYTHON": low_path},
                      ("version",))) == low
    # A bare name is looked up on PATH.
    assert picked(run(node / "cnivpc", {**env, "CNIVPC_PYTHON": f"python{low}"},
                      ("version",))) == low


def test_no_path_at_all_uses_the_usual_one(zipapp: Zipapp) -> None:
    usual = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    if not any(shutil.which(f"python{v}", path=os.pathsep.join(usual)) for v in PYTHONS):
        pytest.skip("MISSING INTERPRETER: no python3.10+ in the usual PATH directories")
    r = run(zipapp.path, {"SHIV_ROOT": str(zipapp.shiv_root)}, ("version",))
    assert picked(r) in PYTHONS


@pytest.mark.parametrize("program", ["cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp", "cnivpc"])
def test_no_python_is_a_cni_error(zipapp: Zipapp, tmp_path: Path, program: str) -> None:
    exe = zipapp.path if program == "cnivpc" else zipapp.bin / program
    env = {"PATH": str(tmp_path), "SHIV_ROOT": str(zipapp.shiv_root)}  # no python there
    conf = json.dumps({"cniVersion": "0.4.0", "name": "n", "type": program}, indent=2)
    add = run(exe, {**env, **ADD}, stdin=conf)
    assert add.returncode == 1, add.stderr
    assert add.doc["code"] == 50 and add.doc["cniVersion"] == "0.4.0", add.doc
    assert "no supported Python" in add.doc["msg"] and "CNIVPC_PYTHON" in add.doc["details"]
    assert "python3.14 ... python3.10" in add.stderr
    version = run(exe, {**env, "CNI_COMMAND": "VERSION"}, stdin='{"cniVersion":"1.1.0"}')
    assert version.returncode == 1 and version.doc["cniVersion"] == "1.1.0"
    deleted = run(exe, {**env, **ADD, "CNI_COMMAND": "DEL"}, stdin=conf)
    assert (deleted.returncode, deleted.stdout) == (0, ""), deleted.stderr
    assert "no supported Python" in deleted.stderr


def test_no_python_for_the_cli(zipapp: Zipapp, tmp_path: Path) -> None:
    r = run(zipapp.path, {"PATH": str(tmp_path)}, ("status",))
    assert (r.returncode, r.stdout) == (127, "")
    assert "no supported Python" in r.stderr and "cnivpc.python" in r.stderr
    bad = run(zipapp.path, {"PATH": str(tmp_path), "CNIVPC_PYTHON": "/nonexistent/python3"},
              ("version",))
    assert bad.returncode == 127 and "(/nonexistent/python3) is not an executable" in bad.stderr


def test_an_unsupported_interpreter_is_refused(zipapp: Zipapp, tmp_path: Path) -> None:
    old = python_for("3.9")
    if old is None:
        pytest.skip("MISSING INTERPRETER: no CPython 3.9 here to try the refusal with")
    env = {"PATH": str(tmp_path), "SHIV_ROOT": str(zipapp.shiv_root), "CNIVPC_PYTHON": old}
    add = run(zipapp.bin / "cnivpc-ipam", {**env, **ADD}, stdin='{"cniVersion": "1.0.0"}')
    assert add.returncode == 1 and add.doc["code"] == 50, (add.stdout, add.stderr)
    assert "not 3.9 on" in add.doc["msg"] and add.doc["cniVersion"] == "1.0.0"
    deleted = run(zipapp.bin / "cnivpc-ipam", {**env, **ADD, "CNI_COMMAND": "DEL"})
    assert (deleted.returncode, deleted.stdout) == (0, "")
    cli = run(zipapp.path, env, ("version",))
    assert cli.returncode == 127 and "not 3.9 on" in cli.stderr


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox"])
def test_the_launcher_is_plain_posix_sh(zipapp: Zipapp, shell: str) -> None:
    """/bin/sh is dash on Debian and Ubuntu, bash on Amazon Linux 2023, busybox in some
    images: the launcher runs under each (here started as ``<shell> cnivpc``)."""
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"MISSING SHELL: no {shell} on this machine")
    argv0 = [path, "sh"] if shell == "busybox" else [path]
    cmd = ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", f"SHIV_ROOT={zipapp.shiv_root}",
           *argv0, str(zipapp.path), "version"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("cnivpc "), proc.stderr
