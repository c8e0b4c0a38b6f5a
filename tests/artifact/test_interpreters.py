"""One artifact, every CPython 3.10-3.14: the built zipapp carries pydantic-core's extension for
every interpreter and architecture (the completeness check, and that it catches a gap), and
runs VERSION through every entry point and an IPAM ADD/DEL against the lab under each
interpreter this machine has (CNIVPC_PYTHON picks it through the launcher). The ptp ADD/CHECK/
DEL per interpreter is in test_zipapp_netns.py; the launcher's own choices in
test_launcher.py. An interpreter this machine lacks is a loud skip (tests/support/zipapp.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.zipapp import REPO, Zipapp

pytestmark = pytest.mark.artifact

PROGRAMS = ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp")


def multiabi() -> ModuleType:
    """build/multiabi.py, loaded from its file (build/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cnivpc_build_multiabi",
                                                  REPO / "build" / "multiabi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cnivpc_build_multiabi", module)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_every_extension_for_every_target(zipapp: Zipapp) -> None:
    m = multiabi()
    assert m.check_complete(zipapp.path, m.targets()) == []
    with zipfile.ZipFile(zipapp.path) as zf:
        so = sorted(n.rsplit("/", 1)[1] for n in zf.namelist() if n.endswith(".so"))
    assert so == sorted(f"_pydantic_core{t.suffix}" for t in m.targets())
    assert len(so) == 10


def without(src: Path, dst: Path, drop: str, replace: dict[str, bytes] | None = None) -> Path:
    """A copy of the archive without the entries ending in ``drop``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if drop and info.filename.endswith(drop):
                continue
            zout.writestr(info, (replace or {}).get(info.filename) or zin.read(info))
    return dst


def test_the_check_names_a_missing_or_wrong_extension(zipapp: Zipapp, tmp_path: Path) -> None:
    m = multiabi()
    gap = without(zipapp.path, tmp_path / "gap.pyz", ".cpython-313-aarch64-linux-gnu.so")
    assert m.check_complete(gap, m.targets()) == [
        "missing site-packages/pydantic_core/_pydantic_core"
        ".cpython-313-aarch64-linux-gnu.so (cp313-aarch64)"]
    proc = subprocess.run([sys.executable, str(REPO / "build" / "multiabi.py"), str(gap)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "INCOMPLETE: missing" in proc.stderr, proc.stderr
    # An x86_64 object under an aarch64 name is caught by its ELF header.
    prefix = "site-packages/pydantic_core/_pydantic_core"
    with zipfile.ZipFile(zipapp.path) as zf:
        x86 = zf.read(f"{prefix}.cpython-312-x86_64-linux-gnu.so")
    wrong = without(zipapp.path, tmp_path / "wrong.pyz", "",
                    {f"{prefix}.cpython-312-aarch64-linux-gnu.so": x86})
    assert m.check_complete(wrong, m.targets()) == [
        f"{prefix}.cpython-312-aarch64-linux-gnu.so: not an ELF for aarch64"]
    # The artifact itself passes the command-line check.
    ok = subprocess.run([sys.executable, str(REPO / "build" / "multiabi.py"),
                         str(zipapp.path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "complete: 10 targets" in ok.stdout, ok.stderr


def test_version_everywhere_under(zipapp: Zipapp, target_python: str) -> None:
    env = {"CNIVPC_PYTHON": target_python}
    for program in PROGRAMS:
        run = zipapp.run(program, {**env, "CNI_COMMAND": "VERSION"}, '{"cniVersion": "1.1.0"}')
        assert run.returncode == 0, (program, run.stderr)
        assert run.doc["cniVersion"] == "1.1.0" and "0.3.1" in run.doc["supportedVersions"]
    fused = zipapp.run("cnivpc", {**env, "CNI_COMMAND": "VERSION"}, '{"cniVersion": "1.0.0"}')
    assert fused.returncode == 0 and "1.0.0" in fused.doc["supportedVersions"], fused.stderr
    cli = zipapp.run("cnivpc", env, args=("version",))
    assert cli.returncode == 0, cli.stderr
    version = subprocess.run([target_python, "-c", "import platform; "
                              "print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert cli.stdout.splitlines()[1].startswith(f"python {version} "), cli.stdout
    # A plugin's config model (pydantic, so the compiled extension) under this interpreter:
    bad = zipapp.run("cnivpc-ptp", {**env, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1",
                                    "CNI_NETNS": "/var/run/netns/none", "CNI_IFNAME": "eth0"},
                     '{"cniVersion": "1.0.0", "name": "n", "type": "cnivpc-ptp", '
                     '"hostInterface": 7}')
    assert bad.returncode != 0 and bad.doc["code"] == 7, (bad.stdout, bad.stderr)


@pytest.mark.netns
def test_ipam_add_del_against_the_lab_under(ipam_node: Any, zipapp: Zipapp,
                                            target_python: str) -> None:
    ipam = ipam_node(warmIPTarget=1).use_zipapp(zipapp)
    env = {"CNIVPC_PYTHON": target_python}
    add = ipam.add("pod-a", env=env)
    assert add.code == 0, (add.doc, add.stderr)
    assert ipam.allocations() == {"pod-a": add.ip}
    assigned = {x["PrivateIpAddress"] for e in ipam.enis() for x in e["PrivateIpAddresses"]}
    assert add.ip in assigned  # really assigned to the node in (the lab's) EC2
    for _ in range(2):  # DEL, and a repeated DEL
        deleted = ipam.delete("pod-a", env=env)
        assert (deleted.code, deleted.doc) == (0, {}), deleted.stderr
    assert ipam.allocations() == {}
    ipam.settle()


def test_the_requirement_check_names_what_does_not_fit(tmp_path: Path) -> None:
    """The build's check that every pinned distribution runs on every target: a Requires-Python
    that excludes 3.10, and a requirement only 3.10 has (a backport) that is not installed."""
    m = multiabi()

    def dist(name: str, version: str, *headers: str) -> None:
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("\n".join(
            ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *headers]) + "\n")

    dist("newonly", "1.0", "Requires-Python: >=3.11")
    dist("needsbackport", "2.0", 'Requires-Dist: tomli>=1; python_version < "3.11"',
         'Requires-Dist: newonly==1.0', 'Requires-Dist: extra-thing; extra == "x"')
    with pytest.raises(SystemExit) as exc:
        m.check_requirements(tmp_path, m.targets())
    text = str(exc.value)
    assert "newonly 1.0 requires Python >=3.11: not 3.10" in text
    assert "needsbackport needs tomli>=1; python_version < \"3.11\" on cp310-x86_64" in text
    assert "cp311" not in text.split("needsbackport", 1)[1]  # the marker holds on 3.10 only
    assert "extra-thing" not in text  # an extra nobody asked for
    assert m.check_requirements(tmp_path, [t for t in m.targets() if t.python != "3.10"]) \
        is None
