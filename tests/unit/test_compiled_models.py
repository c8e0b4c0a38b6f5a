"""The compiled models (cni.compiled) against their pydantic sources: the generated schemas are
current (build/schemas.py --check, which ``./build/dev schemas`` fixes), and for the same input
both forms give the same values, the same JSON and the same errors (locations, messages,
types) -- valid and hostile configs of every plugin, and results in every shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cnivpc.cni import models, types
from cnivpc.plugins import fused, fused_model, ipvlan, ipvlan_model
from cnivpc.plugins.ipam import config as ipam_config
from cnivpc.plugins.ipam import model as ipam_model
from cnivpc.plugins.ptp import config as ptp_config
from cnivpc.plugins.ptp import model as ptp_model

REPO = Path(__file__).resolve().parents[2]
ESC = "\x1b[31m"

PAIRS: dict[str, tuple[Any, Any]] = {
    "ptp": (ptp_model.PtpConf, ptp_config.PtpConf),
    "ipam": (ipam_model.IpamConf, ipam_config.IpamConf),
    "ipvlan": (ipvlan_model.IpvlanConf, ipvlan.IpvlanConf),
    "fused": (fused_model.FusedConf, fused.FusedConf),
    "result": (types.Result, models.Result),
}
BASE: dict[str, dict[str, Any]] = {
    "ptp": {"cniVersion": "1.0.0", "name": "n", "type": "cnivpc-ptp", "hostInterface": "eth0",
            "containerInterface": "eth1"},
    "ipam": {"cniVersion": "1.0.0", "name": "n", "type": "cnivpc-ipam"},
    "ipvlan": {"cniVersion": "1.0.0", "name": "n", "type": "cnivpc-ipvlan"},
    "fused": {"cniVersion": "1.0.0", "name": "n", "type": "cnivpc", "ipam": {}, "ptp": {}},
    "result": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
               "ips": [{"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 0}],
               "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
               "dns": {"nameservers": ["10.0.0.2"]}},
}
CHANGES: list[tuple[str, dict[str, Any]]] = [
    (kind, {}) for kind in BASE] + [
    ("ptp", {"ipMasq": True, "mtu": 9001, "nodePorts": "80", "nodePortMark": "0x10",
             "routeTableStart": 1000, "logFile": "/var/log/c.log", "logLevel": "debug",
             "unknownKey": {"kept": [1]}, "dns": {"nameservers": ["1.1.1.1"]},
             "prevResult": {"ips": []}, "runtimeConfig": {"a": 1}, "args": {"b": 2}}),
    ("ptp", {"host_interface": "eth9"}),  # by field name too (populate_by_name)
    ("ptp", {"hostInterface": "a/b"}), ("ptp", {"containerInterface": ""}),
    ("ptp", {"hostInterface": None}), ("ptp", {"containerInterface": "x" * 16}),
    ("ptp", {"nodePorts": "1:2 -j ACCEPT"}), ("ptp", {"nodePorts": "9:1"}),
    ("ptp", {"nodePortMark": 2**64}), ("ptp", {"nodePortMark": "0xZZ"}),
    ("ptp", {"nodePortMark": 0}), ("ptp", {"mtu": "9001; x"}), ("ptp", {"mtu": 67}),
    ("ptp", {"ipMasq": "true"}), ("ptp", {"ipMasq": 1}), ("ptp", {"routeTableStart": 2**32}),
    ("ptp", {"logFile": "var/log"}), ("ptp", {"logFile": "/a/../b"}),
    ("ptp", {"logFile": "/a\x00b"}), ("ptp", {"logFile": "/a/" + ESC}), ("ptp", {"logFile": 7}),
    ("ptp", {"logFile": ["/x"]}), ("ptp", {"dns": "x"}), ("ptp", {"name": 5}),
    ("ipam", {"warmIPTarget": 10**400}), ("ipam", {"timeout": "forever"}),
    ("ipam", {"timeout": 0}), ("ipam", {"secGroupIds": ["; rm -rf /"]}),
    ("ipam", {"secGroupIds": ["sg-1", "sg-2"]}), ("ipam", {"routeToCidrs": ["10.0.0.0/33"]}),
    ("ipam", {"routeToCidrs": ["10.1.2.3/16", "fd00::1/64"]}), ("ipam", {"subnetTags": ["a"]}),
    ("ipam", {"subnetTags": {"k": "v"}, "reuseIPWait": 0, "ipBatchSize": 3,
              "warmENIThreshold": -1, "maxFreeIPs": 4, "freeIPMaxAge": 1.5,
              "dataDir": "/var/lib/x", "lockPath": "/run/x.lock", "lockTimeout": 5,
              "reconcileInterval": 0, "clusterName": "c", "mtu": 9001, "interfaceIndex": 2,
              "skipDeallocation": True, "routeToVpcPeers": True}),
    ("ipam", {"dataDir": "relative"}), ("ipam", {"lockPath": "/" + "a" * 5000}),
    ("ipam", {"mtu": 9002}), ("ipam", {"interfaceIndex": -1}),
    ("ipvlan", {"master": "../eth0"}), ("ipvlan", {"master": "x" * 16}),
    ("ipvlan", {"master": "eth1", "mode": "l3s", "mtu": 1500}), ("ipvlan", {"mode": ""}),
    ("ipvlan", {"mode": "l2; reboot"}), ("ipvlan", {"mtu": -1}),
    ("fused", {"ipam": "x"}), ("fused", {"ptp": []}), ("fused", {"ipvlan": {"mode": "l3"}}),
    ("result", {"ips": [{"address": "nope"}]}), ("result", {"ips": [{"address": "10.0.0.1"}]}),
    ("result", {"ips": [{"address": "fd00::5/64", "gateway": "fd00::1"}]}),
    ("result", {"ips": [{"address": "10.0.0.5/24", "gateway": "x"}]}),
    ("result", {"routes": [{"dst": "10.1.2.3/8", "mtu": 1500, "table": 7, "scope": 0}]}),
    ("result", {"routes": [{"dst": "nope"}]}), ("result", {"interfaces": "x"}),
    ("result", {"interfaces": [{"name": "e", "mac": "aa", "mtu": 1, "socketPath": "/s",
                                "pciID": "0000:00:01.0"}]}),
    ("result", {"dns": {}}), ("result", {"dns": None}), ("result", {"ips": [{}]}),
    ("result", {"future": {"a": None, "b": [1.5, float("inf"), None], "c": (1, 2)},
                "gone": None, "dns": {"domain": None, "extra": float("nan")}}),
    ("ptp", {"prevResult": {"x": float("-inf"), "y": [None]}, "dns": {"options": ["a"]}}),
]


def outcome(model: Any, data: dict[str, Any]) -> tuple[str, Any]:
    try:
        value = model.model_validate(data)
    except ValueError as exc:
        return "error", [(e["type"], e["loc"], e["msg"]) for e in
                         exc.errors(include_url=False)]  # type: ignore[attr-defined]
    dumps = [value.model_dump(), value.model_dump(by_alias=True),
             value.model_dump(exclude_none=True, mode="json"),
             value.model_dump(by_alias=True, exclude_none=True, mode="json"), value.to_json()]
    # NaN is not equal to itself: compare the dumps as text.
    return "ok", repr(dumps)


def test_the_generated_schemas_are_current() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "build" / "schemas.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("kind", "change"), CHANGES,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(CHANGES)])
def test_compiled_and_pydantic_agree(kind: str, change: dict[str, Any]) -> None:
    source, compiled = PAIRS[kind]
    data = {k: v for k, v in {**BASE[kind], **change}.items() if v is not None or k in (
        "dns", "hostInterface")}
    theirs, ours = outcome(source, data), outcome(compiled, data)
    assert ours == theirs
    assert compiled.__name__ == source.__name__ and compiled is not source


def test_the_compiled_classes_behave_as_the_models_do() -> None:
    r = models.Result.model_validate(BASE["result"])
    assert r.ips[0].ip.exploded == "10.0.0.5" and str(r.ips[0].network) == "10.0.0.0/24"
    assert isinstance(r.interfaces[0], models.Interface)
    copy = r.model_copy(deep=True)
    copy.interfaces.append(models.Interface(name="veth", mac="aa"))
    assert len(r.interfaces) == 1 and len(copy.interfaces) == 2
    moved = r.ips[0].model_copy(update={"interface": 3})
    assert moved.interface == 3 and r.ips[0].interface == 0
    assert models.Result(ips=[models.IPConfig(address="10.0.0.9/24")]).to_version("0.4.0") == \
        types.Result(ips=[types.IPConfig(address="10.0.0.9/24")]).to_version("0.4.0")
    conf = ptp_config.PtpConf.model_validate({**BASE["ptp"], "future": 1})
    assert conf.future == 1 and conf.host_interface == "eth0"
    with pytest.raises(AttributeError):
        _ = conf.nothing
    fields = ptp_config.PtpConf.model_fields
    assert fields["host_interface"].alias == "hostInterface"
    assert fields["host_interface"].is_required() and not fields["mtu"].is_required()
