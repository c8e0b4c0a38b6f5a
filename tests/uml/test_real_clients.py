"""Real CNI clients run the shipped conflists on a kernel with ipvlan (UML here), in the lab
(2 nodes, EC2 over HTTP, IMDSv2), through the built zipapp's symlinks:

* libcni 1.1.2 (tests/runtimes/libcni: the calls containerd, CRI-O and podman make) runs
  examples/cnivpc.conflist and examples/cnivpc-fused.conflist: ADD, CHECK (libcni passes the
  result it cached as prevResult), DEL, DEL again; and a list whose last plugin fails its ADD
  after ours succeeded, then the DEL a runtime sends after that, which must leave nothing.
* podman 4.3 (CNI backend, crun) runs two containers on two nodes, one on the chained
  conflist and one on the fused: they reach each other, their subnet router, their node and
  the internet host; ``network reload``, ``restart``, ``stop``, ``rm -f`` and ``run --rm``
  release everything (the IPAM store and EC2 agree: ``cnivpc ipam audit`` finds nothing).
  podman's cleanup DEL comes from conmon with its own, stripped environment. Its ``network
  reload`` picks one interface of the old result at random (eth0 or the veth's eth1): the
  second is refused with code 7 and leaves nothing held; ``restart`` brings the pod back.

podman in UML needs (found by an earlier probe): cgroup2 mounted on /sys/fs/cgroup, container
storage on tmpfs (never hostfs), ``--rootfs /:O`` (the host's root through an overlay: no
image, nothing pulled), cgroupfs and no journald. The plugins run "on" a lab node: podman is
started with ``nsenter --net`` into the node's netns (its mount namespace stays, so the
container netns it bind-mounts under /run/netns stays visible to later podman commands).

One lab for the module: moto's first calls are slow in UML. The tests run in file order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnivpc.lab.fabric import INET_ADDR
from cnivpc.lab.runtime import lab_conflist
from tests.support.lab import ping, run_in
from tests.support.libcni import BASE_PATH, Libcni

pytestmark = pytest.mark.uml

REPO = Path(__file__).resolve().parents[2]
ZIPAPP = Path(os.environ.get("CNIVPC_ZIPAPP", REPO / "build/out/cnivpc"))
IN_UML = os.environ.get("CNL_IN_UML") == "1"
EC2_ENV = {"AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773"}
FUSED_EXAMPLE = REPO / "examples" / "cnivpc-fused.conflist"
# A last plugin that refuses ADD (as a bandwidth or portmap plugin may) and accepts the rest.
FAILING_PLUGIN = """#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"1.0.0","code":11,"msg":"refuses ADD"}'; exit 1 ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
esac
exit 0
"""


@dataclass
class Setup:
    lab: Any
    work: Path
    bin_dir: Path
    env: dict[str, str]
    conflists: list[dict[str, Any]]

    def node_ns(self, i: int) -> str:
        return str(self.lab.node(i).netns)

    def held(self, i: int) -> dict[str, str]:
        db = Path(self.conflists[i]["plugins"][0]["dataDir"]) / "ipam.db"
        with sqlite3.connect(db) as conn:
            return dict(conn.execute(
                "SELECT container_id, ip FROM ips WHERE container_id IS NOT NULL").fetchall())

    def pods(self, i: int) -> list[str]:
        db = Path(self.conflists[i]["plugins"][0]["dataDir"]) / "ipam.db"
        with sqlite3.connect(db) as conn:
            return [row[0] for row in conn.execute(
                "SELECT pod FROM ips WHERE container_id IS NOT NULL")]

    def write(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.work / name
        path.write_text(json.dumps(doc))
        return path

    def audit(self, i: int) -> list[dict[str, Any]]:
        conf = self.write(f"audit{i}.conflist", self.conflists[i])
        proc = run_in(self.node_ns(i), "env", "-i", f"PATH={BASE_PATH}",
                      *(f"{k}={v}" for k, v in self.env.items()), str(ZIPAPP), "ipam",
                      "audit", "--json", "--conf", str(conf), timeout=300)
        assert proc.returncode in (0, 3), proc.stderr
        violations: list[dict[str, Any]] = json.loads(proc.stdout)["violations"]
        return violations


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not ZIPAPP.exists():
        pytest.fail(f"{ZIPAPP} is missing: ./build/dev zipapp builds it (./build/dev test does)")
    pytest.importorskip("moto")
    from cnivpc.lab.lab import Lab

    work = tmp_path_factory.mktemp("clients")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "cnivpc").symlink_to(ZIPAPP.resolve())
    for name in ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"):
        (bin_dir / name).symlink_to("cnivpc")
    fail = bin_dir / "refuse-add"
    fail.write_text(FAILING_PLUGIN)
    fail.chmod(0o755)
    shiv_root = os.environ.get("CNIVPC_SHIV_ROOT") or str(work / "shiv")
    lab = Lab(nodes=2, instance_type="t3.small").start()
    try:
        yield Setup(lab, work, bin_dir, {"SHIV_ROOT": shiv_root, **EC2_ENV},
                    [lab_conflist(work, i) for i in range(2)])
    finally:
        lab.stop()


def lab_fused(chained: dict[str, Any]) -> dict[str, Any]:
    """examples/cnivpc-fused.conflist as shipped, with the lab's IPAM settings (the same ones
    lab_conflist gives the chained example) in its ``ipam`` section."""
    doc: dict[str, Any] = json.loads(FUSED_EXAMPLE.read_text())
    (entry,) = doc["plugins"]
    lab_ipam = {k: v for k, v in chained["plugins"][0].items() if k not in ("type", "logFile")}
    entry["ipam"] = {**{k: v for k, v in entry["ipam"].items() if k != "secGroupIds"},
                     **lab_ipam}
    entry["logFile"] = chained["plugins"][0]["logFile"]
    return doc


def client(setup: Setup, driver: Path, name: str, doc: dict[str, Any], node: int,
           pod: str) -> Libcni:
    return Libcni(driver, setup.write(name, doc), setup.work / f"cache-{name}",
                  [setup.bin_dir], setup.node_ns(node), setup.env,
                  f"/var/run/netns/{setup.lab.fabric.add_netns(pod)}")


def pod_links(netns_path: str) -> list[str]:
    out = run_in(Path(netns_path).name, "ip", "-j", "link", "show", check=True).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def host_veths(setup: Setup, i: int) -> list[str]:
    out = run_in(setup.node_ns(i), "ip", "-j", "link", "show", check=True).stdout
    return sorted(n["ifname"] for n in json.loads(out) if n["ifname"].startswith("cnp"))


@pytest.mark.parametrize("mode", ["chained", "fused"])
def test_libcni_add_check_del_del(setup: Setup, libcni_driver: Path, mode: str) -> None:
    chained = setup.conflists[0]
    doc = chained if mode == "chained" else lab_fused(chained)
    cni = client(setup, libcni_driver, mode, doc, 0, f"lc-{mode}")
    add = cni("add", f"lc-{mode}")
    assert add.code == 0, (add.stdout, add.stderr[-2000:])
    result = add.doc
    assert result["cniVersion"] == "1.0.0"
    assert [i["name"] for i in result["interfaces"]][::2] == ["eth0", "eth1"]
    ip = result["ips"][0]["address"].split("/")[0]
    assert setup.held(0) == {f"lc-{mode}": ip}
    pod_ns = Path(cni.netns).name
    assert ping(pod_ns, setup.lab.node(0).primary_ip)  # over the unnumbered veth
    assert ping(pod_ns, result["ips"][0]["gateway"])  # the subnet router, over the ENI
    assert cni.cache_files() == [f"cnivpc-lc-{mode}-eth0"]
    check = cni("check", f"lc-{mode}")
    assert (check.code, check.stdout) == (0, ""), check.stderr[-2000:]
    for _ in range(2):
        deleted = cni("del", f"lc-{mode}")
        assert (deleted.code, deleted.stdout) == (0, ""), deleted.stderr[-2000:]
        assert setup.held(0) == {} and cni.cache_files() == []
        assert pod_links(cni.netns) == ["lo"] and host_veths(setup, 0) == []


def test_libcni_del_after_a_failed_add(setup: Setup, libcni_driver: Path) -> None:
    """The list's last plugin refuses ADD after ours (fused: one exec, UML is slow) succeeded:
    libcni returns the error and caches nothing; the runtime sends DEL without a prevResult;
    everything ours made is gone after it."""
    doc = lab_fused(setup.conflists[1])
    doc["plugins"] = [*doc["plugins"], {"type": "refuse-add"}]
    cni = client(setup, libcni_driver, "failing", doc, 1, "lc-failing")
    add = cni("add", "lc-failing")
    assert add.code == 1 and add.doc["code"] == 11, add.stdout
    assert "refuses ADD" in add.doc["error"]
    assert len(setup.held(1)) == 1 and "eth1" in pod_links(cni.netns)  # left half-done
    assert cni.cache_files() == []
    deleted = cni("del", "lc-failing")
    assert (deleted.code, deleted.stdout) == (0, ""), deleted.stderr[-2000:]
    assert setup.held(1) == {} and pod_links(cni.netns) == ["lo"] and host_veths(setup, 1) == []


# ---------------------------------------------------------------- podman

@dataclass
class Podman:
    setup: Setup
    node: int
    conf: Path
    storage: Path

    def attempt(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {"PATH": BASE_PATH, "HOME": str(self.setup.work / "home"),
               "CONTAINERS_CONF": str(self.conf), "CONTAINERS_STORAGE_CONF": str(self.storage),
               **self.setup.env}
        cmd = ["nsenter", f"--net=/run/netns/{self.setup.node_ns(self.node)}", "env", "-i",
               *(f"{k}={v}" for k, v in env.items()), "podman", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def __call__(self, *args: str) -> str:
        proc = self.attempt(*args)
        assert proc.returncode == 0, \
            f"podman {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        return proc.stdout.strip()

    def run(self, name: str) -> tuple[str, str, str]:
        """Starts a container; its (ID, IP, netns name)."""
        self("run", "-d", "--name", name, "--network", "cnivpc", "--rootfs", "/:O",
             "/bin/sleep", "600")
        return self.inspect(name)

    def inspect(self, name: str) -> tuple[str, str, str]:
        # One podman process for all three: each one loads the networks (a plugin VERSION).
        cid, ip, sandbox = self("inspect", name, "--format", "{{.Id}} "
                                "{{.NetworkSettings.Networks.cnivpc.IPAddress}} "
                                "{{.NetworkSettings.SandboxKey}}").split()
        return cid, ip, Path(sandbox).name


def podman_for(setup: Setup, node: int, storage_root: Path,
               conflist: dict[str, Any] | None = None) -> Podman:
    net_dir = setup.work / f"podman-net{node}"
    net_dir.mkdir(exist_ok=True)
    # Only this node's conflist: podman sends VERSION to every conflist's plugin, each time.
    (net_dir / "10-cnivpc.conflist").write_text(json.dumps(conflist or setup.conflists[node]))
    conf = setup.work / f"containers{node}.conf"
    conf.write_text(f"""[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "crun"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{setup.bin_dir}"]
network_config_dir = "{net_dir}"
""")
    storage = setup.work / "storage.conf"
    storage.write_text(f"""[storage]
driver = "overlay"
graphroot = "{storage_root}/graph"
runroot = "{storage_root}/run"
""")
    return Podman(setup, node, conf, storage)


@pytest.fixture(scope="module")
def guest(setup: Setup) -> Iterator[Path]:
    """The guest's mounts podman needs, inside UML only (undone after the module): nothing here
    touches the host's disk."""
    storage = setup.work / "podman-storage"
    storage.mkdir()
    (setup.work / "home").mkdir()
    mounted: list[str] = []

    def mount(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True, text=True)
        mounted.append(args[-1])

    if IN_UML:
        if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
            mount("-t", "cgroup2", "none", "/sys/fs/cgroup")
        mount("-t", "tmpfs", "tmpfs", str(storage))  # overlay storage cannot live on hostfs
        # /var/lib is the host's through hostfs: libcni's cache (/var/lib/cni) and the
        # zipapp's default extraction root would land there. A guest tmpfs instead, in which
        # conmon's cleanup DEL (it runs without our SHIV_ROOT, so the zipapp uses the root it
        # was built with) finds the extraction made on the host, instead of extracting again.
        mount("-t", "tmpfs", "tmpfs", "/var/lib")
        os.makedirs("/var/lib/cni")
        os.makedirs("/var/lib/cnivpc/shiv")
        mount("--bind", setup.env["SHIV_ROOT"], "/var/lib/cnivpc/shiv")
    try:
        yield storage
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", path], capture_output=True)


def wait_for(what: str, predicate: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Steps:
    """Wall time per step, printed at the end (UML is slow: this shows where it goes)."""

    def __init__(self) -> None:
        self.mark = time.monotonic()
        self.times: list[str] = []

    def done(self, what: str) -> None:
        now = time.monotonic()
        self.times.append(f"{what} {now - self.mark:.1f}")
        self.mark = now


def test_podman_pods_on_two_nodes(setup: Setup, guest: Path) -> None:
    """Node 0 runs the chained conflist, node 1 the fused one."""
    fused = lab_fused(setup.conflists[1])
    pa, pb = podman_for(setup, 0, guest), podman_for(setup, 1, guest, fused)
    try:
        scenario(setup, pa, pb)
    except BaseException:
        for podman in (pa, pb):  # no container may outlive a failed run
            podman.attempt("rm", "-a", "-f", "-t", "0")
        raise


def scenario(setup: Setup, pa: Podman, pb: Podman) -> None:
    steps = Steps()
    id_a, ip_a, ns_a = pa.run("pa")
    steps.done("run -d (chained)")
    id_b, ip_b, ns_b = pb.run("pb")
    steps.done("run -d (fused)")
    assert setup.held(0) == {id_a: ip_a} and setup.held(1) == {id_b: ip_b}
    # podman's CNI_ARGS: K8S_POD_NAME is the container's name, and there is no namespace
    assert setup.pods(0) == ["pa"] and setup.pods(1) == ["pb"]
    for here, there in ((ns_a, ip_b), (ns_b, ip_a)):
        assert ping(here, there), f"{here} cannot reach {there}"
    # subnet router (the ipvlan leg), own node (the veth), the internet host (SNAT)
    for ns, node in ((ns_a, 0), (ns_b, 1)):
        default = json.loads(run_in(ns, "ip", "-j", "route", "show", "default",
                                    check=True).stdout)
        assert ping(ns, default[0]["gateway"])
        assert ping(ns, setup.lab.node(node).primary_ip)
        assert ping(ns, INET_ADDR)
    steps.done("pings")

    # network reload: DEL, then ADD with the interface name and MAC of *one* interface of the
    # old result, whichever podman 4.3's map iteration gives first (it assumes one per
    # network): eth0 works; eth1, the veth, is refused with code 7 and nothing held.
    reload = pb.attempt("network", "reload", "pb")
    if reload.returncode == 0:
        _, ip_b2, _ = pb.inspect("pb")
        assert setup.held(1) == {id_b: ip_b2}
        assert ping(ns_a, ip_b2)
        last_b = ip_b2
        steps.done("network reload (ok)")
    else:
        assert "CNI_IFNAME eth1 is also the ptp plugin's containerInterface" in reload.stderr, \
            reload.stderr[-3000:]
        assert setup.held(1) == {} and host_veths(setup, 1) == []
        steps.done("network reload (eth1: refused)")
        # restart: DEL, ADD with the container's own options (CNI_IFNAME eth0)
        pb("restart", "-t", "0", "pb")
        _, ip_b3, ns_b = pb.inspect("pb")
        assert setup.held(1) == {id_b: ip_b3}
        assert ping(ns_a, ip_b3)
        last_b = ip_b3
        steps.done("restart")

    # stop: the DEL comes from podman's cleanup, which conmon starts with an environment of its
    # own (none of ours: no AWS_*, no SHIV_ROOT); rm -f: podman's own DEL
    pb("stop", "-t", "0", "pb")
    pa("rm", "-f", "-t", "0", "pa")
    wait_for("the containers' DEL", lambda: setup.held(0) == setup.held(1) == {})
    assert host_veths(setup, 0) == host_veths(setup, 1) == []
    steps.done("stop, rm -f")

    # run --rm --ip: ADD asking (CNI_ARGS IP=) for the address pb had, still cooling: it is
    # given back; the command sees it; DEL on exit
    out = pb("run", "--rm", "--network", "cnivpc", "--ip", last_b, "--rootfs", "/:O",
             "/usr/sbin/ip", "-4", "-br", "addr", "show", "eth0")
    assert "eth0" in out and f"{last_b}/" in out, out
    wait_for("run --rm's DEL", lambda: setup.held(1) == {})
    assert host_veths(setup, 1) == []
    steps.done("run --rm --ip")
    for i in range(2):
        assert setup.audit(i) == [], f"node {i}: the store and EC2 disagree"
    steps.done("audit")
    print("\npodman in UML (s):", ", ".join(steps.times))
