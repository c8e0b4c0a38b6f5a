"""What the shipped plugins import once they really talk netlink: cnivpc-ptp ADD and DEL, and
cnivpc-ipvlan ADD up to the kernel (which, without ipvlan as on these build machines, refuses
the slave), each through the zipapp in a throw-away node namespace under ``env -i``. Netlink
goes through net/rtnl.py on pyroute2's message classes: asyncio, pyroute2's IPRoute and its
request machinery must not be loaded (they cost ~240 modules per exec)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.zipapp import BASE_ENV, IMPORTS_PROBE, PYTHON, Zipapp

from ..netns.conftest import Topo, config, ip_json, prev_result, topo

pytestmark = [pytest.mark.artifact, pytest.mark.netns]
__all__ = ["topo"]  # the fixture, re-exported so pytest finds it here

# Loaded by pyroute2's IPRoute, never by our client; multiprocessing and platform by the real
# pyroute2.config, which only IPRoute needs (cnivpc.net._nl registers a light one).
FORBIDDEN = ("asyncio", "pyroute2.iproute", "pyroute2.requests", "pyroute2.netlink.nlsocket",
             "pyroute2.netlink.core", "multiprocessing", "platform")


def run(zipapp: Zipapp, topo: Topo, program: str, command: str, conf: dict[str, Any],
        ifname: str) -> tuple[int, Any, set[str]]:
    zipapp.site_packages()  # extracted beforehand: the measured run is a warm one
    env = {**BASE_ENV, "SHIV_ROOT": str(zipapp.shiv_root), "CNI_COMMAND": command,
           "CNI_CONTAINERID": "imports1", "CNI_NETNS": topo.pod_path, "CNI_IFNAME": ifname,
           "CNI_PATH": str(zipapp.bin)}
    proc = subprocess.run(["ip", "netns", "exec", topo.node, "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), PYTHON, "-sSE", "-c",
                           IMPORTS_PROBE,
                           str(zipapp.path if program == "cnivpc" else zipapp.bin / program)],
                          input=json.dumps(conf), capture_output=True, text=True, timeout=120,
                          cwd="/")  # with -c, sys.path[0] is the cwd: not the checkout's cnivpc
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES=")]
    assert lines, proc.stderr
    # The zipapp's own extraction ran, not a cnivpc found elsewhere on sys.path.
    [origin] = [ln for ln in proc.stderr.splitlines() if ln.startswith("CNIVPC=")]
    assert origin.startswith(f"CNIVPC={zipapp.shiv_root}/"), origin
    doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, doc, set(json.loads(lines[-1].removeprefix("MODULES=")))


# The import budget of each plugin path (modules in sys.modules when the process ends, the
# interpreter's own ~60 included), measured, with a few modules of slack: a new import on a
# pod's path must be a decision, not an accident. And what no plugin path may load at all:
# pydantic's Python layer (the models run compiled), pydantic_core's extension (cni.pyvalidate
# validates: the extension costs ~330 ms of CPU per exec in UML) and type hints,
# typing_extensions, OpenSSL's hashes, decimal (pydantic_core's serializer), botocore.
BUDGET = {"ptp ADD": 181, "ptp DEL": 178, "ipvlan ADD": 163, "fused ADD": 170}
HEAVY = ("pydantic", "pydantic_core._pydantic_core", "pydantic_core.core_schema",
         "typing_extensions", "_hashlib", "hashlib", "decimal", "botocore", "urllib3")


def forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in FORBIDDEN or m.startswith(
        tuple(f"{name}." for name in FORBIDDEN)))


# No plugin path imports dataclasses (with inspect and ast ~6 ms per exec, and each class's
# methods compiled at import): the IPAM's records are cni.records.Record.
NO_DATACLASSES = ("dataclasses", "inspect", "ast")


def within_budget(path: str, modules: set[str], also: tuple[str, ...] = ()) -> None:
    banned = (*HEAVY, *also)
    heavy = sorted(m for m in modules if m in banned or m.startswith(
        tuple(f"{name}." for name in banned)))
    assert heavy == [], f"{path} imports {heavy}"
    print(f"BUDGET {path}: {len(modules)} modules")
    assert len(modules) <= BUDGET[path], f"{path}: {len(modules)} modules > {BUDGET[path]}"


def test_ptp_add_and_del_use_the_codecs_not_iproute(zipapp: Zipapp, topo: Topo) -> None:
    conf = config("1.1.0", prev_result("1.1.0"))
    code, result, modules = run(zipapp, topo, "cnivpc-ptp", "ADD", conf, "eth0")
    assert code == 0, result
    assert [r["dev"] for r in ip_json(topo.node, "route", "show", "10.0.16.23")] == \
        [result["interfaces"][1]["name"]]
    assert {"pyroute2.netlink.rtnl.ifinfmsg", "pyroute2.netlink.rtnl.rtmsg",
            "pyroute2.netlink.rtnl.fibmsg", "cnivpc.net.rtnl"} <= modules
    assert forbidden(modules) == []
    within_budget("ptp ADD", modules, NO_DATACLASSES)

    conf["prevResult"] = result
    code, result, modules = run(zipapp, topo, "cnivpc-ptp", "DEL", conf, "eth0")
    assert (code, result) == (0, None)
    assert "pyroute2.netlink.rtnl.ifinfmsg" in modules and forbidden(modules) == []
    within_budget("ptp DEL", modules, NO_DATACLASSES)


def test_ipvlan_add_reaches_the_kernel_without_iproute(zipapp: Zipapp, topo: Topo) -> None:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
            "ips": [{"address": "10.0.1.77/24", "gateway": "10.0.1.1", "interface": 0}]}
    conf = {"cniVersion": "1.0.0", "name": "cnivpc", "type": "cnivpc-ipvlan", "mode": "l2",
            "prevResult": prev}
    code, result, modules = run(zipapp, topo, "cnivpc-ipvlan", "ADD", conf, "eth2")
    # A kernel without ipvlan refuses the slave; one with it makes it. Either way the plugin
    # looked the master up and asked for the slave over netlink.
    assert code == 0 or "create ipvlan" in result["msg"], result
    assert "pyroute2.netlink.rtnl.ifinfmsg" in modules and "cnivpc.net.rtnl" in modules
    assert forbidden(modules) == []
    # A chained ipvlan delegates nothing: no subprocess (~10 ms of an exec under UML).
    within_budget("ipvlan ADD", modules, (*NO_DATACLASSES, "subprocess"))


def test_fused_loads_its_three_plugins_within_budget(zipapp: Zipapp, topo: Topo) -> None:
    """The fused mode validates all three sections before any part runs: every plugin module
    and config is loaded, then the bad ptp key (the last section) stops it (no EC2 here)."""
    conf = {"cniVersion": "1.0.0", "name": "cnivpc", "type": "cnivpc", "ipam": {},
            "ptp": {"hostInterface": "eth0", "containerInterface": "a/b"}}
    code, result, modules = run(zipapp, topo, "cnivpc", "ADD", conf, "eth0")
    assert code == 1 and result["code"] == 7 and "containerInterface" in result["details"], \
        result
    assert {"cnivpc.plugins.ipam.plugin", "cnivpc.plugins.ipvlan",
            "cnivpc.plugins.ptp"} <= modules
    within_budget("fused ADD", modules, NO_DATACLASSES)
