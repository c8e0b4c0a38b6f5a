"""``cnivpc install`` run from the built zipapp into a temporary root: files, symlinks,
conflist, pre-extraction and pruning; idempotent; --dry-run changes nothing; an invalid
existing conflist is refused; then the plugins run from the installed symlinks under env -i."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.zipapp import BASE_ENV, Zipapp

pytestmark = pytest.mark.artifact


def install(zipapp: Zipapp, root: Path, *extra: str) -> tuple[int, str, str]:
    run = zipapp.run("cnivpc", args=("install", "--root", str(root), "--shiv-root",
                                     "/var/lib/cnivpc/shiv", *extra))
    return run.returncode, run.stdout, run.stderr


def test_install_twice_then_plugins_run(zipapp: Zipapp, tmp_path: Path) -> None:
    root = tmp_path / "node"
    shiv = root / "var/lib/cnivpc/shiv"
    shiv.mkdir(parents=True)
    for age, name in ((300, "cnivpc_old1"), (200, "cnivpc_old2")):
        (shiv / name).mkdir()
        os.utime(shiv / name, (os.path.getmtime(shiv) - age,) * 2)

    code, out, err = install(zipapp, root, "--subnet-tag", "cnivpc=pods")
    assert code == 0, err
    assert "done:" in out
    bin_dir = root / "opt/cni/bin"
    assert (bin_dir / "cnivpc").read_bytes() == zipapp.path.read_bytes()
    for name in ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"):
        assert os.readlink(bin_dir / name) == "cnivpc"
    conf = json.loads((root / "etc/cni/net.d/10-cnivpc.conflist").read_text())
    assert [p["type"] for p in conf["plugins"]] == ["cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"]
    assert conf["plugins"][0]["subnetTags"] == {"cnivpc": "pods"}
    extracted = sorted(p.name for p in shiv.iterdir() if p.name.startswith("cnivpc_"))
    assert "cnivpc_old1" not in extracted  # older than the newest previous one: pruned
    assert "cnivpc_old2" in extracted      # the previous extraction is kept
    assert any((shiv / n / "site-packages").is_dir() for n in extracted)

    code, out, err = install(zipapp, root)
    assert code == 0, err
    assert "nothing to do" in out

    env = ["env", "-i", *(f"{k}={v}" for k, v in BASE_ENV.items())]
    version = subprocess.run([*env, "CNI_COMMAND=VERSION", str(bin_dir / "cnivpc-ptp")],
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]
    bad = subprocess.run([*env, "CNI_COMMAND=ADD", "CNI_CONTAINERID=c1", "CNI_NETNS=/x",
                          "CNI_IFNAME=eth0", str(bin_dir / "cnivpc-ptp")],
                         input='{"cniVersion": "1.0.0", "name": "n", "hostInterface": "eth0"}',
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert json.loads(bad.stdout)["code"] == 7


def test_dry_run_changes_nothing(zipapp: Zipapp, tmp_path: Path) -> None:
    code, out, err = install(zipapp, tmp_path, "--dry-run")
    assert code == 0, err
    assert "would write" in out
    assert list(tmp_path.iterdir()) == []


def test_invalid_existing_conflist_is_refused(zipapp: Zipapp, tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc/cni/net.d"
    conf_dir.mkdir(parents=True)
    (conf_dir / "10-cnivpc.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "cnivpc",
        "plugins": [{"type": "cnivpc-ipam", "interfaceIndex": -3}]}))
    code, _, err = install(zipapp, tmp_path)
    assert code == 1
    assert "interfaceIndex" in err and "hint:" in err


def test_install_fused_writes_one_entry_the_plugin_accepts(zipapp: Zipapp,
                                                           tmp_path: Path) -> None:
    root = tmp_path / "node"
    code, _, err = install(zipapp, root, "--fused", "--no-extract")
    assert code == 0, err
    conf = json.loads((root / "etc/cni/net.d/10-cnivpc.conflist").read_text())
    [entry] = conf["plugins"]
    assert entry["type"] == "cnivpc" and set(entry) >= {"ipam", "ipvlan", "ptp"}
    # The runtime execs the entry's type from the bin dir: the installed zipapp itself answers
    # as the fused plugin (conflist validity is tests/unit/test_examples.py's).
    run = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in BASE_ENV.items()),
                          "CNI_COMMAND=VERSION", str(root / "opt/cni/bin/cnivpc")],
                         input=json.dumps({**conf, **entry}), capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "1.1.0" in json.loads(run.stdout)["supportedVersions"]


def test_install_in_the_daemonsets_exact_form(zipapp: Zipapp, tmp_path: Path) -> None:
    """The DaemonSet's init container: ``python3 /cnivpc install --source /cnivpc --root /host
    --subnet-tag cnivpc=pods``, the zipapp copied to a path of its own first (the image's)."""
    image = tmp_path / "cnivpc"
    image.write_bytes(zipapp.path.read_bytes())
    root = tmp_path / "host"
    env = ["env", "-i", *(f"{k}={v}" for k, v in BASE_ENV.items()),
           f"SHIV_ROOT={zipapp.shiv_root}"]
    proc = subprocess.run([*env, "/usr/bin/python3", str(image), "install", "--source",
                           str(image), "--root", str(root), "--subnet-tag", "cnivpc=pods"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (root / "opt/cni/bin/cnivpc").read_bytes() == image.read_bytes()
    assert os.readlink(root / "opt/cni/bin/cnivpc-ipam") == "cnivpc"
    conf = json.loads((root / "etc/cni/net.d/10-cnivpc.conflist").read_text())
    assert conf["plugins"][0]["subnetTags"] == {"cnivpc": "pods"}
    again = subprocess.run([*env, "/usr/bin/python3", str(image), "install", "--source",
                            str(image), "--root", str(root), "--subnet-tag", "cnivpc=pods"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stderr


@pytest.mark.parametrize("family, keys", [
    ("dual-stack", {"ipv6": True}),
    ("ipv6", {"ipv6": True, "ipv4": False}),
])
def test_install_writes_the_ip_family_and_service_routes(zipapp: Zipapp, tmp_path: Path,
                                                         family: str,
                                                         keys: dict[str, bool]) -> None:
    root = tmp_path / "node"
    routes = ["--service-route", "s3"] if family == "dual-stack" else []
    code, _, err = install(zipapp, root, "--no-extract", "--ip-family", family, *routes)
    assert code == 0, err
    ipam = json.loads((root / "etc/cni/net.d/10-cnivpc.conflist").read_text())["plugins"][0]
    assert {k: ipam[k] for k in keys} == keys
    assert ipam.get("routeServicePrefixLists") == (["s3"] if routes else None)
    # A second install keeps (and so validates) what the first wrote.
    code, out, err = install(zipapp, root, "--no-extract")
    assert code == 0 and "kept" in out, err


def test_install_refuses_what_ipv6_only_pods_cannot_do(zipapp: Zipapp, tmp_path: Path) -> None:
    root = tmp_path / "node"
    code, _, err = install(zipapp, root, "--no-extract", "--ip-family", "ipv6",
                           "--service-route", "s3")
    assert code == 2 and "--service-route" in err, err
    assert not (root / "etc/cni/net.d").exists()
    # An existing conflist that asks for IPv4 off and IPv6 off is refused, never kept.
    conf_dir = root / "etc/cni/net.d"
    conf_dir.mkdir(parents=True)
    doc = {"cniVersion": "1.0.0", "name": "cnivpc", "plugins": [
        {"type": "cnivpc-ipam", "ipv4": False},
        {"type": "cnivpc-ipvlan"},
        {"type": "cnivpc-ptp", "hostInterface": "eth0", "containerInterface": "eth1"}]}
    (conf_dir / "10-cnivpc.conflist").write_text(json.dumps(doc))
    code, _, err = install(zipapp, root, "--no-extract")
    assert code != 0 and "ipv4: false needs ipv6: true" in err, err
