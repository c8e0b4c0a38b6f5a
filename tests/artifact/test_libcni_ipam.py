"""libcni (1.1.2, through tests/runtimes/libcni: the calls containerd, CRI-O and podman make)
driving the built zipapp's cnivpc-ipam against the lab on the host kernel. The IPAM alone is
a valid network list for libcni (its result has IPs and no interfaces); the chains with ipvlan
and ptp run under libcni in UML (tests/uml/test_real_clients.py).

What libcni adds over our own test runtime: it parses and converts the ADD result itself (and
rejects a version it does not know), caches it (DEL's and CHECK's prevResult come from that
cache file, not from the caller; a DEL without one gets none), and passes its own environment
to plugins.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cnivpc.cli import runtimes
from cnivpc.cli.install import conflist, fused_conflist
from cnivpc.cni.versions import parse
from cnivpc.lab.runtime import lab_conflist
from tests.support.libcni import BASE_PATH, Libcni
from tests.support.zipapp import Zipapp

pytestmark = [pytest.mark.artifact, pytest.mark.netns]

EC2_ENV = {"AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773"}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Every conflist we ship or write: the examples and what `cnivpc install [--fused]` writes.
SHIPPED = {
    "examples/cnivpc.conflist": json.loads((EXAMPLES / "cnivpc.conflist").read_text()),
    "examples/cnivpc-fused.conflist": json.loads(
        (EXAMPLES / "cnivpc-fused.conflist").read_text()),
    "cnivpc install": conflist(),
    "cnivpc install --fused": fused_conflist(conflist()),
}


def ipam_conflist(workdir: Path, version: str) -> Path:
    doc = lab_conflist(workdir, 0)
    doc["cniVersion"] = version
    doc["plugins"] = doc["plugins"][:1]
    path = workdir / f"ipam-{version}.conflist"
    path.write_text(json.dumps(doc))
    return path


def held(conflist: Path) -> dict[str, str]:
    import sqlite3

    data_dir = json.loads(conflist.read_text())["plugins"][0]["dataDir"]
    with sqlite3.connect(Path(data_dir) / "ipam.db") as conn:
        return dict(conn.execute(
            "SELECT container_id, ip FROM ips WHERE container_id IS NOT NULL").fetchall())


def audit(zipapp: Zipapp, node_ns: str, conflist: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["ip", "netns", "exec", node_ns, "env", "-i", f"PATH={BASE_PATH}",
         f"SHIV_ROOT={zipapp.shiv_root}", *(f"{k}={v}" for k, v in EC2_ENV.items()),
         str(zipapp.path), "ipam", "audit", "--json", "--conf", str(conflist)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 3), proc.stderr
    violations: list[dict[str, Any]] = json.loads(proc.stdout)["violations"]
    return violations


@pytest.fixture
def client(zipapp: Zipapp, libcni_driver: Path, lab_factory: Any, tmp_path: Path) -> Any:
    lab = lab_factory(nodes=1)

    pod = f"/var/run/netns/{lab.fabric.add_netns('pod')}"

    def make(version: str) -> Libcni:
        return Libcni(libcni_driver, ipam_conflist(tmp_path, version), tmp_path / "cache",
                      [zipapp.bin], lab.node(0).netns,
                      {"SHIV_ROOT": str(zipapp.shiv_root), **EC2_ENV}, pod)

    return make


def test_add_check_del_del_through_libcni(client: Any, zipapp: Zipapp) -> None:
    cni: Libcni = client("1.0.0")
    add = cni("add", "lc1")
    assert add.code == 0, (add.stdout, add.stderr)
    assert add.doc["cniVersion"] == "1.0.0"
    ip = add.doc["ips"][0]["address"].split("/")[0]
    assert held(cni.conflist) == {"lc1": ip}
    # libcni's cache holds the result: CHECK and DEL get it as prevResult from there.
    assert cni.cache_files() == ["cnivpc-lc1-eth0"]
    assert cni("cached", "lc1").doc["ips"] == add.doc["ips"]
    check = cni("check", "lc1")
    assert (check.code, check.stdout) == (0, ""), check.stderr
    for _ in range(2):  # the second DEL: no cache, no allocation, still success
        deleted = cni("del", "lc1")
        assert (deleted.code, deleted.stdout) == (0, ""), deleted.stderr
        assert held(cni.conflist) == {} and cni.cache_files() == []
    assert audit(zipapp, cni.node_ns, cni.conflist) == []


def test_a_1_1_0_conflist_fails_in_libcni_1_1_and_its_del_cleans_up(client: Any,
                                                                   zipapp: Zipapp) -> None:
    """What every containerd 1.6/1.7, CRI-O <= 1.30 and podman 4 node saw with the conflists
    we shipped before: the plugin answers in the config's version (as the spec says), libcni
    1.1 cannot parse "1.1.0", the ADD fails. The runtime then sends DEL, which must release
    what the plugin allocated before libcni threw its answer away."""
    cni: Libcni = client("1.1.0")
    add = cni("add", "lc2")
    assert add.code == 1
    assert 'unsupported CNI result version "1.1.0"' in add.doc["error"], add.stdout
    assert len(held(cni.conflist)) == 1  # the plugin did allocate
    assert cni.cache_files() == []  # libcni cached nothing
    deleted = cni("del", "lc2")
    assert (deleted.code, deleted.stdout) == (0, ""), deleted.stderr
    assert held(cni.conflist) == {}
    assert audit(zipapp, cni.node_ns, cni.conflist) == []


def test_del_with_only_what_the_runtime_passes(client: Any, zipapp: Zipapp) -> None:
    """podman's cleanup DEL (run by conmon) carries CNI_*, PATH and the runtime's own
    variables: not the caller's AWS_*, SHIV_ROOT or anything else. It must still release."""
    cni: Libcni = client("1.0.0")
    add = cni("add", "lc3")
    assert add.code == 0, (add.stdout, add.stderr)
    assert len(held(cni.conflist)) == 1
    deleted = cni("del", "lc3", env={"PATH": BASE_PATH})
    assert (deleted.code, deleted.stdout) == (0, ""), deleted.stderr
    assert held(cni.conflist) == {} and cni.cache_files() == []
    assert audit(zipapp, cni.node_ns, cni.conflist) == []


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_conflist_passes_libcni_1_1(name: str, zipapp: Zipapp,
                                                  libcni_driver: Path, tmp_path: Path) -> None:
    """Its version is one libcni 1.1 (podman 4, containerd 1.6/1.7, CRI-O <= 1.30) parses, and
    libcni's validation (VERSION to every plugin, as podman does for each conflist it loads)
    passes against the built plugins. Running them: here for the IPAM, in UML for the rest."""
    doc = SHIPPED[name]
    newest = runtimes.newest_cni_version("podman", (4, 3, 1))
    assert newest is not None and parse(doc["cniVersion"]) <= parse(newest)
    path = tmp_path / "shipped.conflist"
    path.write_text(json.dumps(doc))
    # The fused type "cnivpc" is the zipapp itself (cnivpc install puts it beside the links).
    cni = Libcni(libcni_driver, path, tmp_path / "cache", [zipapp.bin, zipapp.path.parent], "",
                 {"SHIV_ROOT": str(zipapp.shiv_root)})
    valid = cni("validate", "unused")
    assert (valid.code, valid.doc) == (0, {"capabilities": []}), (valid.stdout, valid.stderr)
