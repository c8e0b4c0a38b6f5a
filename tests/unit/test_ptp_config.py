"""The ptp plugin's configuration and early request checks, through the dispatcher in-process
(no kernel needed): defaults, and code 7 naming the key for every invalid value."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cnivpc import plugins
from cnivpc.cni.skel import Dispatcher
from cnivpc.plugins.ptp.config import PtpConf

BASE = {"cniVersion": "1.0.0", "name": "net", "type": "cnivpc-ptp",
        "hostInterface": "eth0", "containerInterface": "eth1"}


def run(conf: dict[str, Any], command: str = "ADD") -> tuple[int, dict[str, Any]]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x",
           "CNI_IFNAME": "eth0"}
    out, err = io.StringIO(), io.StringIO()
    code = Dispatcher(name="cnivpc-ptp", load=lambda: plugins.load("cnivpc-ptp"),
                      getenv=env.get, stdin=io.BytesIO(json.dumps(conf).encode()),
                      stdout=out, stderr=err).run()
    return code, json.loads(out.getvalue())


def test_defaults() -> None:
    conf = PtpConf.model_validate(BASE)
    assert (conf.ip_masq, conf.mtu, conf.route_table_start, conf.node_ports,
            conf.node_port_mark) == (False, None, 256, "30000:32767", 0x2000)


def test_mark_accepts_hex_strings() -> None:
    assert PtpConf.model_validate({**BASE, "nodePortMark": "0x4000"}).node_port_mark == 0x4000


@pytest.mark.parametrize(("key", "value"), [
    ("hostInterface", None), ("containerInterface", None),
    ("hostInterface", ""), ("containerInterface", "a/b"), ("hostInterface", "x" * 16),
    ("ipMasq", "yes"), ("mtu", 10), ("mtu", 70000), ("routeTableStart", 0),
    ("nodePorts", "32767:30000"), ("nodePorts", "http"), ("nodePorts", "1:70000"),
    ("nodePortMark", 0), ("nodePortMark", "0xzz"),
])
def test_invalid_values_are_code_7_naming_the_key(key: str, value: Any) -> None:
    conf = {k: v for k, v in BASE.items() if not (k == key and value is None)}
    if value is not None:
        conf[key] = value
    code, err = run(conf)
    assert code == 1 and err["code"] == 7
    assert key in err["details"]


def test_add_without_prev_result_is_a_clear_code_7() -> None:
    code, err = run(BASE)
    assert code == 1 and err["code"] == 7
    assert "chained plugin" in err["msg"] and "prevResult" in err["details"]


def test_add_with_prev_result_without_ips_is_code_7() -> None:
    code, err = run({**BASE, "prevResult": {"cniVersion": "1.0.0", "interfaces": []}})
    assert code == 1 and err["code"] == 7 and "no IP" in err["msg"]
