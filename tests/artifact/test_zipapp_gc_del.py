"""The GC and DEL contract through the built zipapp, as a runtime execs it (symlinks, and the
fused entry: ``cnivpc`` with CNI_COMMAND and no arguments): a GC without a valid-attachments
list is refused with code 7 by every plugin before it touches anything, and a DEL with an
unusable prevResult goes on without it. (What the plugins then do is tested against the lab
and the kernel: tests/ipam, tests/netns.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.zipapp import Zipapp

pytestmark = pytest.mark.artifact

GC_ENV = {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}
DEL_ENV = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "",
           "CNI_IFNAME": "eth0"}


def conf(program: str, state: Path, **extra: Any) -> dict[str, Any]:
    ipam = {"dataDir": str(state), "lockPath": str(state.parent / "lock")}
    ptp = {"hostInterface": "eth0", "containerInterface": "eth1"}
    base: dict[str, Any] = {"cniVersion": "1.1.0", "name": "net", "type": program}
    base.update({"cnivpc-ipam": ipam, "cnivpc-ptp": ptp, "cnivpc-ipvlan": {},
                 "cnivpc": {"ipam": ipam, "ipvlan": {}, "ptp": ptp}}[program])
    return {**base, **extra}


@pytest.mark.parametrize("program", ["cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp", "cnivpc"])
def test_gc_without_the_list_is_refused(zipapp: Zipapp, program: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = zipapp.run(program, GC_ENV, json.dumps(conf(program, state)))
    assert run.returncode == 1, run.stderr
    assert run.doc["code"] == 7 and "valid-attachments" in run.doc["msg"], run.doc
    assert not state.exists()  # the IPAM (alone or fused) did not even open its store


def test_ipam_del_goes_on_without_an_unusable_prev_result(zipapp: Zipapp,
                                                          tmp_path: Path) -> None:
    garbage = {"cniVersion": "1.0.0", "ips": [{"address": "not-an-address"}]}
    doc = conf("cnivpc-ipam", tmp_path / "state", cniVersion="1.0.0", prevResult=garbage)
    run = zipapp.run("cnivpc-ipam", DEL_ENV, json.dumps(doc))
    assert run.returncode == 0 and run.stdout == "", (run.stdout, run.stderr)
    assert "prevResult is unusable" in run.stderr
