"""The built zipapp wiring a real pod: cnivpc-ptp ADD -> CHECK -> DEL -> DEL through its
symlink, exec'd inside a throw-away node namespace with ``env -i``, exactly as a runtime would.
The topology and config helpers are the ptp tests' own (tests/netns/conftest.py); the plugin's
behaviour in detail is tested there, this checks that the shipped artifact does the same, under
every CPython 3.10-3.14 this machine has (``target_python``, picked through CNIVPC_PYTHON)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.zipapp import BASE_ENV, MATRIX, TARGETS, Run, Zipapp, python_for

from ..netns.conftest import NODE_IP, POD_IP, Topo, config, ip_json, prev_result, sh, topo

pytestmark = [pytest.mark.artifact, pytest.mark.netns]
__all__ = ["topo"]  # the fixture, re-exported so pytest finds it here


def ptp(zipapp: Zipapp, topo: Topo, command: str, conf: dict[str, Any],
        python: str) -> Run:
    env = {**BASE_ENV, "SHIV_ROOT": str(zipapp.shiv_root), "CNIVPC_PYTHON": python,
           "CNI_COMMAND": command,
           "CNI_CONTAINERID": "art1", "CNI_NETNS": topo.pod_path, "CNI_IFNAME": "eth0",
           "CNI_PATH": str(zipapp.bin)}
    proc = subprocess.run(["ip", "netns", "exec", topo.node, "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), str(zipapp.bin / "cnivpc-ptp")],
                          input=json.dumps(conf), capture_output=True, text=True, timeout=120)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def target_python_key(path: str) -> str:
    return next(t for t in TARGETS if python_for(t) == path)


def veths(netns: str) -> list[str]:
    return [link["ifname"] for link in ip_json(netns, "link", "show")
            if link["ifname"].startswith(("cnp", "eth1"))]


NS_PROBE = """
import errno, fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.ioctl(fd, 0xB703)  # NS_GET_NSTYPE, as cnivpc/net/netns.py asks it
except OSError as exc:
    sys.exit(3 if exc.errno == errno.ENOSYS else 1)
"""


def test_ptp_add_check_del_through_the_zipapp(zipapp: Zipapp, topo: Topo, target_python: str,
                                              request: pytest.FixtureRequest) -> None:
    # qemu-user (the aarch64 interpreter here) does not implement the namespace ioctls: a
    # limit of the emulator, not of the plugin; probed, so a real aarch64 kernel runs the test.
    probe = subprocess.run([target_python, "-c", NS_PROBE, topo.pod_path],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode == 3:
        MATRIX[target_python_key(target_python)][request.node.name] = "EMULATOR-LIMIT"
        pytest.skip(f"NOT TESTED: {target_python} cannot ask a namespace file its type "
                    "(ioctl NS_GET_NSTYPE: ENOSYS, qemu-user lacks it)")
    assert probe.returncode == 0, probe.stderr
    conf = config("1.1.0", prev_result("1.1.0"), ipMasq=True)
    add = ptp(zipapp, topo, "ADD", conf, target_python)
    assert add.returncode == 0, (add.stdout, add.stderr)
    result = add.doc
    assert result["cniVersion"] == "1.1.0"
    names = [i["name"] for i in result["interfaces"]]
    assert names[0] == "eth0" and names[-1] == "eth1" and names[1].startswith("cnp")
    assert result["interfaces"][-1]["sandbox"] == topo.pod_path
    assert veths(topo.pod) == ["eth1"] and veths(topo.node) == [names[1]]
    assert [r["dev"] for r in ip_json(topo.node, "route", "show", POD_IP)] == [names[1]]
    sh("ping", "-c1", "-W2", NODE_IP, netns=topo.pod)

    conf["prevResult"] = result
    check = ptp(zipapp, topo, "CHECK", conf, target_python)
    assert (check.returncode, check.stdout) == (0, ""), check.stderr

    for _ in range(2):  # DEL is idempotent
        deleted = ptp(zipapp, topo, "DEL", conf, target_python)
        assert (deleted.returncode, deleted.stdout) == (0, ""), deleted.stderr
        assert veths(topo.pod) == [] and veths(topo.node) == []
        assert ip_json(topo.node, "route", "show", POD_IP) == []
