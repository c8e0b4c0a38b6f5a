"""examples/ami-bake.sh (and the ``cnivpc install`` it runs) on the node layouts operators bake:
Debian 12, Ubuntu 22.04 and 24.04, Amazon Linux 2023. Each is a fake image root
(CNIVPC_BAKE_ROOT) with the distribution's os-release and a PATH holding only what that
distribution has: its interpreters under their names (Amazon Linux 2023: python3 is 3.9, which
the launcher must not take), iptables or not, and a stub package manager that records what it
is asked and "installs" python3.11 / iptables by linking them into that PATH. The bake must
pick (or install) the right interpreter, lay out the binary, symlinks, conflist and systemd
units, enable them (systemctl --root), and the installed plugin must answer through the
launcher with that PATH. What cannot be tested here: the distributions' real package
managers and systemd (the stubs stand in), and a real image's kernel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.zipapp import REPO, Zipapp, python_for

pytestmark = pytest.mark.artifact

BAKE = REPO / "examples" / "ami-bake.sh"
TOOLS = ("bash", "sh", "dirname", "mkdir", "install", "systemctl", "env", "cat")


@dataclass(frozen=True)
class Layout:
    os_release: str
    pythons: dict[str, str]         # name on PATH -> CPython version it is
    iptables: bool
    installs: list[str] = field(default_factory=list)  # what the bake must ask the pkg manager
    picks: str = ""                 # the interpreter the node ends up running cnivpc with


LAYOUTS = {
    "debian12": Layout('ID=debian\nVERSION_ID="12"\n',
                       {"python3": "3.11", "python3.11": "3.11"}, True, [], "3.11"),
    "ubuntu2204": Layout('ID=ubuntu\nVERSION_ID="22.04"\n',
                         {"python3": "3.10", "python3.10": "3.10"}, True, [], "3.10"),
    "ubuntu2404": Layout('ID=ubuntu\nVERSION_ID="24.04"\n',
                         {"python3": "3.12", "python3.12": "3.12"}, True, [], "3.12"),
    "al2023": Layout('ID="amzn"\nVERSION_ID="2023"\n', {"python3": "3.9", "python3.9": "3.9"},
                     False, ["dnf install -y python3.11", "dnf install -y iptables-nft"], "3.11"),
}

STUB = """#!/bin/bash
# a package manager stand-in: records the call, "installs" by linking into the fake PATH
echo "${0##*/} $*" >>"%(log)s"
for a in "$@"; do
    case $a in
        python3.11) /bin/ln -sf "%(py311)s" "%(tools)s/python3.11" ;;
        iptables | iptables-nft) /bin/ln -sf "%(iptables)s" "%(tools)s/iptables" ;;
    esac
done
"""


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_bake_on(zipapp: Zipapp, tmp_path: Path, name: str) -> None:
    layout = LAYOUTS[name]
    needed = {*layout.pythons.values(), layout.picks}
    missing = sorted(v for v in needed if python_for(v) is None)
    if missing:
        pytest.skip(f"MISSING INTERPRETER: the {name} layout needs CPython {missing} here")
    iptables = shutil.which("iptables", path="/usr/sbin:/sbin:/usr/bin")
    assert iptables, "the host has no iptables to link"
    tools, root, log = tmp_path / "bin", tmp_path / "image", tmp_path / "pkg.log"
    tools.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
        assert found, tool
        (tools / tool).symlink_to(found)
    for exe, version in layout.pythons.items():
        (tools / exe).symlink_to(str(python_for(version)))
    if layout.iptables:
        (tools / "iptables").symlink_to(iptables)
    stub = STUB % {"log": log, "py311": python_for("3.11"), "tools": tools,
                   "iptables": iptables}
    for manager in ("dnf", "apt-get"):
        (tools / manager).write_text(stub)
        (tools / manager).chmod(0o755)
    (tmp_path / "os-release").write_text(layout.os_release)
    env = {"PATH": str(tools), "OS_RELEASE": str(tmp_path / "os-release"),
           "CNIVPC_BAKE_ROOT": str(root), "SHIV_ROOT": str(zipapp.shiv_root)}
    proc = subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           str(tools / "bash"), str(BAKE), str(zipapp.path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (log.read_text().splitlines() if log.exists() else []) == layout.installs
    # cnivpc version, the bake's last step, through the launcher on the node's PATH:
    assert proc.stdout.splitlines()[-1].startswith(f"python {layout.picks}."), proc.stdout
    bindir = root / "opt" / "cni" / "bin"
    assert (bindir / "cnivpc").read_bytes() == zipapp.path.read_bytes()
    for plugin in ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"):
        assert os.readlink(bindir / plugin) == "cnivpc"
    conf = json.loads((root / "etc" / "cni" / "net.d" / "10-cnivpc.conflist").read_text())
    assert [p["type"] for p in conf["plugins"]] == ["cnivpc-ipam", "cnivpc-ipvlan",
                                                    "cnivpc-ptp"]
    assert list((root / "var" / "lib" / "cnivpc" / "shiv").glob("cnivpc_*/site-packages"))
    units = root / "etc" / "systemd" / "system"
    for unit in ("cnivpc-gc.service", "cnivpc-gc.timer", "cnivpc-warm.service"):
        assert (units / unit).read_bytes() == (REPO / "examples" / "systemd" / unit).read_bytes()
    assert (units / "timers.target.wants" / "cnivpc-gc.timer").is_symlink()
    assert (units / "multi-user.target.wants" / "cnivpc-warm.service").is_symlink()
    # The installed plugin, exec'd as a runtime would on that node.
    run = subprocess.run(["/usr/bin/env", "-i", f"PATH={tools}", "CNI_COMMAND=VERSION",
                          f"SHIV_ROOT={root / 'var/lib/cnivpc/shiv'}", str(bindir / "cnivpc-ptp")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "supportedVersions" in json.loads(run.stdout), run.stderr
    # Baked twice: nothing changes, nothing is installed again.
    again = subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                            str(tools / "bash"), str(BAKE), str(zipapp.path)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr
    assert (log.read_text().splitlines() if log.exists() else []) == layout.installs
