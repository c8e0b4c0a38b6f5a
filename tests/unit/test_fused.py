"""The fused plugin's orchestration, in-process through the dispatcher, with the three parts
replaced by recorders that keep the real config models (so section validation is real): ADD
order and rollback, DEL order and errors, GC and STATUS reaching every part with the list,
CHECK, and missing or invalid sections. What the real parts do in fused mode is tested against
the lab (tests/ipam/test_ipam_gc_del_contract.py) and under UML (tests/uml)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from cnivpc import plugins
from cnivpc.cni.errors import CniError, TryAgainLater
from cnivpc.cni.plugin import Plugin, Request
from cnivpc.cni.skel import Dispatcher
from cnivpc.cni.types import Interface, IPConfig, Result
from cnivpc.plugins import fused

KEY = "cni.dev/valid-attachments"


@dataclass
class Parts:
    """Recording stand-ins for cnivpc-ipam, -ipvlan and -ptp; ``fail[(program, handler)]`` is
    raised by that handler."""

    calls: list[tuple[str, str, Request[Any]]] = field(default_factory=list)
    fail: dict[tuple[str, str], BaseException] = field(default_factory=dict)

    def load(self, program: str) -> Plugin[Any]:
        model = plugins.config_model(program)

        def handler(name: str) -> Any:
            def handle(req: Request[Any]) -> Any:
                self.calls.append((program, name, req))
                if (program, name) in self.fail:
                    raise self.fail[(program, name)]
                if name != "add":
                    return None
                prev = req.prev_result or Result(ips=[IPConfig(address="10.0.16.5/20")])
                out = prev.model_copy(deep=True)
                out.interfaces.append(Interface(name=program))
                return out
            return handle

        return Plugin(name=program, conf_model=model,
                      **{h: handler(h) for h in ("add", "delete", "check", "status", "gc")})

    def seen(self) -> list[tuple[str, str]]:
        return [(p.removeprefix("cnivpc-"), h) for p, h, _ in self.calls]


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> Parts:
    p = Parts()
    monkeypatch.setattr(fused, "load", p.load)
    return p


def config(**extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.1.0", "name": "net", "type": "cnivpc", "logLevel": "debug",
        "ipam": {"dataDir": "/nonexistent/state"}, "ipvlan": {"mode": "l2"},
        "ptp": {"hostInterface": "eth0", "containerInterface": "eth1"}}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


def run(command: str, conf: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c0ffee", "CNI_IFNAME": "eth0",
           "CNI_NETNS": "/var/run/netns/x", "CNI_PATH": "/opt/cni/bin"}
    out = io.StringIO()
    code = Dispatcher("cnivpc", lambda: fused.PLUGIN, getenv=env.get,
                      stdin=io.BytesIO(json.dumps(conf).encode()), stdout=out,
                      stderr=io.StringIO()).run()
    text = out.getvalue()
    return code, (json.loads(text) if text.strip() else None)


def test_add_runs_the_three_in_order_chaining_results(parts: Parts) -> None:
    code, doc = run("ADD", config())
    assert code == 0 and doc is not None
    assert [i["name"] for i in doc["interfaces"]] == ["cnivpc-ipam", "cnivpc-ipvlan",
                                                      "cnivpc-ptp"]
    assert parts.seen() == [("ipam", "add"), ("ipvlan", "add"), ("ptp", "add")]
    ipam, ipvlan, ptp = (req for _, _, req in parts.calls)
    assert ipam.prev_result is None
    assert [i.name for i in ptp.prev_result.interfaces] == ["cnivpc-ipam", "cnivpc-ipvlan"]
    assert ipam.conf.data_dir == "/nonexistent/state" and ipvlan.conf.mode == "l2"
    assert ptp.conf.log_level == "debug"  # inherited from the top level


@pytest.mark.parametrize("failing", ["ipvlan", "ptp"])
def test_failed_add_undoes_the_steps_that_succeeded_in_reverse(parts: Parts,
                                                               failing: str) -> None:
    parts.fail[(f"cnivpc-{failing}", "add")] = TryAgainLater("busy", "try later")
    code, doc = run("ADD", config())
    assert code == 1 and doc is not None and doc["code"] == 11  # the step's own error
    done = {"ipvlan": ["ipam"], "ptp": ["ipam", "ipvlan"]}[failing]
    assert parts.seen() == ([(p, "add") for p in [*done, failing]]
                            + [(p, "delete") for p in reversed(done)])
    # Each undo sees the result its own ADD returned, as a runtime's DEL would.
    for program, handler, req in parts.calls:
        if handler == "delete":
            assert req.prev_result is not None
            assert req.prev_result.interfaces[-1].name == program


def test_failed_rollback_keeps_undoing_and_reports_the_add_error(parts: Parts) -> None:
    parts.fail[("cnivpc-ptp", "add")] = CniError("ptp broke", code=7)
    parts.fail[("cnivpc-ipvlan", "delete")] = CniError("ipvlan undo broke", code=999)
    code, doc = run("ADD", config())
    assert code == 1 and doc is not None and doc["msg"] == "ptp broke"
    assert ("ipam", "delete") in parts.seen()


def test_del_runs_in_reverse_and_every_step_despite_errors(parts: Parts) -> None:
    parts.fail[("cnivpc-ptp", "delete")] = CniError("veth stuck", code=999)
    parts.fail[("cnivpc-ipvlan", "delete")] = TryAgainLater("busy")
    code, doc = run("DEL", config())
    assert parts.seen() == [("ptp", "delete"), ("ipvlan", "delete"), ("ipam", "delete")]
    assert code == 1 and doc is not None and doc["msg"] == "veth stuck"  # the first error
    parts.calls.clear()
    parts.fail.clear()
    assert run("DEL", config()) == (0, None)


def test_del_with_a_bad_section_still_runs_the_other_parts(parts: Parts) -> None:
    code, doc = run("DEL", config(ptp=None))
    assert parts.seen() == [("ipvlan", "delete"), ("ipam", "delete")]
    assert code == 1 and doc is not None and doc["code"] == 7 and "'ptp'" in doc["msg"]
    parts.calls.clear()
    code, doc = run("DEL", config(ipvlan={"mode": "l9"}))
    assert parts.seen() == [("ptp", "delete"), ("ipam", "delete")]
    assert code == 1 and doc is not None and "ipvlan" in doc["msg"]


def test_gc_hands_the_list_to_every_part(parts: Parts) -> None:
    valid = [{"containerID": "a", "ifname": "eth0"}]
    assert run("GC", config(**{KEY: valid})) == (0, None)
    assert parts.seen() == [("ipam", "gc"), ("ipvlan", "gc"), ("ptp", "gc")]
    for _, _, req in parts.calls:
        assert req.valid_attachments.require() == {("a", "eth0")}
        # ... and in the part's config, as a runtime would have sent it.
        assert req.raw_config[KEY] == valid


def test_gc_with_an_empty_list_reaches_every_part_as_empty(parts: Parts) -> None:
    assert run("GC", config(**{KEY: []})) == (0, None)
    assert [req.valid_attachments.require() for _, _, req in parts.calls] == [frozenset()] * 3


def test_gc_without_the_list_runs_no_part(parts: Parts) -> None:
    code, doc = run("GC", config())
    assert code == 1 and doc is not None and doc["code"] == 7
    assert parts.calls == []


def test_gc_and_status_go_on_after_a_part_fails(parts: Parts) -> None:
    parts.fail[("cnivpc-ipam", "gc")] = CniError("EC2 down", code=11)
    code, doc = run("GC", config(**{KEY: []}))
    assert code == 1 and doc is not None and doc["code"] == 11
    assert parts.seen() == [("ipam", "gc"), ("ipvlan", "gc"), ("ptp", "gc")]
    parts.calls.clear()
    parts.fail = {("cnivpc-ptp", "status"): CniError("no eth0", code=50)}
    code, doc = run("STATUS", config())
    assert code == 1 and doc is not None and doc["code"] == 50
    assert parts.seen() == [("ipam", "status"), ("ipvlan", "status"), ("ptp", "status")]


def test_check_needs_prev_result_and_runs_the_three(parts: Parts) -> None:
    code, doc = run("CHECK", config())
    assert code == 1 and doc is not None and doc["code"] == 7 and parts.calls == []
    prev = {"cniVersion": "1.1.0", "ips": [{"address": "10.0.16.5/20"}]}
    assert run("CHECK", config(prevResult=prev)) == (0, None)
    assert parts.seen() == [("ipam", "check"), ("ipvlan", "check"), ("ptp", "check")]


@pytest.mark.parametrize(("command", "change", "words"), [
    ("ADD", {"ptp": None}, "needs its 'ptp' section"),
    ("ADD", {"ipam": None}, "needs its 'ipam' section"),
    ("ADD", {"ptp": {"hostInterface": "eth0"}}, "containerInterface"),
    ("ADD", {"ipvlan": {"mode": "l9"}}, "mode"),
    ("ADD", {"ipam": {"warmIPTarget": -3}}, "warmIPTarget"),
    ("STATUS", {"ptp": {"hostInterface": "eth0"}}, "containerInterface"),
    ("GC", {"ipvlan": {"mtu": -1}, KEY: []}, "mtu"),
])
def test_a_missing_or_invalid_section_is_code_7_before_any_part_runs(
        parts: Parts, command: str, change: dict[str, Any], words: str) -> None:
    code, doc = run(command, config(**change))
    assert code == 1 and doc is not None and doc["code"] == 7, doc
    assert words in doc["msg"] + doc.get("details", ""), doc
    assert parts.calls == []


def test_a_section_of_the_wrong_type_is_code_7(parts: Parts) -> None:
    code, doc = run("ADD", config(ptp="eth0"))
    assert code == 1 and doc is not None and doc["code"] == 7
    assert parts.calls == []


def test_an_ifname_that_is_the_ptp_container_interface_is_code_7_before_any_part_runs(
        parts: Parts) -> None:
    """podman 4.3's `network reload` re-ADDs with the name of any interface of the old result:
    here CNI_IFNAME eth1, the veth's name. Refused before the IPAM allocates anything."""
    code, doc = run("ADD", config(ptp={"hostInterface": "eth0", "containerInterface": "eth0"}))
    assert code == 1 and doc is not None and doc["code"] == 7, doc
    assert doc["msg"] == "CNI_IFNAME eth0 is also the ptp plugin's containerInterface"
    assert parts.calls == []
