"""The GC and DEL contract, in-process: GC's valid attachments as one value that keeps "no list"
apart from "an empty list" (and every real plugin refusing a GC without the list before it
touches anything), DEL going on without an unusable prevResult or optional key, and the work
after the answer running in the plugin process with ``CNIVPC_AFTERWARDS=inline`` even when it
would be detached."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from cnivpc import plugins
from cnivpc.cni.attachments import KEY, LEGACY_KEY, ValidAttachments
from cnivpc.cni.errors import InvalidConfig
from cnivpc.cni.plugin import Plugin, Request
from cnivpc.cni.skel import Dispatcher
from cnivpc.cni.types import IPConfig, NetConf, Result

GC_ENV = {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}
DEL_ENV = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "",
           "CNI_IFNAME": "eth0"}


def run(load: Any, config: dict[str, Any], env: dict[str, str],
        name: str = "cnivpc-test") -> tuple[int, dict[str, Any] | None, str]:
    out, err = io.StringIO(), io.StringIO()
    code = Dispatcher(name=name, load=load, getenv=env.get,
                      stdin=io.BytesIO(json.dumps(config).encode()), stdout=out,
                      stderr=err).run()
    text = out.getvalue()
    return code, (json.loads(text) if text.strip() else None), err.getvalue()


# -- the value ---------------------------------------------------------------------------------

def test_no_list_refuses_and_an_empty_list_is_empty() -> None:
    missing = ValidAttachments.from_config({"name": "n"})
    assert not missing.given
    with pytest.raises(InvalidConfig) as exc:
        missing.require()
    assert exc.value.code == 7 and KEY in exc.value.msg
    assert "refusing to remove anything" in exc.value.details
    with pytest.raises(InvalidConfig):
        missing.container_ids()
    assert missing.to_config() == {}
    empty = ValidAttachments.from_config({KEY: []})
    assert empty.given and empty.require() == frozenset()
    assert empty.to_config() == {KEY: [], LEGACY_KEY: []}


@pytest.mark.parametrize("key", [KEY, LEGACY_KEY])
def test_either_key_and_the_round_trip(key: str) -> None:
    value = ValidAttachments.from_config(
        {key: [{"containerID": "b", "ifname": "eth0"}, {"containerID": "a", "ifname": "net1",
                                                        "extra": 1}]})
    assert value.require() == {("a", "net1"), ("b", "eth0")}
    assert value.container_ids() == {"a", "b"}
    assert ValidAttachments.from_config(value.to_config()) == value
    assert ValidAttachments.from_config({LEGACY_KEY: value.to_config()[LEGACY_KEY]}) == value


@pytest.mark.parametrize("raw", [{"containerID": "a", "ifname": "eth0"}, [{"ifname": "eth0"}],
                                 [{"containerID": "", "ifname": "eth0"}],
                                 [{"containerID": 5, "ifname": "eth0"}], ["a"]])
def test_malformed_lists_are_code_7(raw: Any) -> None:
    with pytest.raises(InvalidConfig):
        ValidAttachments.from_config({KEY: raw})


# -- every real plugin refuses a GC without the list, before it touches anything -------------

def gc_config(program: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    ipam = {"dataDir": str(tmp_path / "state"), "lockPath": str(tmp_path / "lock")}
    ptp = {"hostInterface": "eth0", "containerInterface": "eth1"}
    base: dict[str, Any] = {"cniVersion": "1.1.0", "name": "net", "type": program}
    if program == "cnivpc-ipam":
        base.update(ipam)
    elif program == "cnivpc-ptp":
        base.update(ptp)
    elif program == plugins.FUSED:
        base.update(ipam=ipam, ipvlan={}, ptp=ptp)
    return {**base, **extra}


@pytest.mark.parametrize("program", [*plugins.PLUGINS, plugins.FUSED])
def test_gc_without_the_list_is_refused_by_every_plugin(
        program: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnivpc.net import netns

    def untouchable(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a GC without the list must not look at the host")

    monkeypatch.setattr(netns, "iproute", untouchable)
    code, doc, _ = run(lambda: plugins.load(program), gc_config(program, tmp_path), GC_ENV,
                       name=program)
    assert code == 1 and doc is not None and doc["code"] == 7, doc
    assert "valid-attachments" in doc["msg"]
    assert not (tmp_path / "state").exists()  # the IPAM did not even open its store


# -- DEL goes on without what it cannot use ----------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.requests: list[Request[Any]] = []

    def plugin(self, model: type[NetConf] = NetConf) -> Plugin[Any]:
        def handle(req: Request[Any]) -> Any:
            self.requests.append(req)
            return Result(ips=[IPConfig(address="10.1.2.3/32")])

        return Plugin(name="rec", conf_model=model, add=handle, delete=handle, check=handle,
                      status=handle, gc=handle)


@pytest.mark.parametrize("prev", [{"ips": [{"address": "nope"}]}, "garbage", 7])
def test_del_goes_on_without_an_unusable_prev_result(prev: Any) -> None:
    rec = Recorder()
    config = {"cniVersion": "1.0.0", "name": "net", "type": "rec", "prevResult": prev}
    code, doc, err = run(rec.plugin, config, DEL_ENV)
    assert (code, doc) == (0, None), err
    (req,) = rec.requests
    assert req.prev_result is None and "prevResult" not in req.raw_config
    assert "prevResult" in err  # what was set aside is logged
    # ADD and CHECK still refuse it: they act on what it says.
    for command in ("ADD", "CHECK"):
        code, doc, _ = run(rec.plugin, config, {**DEL_ENV, "CNI_COMMAND": command,
                                                "CNI_NETNS": "/var/run/netns/x"})
        assert code == 1 and doc is not None and doc["code"] == 7


def test_del_sets_aside_unusable_optional_keys_but_not_required_ones() -> None:
    from cnivpc.plugins.ptp.config import PtpConf

    rec = Recorder()
    base = {"cniVersion": "1.0.0", "name": "net", "type": "cnivpc-ptp",
            "hostInterface": "eth0", "containerInterface": "eth1"}
    bad_optional = {**base, "mtu": "huge", "dns": "8.8.8.8", "runtimeConfig": 5,
                    "ipMasq": True}
    code, _, err = run(lambda: rec.plugin(PtpConf), bad_optional, DEL_ENV)
    assert code == 0, err
    conf = rec.requests[0].conf
    assert conf.mtu is None and conf.dns is None and conf.ip_masq is True
    assert "mtu" in err and "runtimeConfig" in err
    # A required key cannot be made up: that DEL still fails, naming it.
    code, doc, _ = run(lambda: rec.plugin(PtpConf), {**base, "hostInterface": 5}, DEL_ENV)
    assert code == 1 and doc is not None and doc["code"] == 7
    assert "hostInterface" in doc["details"]
    # ADD never sets anything aside.
    code, doc, _ = run(lambda: rec.plugin(PtpConf), bad_optional,
                       {**DEL_ENV, "CNI_COMMAND": "ADD", "CNI_NETNS": "/var/run/netns/x"})
    assert code == 1 and doc is not None and doc["code"] == 7


def test_ipam_del_releases_despite_a_garbage_prev_result(tmp_path: Path) -> None:
    """The IPAM's DEL needs no prevResult: with one that cannot be parsed it still releases
    (in-process, against a store prepared by hand; the lab tests do it through exec)."""
    from cnivpc.plugins.ipam.store import Store

    data = tmp_path / "state"
    with Store.open(str(data)) as store, store.transaction():
        store.add_free(["10.0.16.5"], "eni-1")
        store.allocate("10.0.16.5", "c0ffee", "eth0", network="net")
    config = {"cniVersion": "1.0.0", "name": "net", "type": "cnivpc-ipam",
              "dataDir": str(data), "lockPath": str(tmp_path / "lock"), "maxFreeIPs": -1,
              "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]}}
    code, doc, err = run(lambda: plugins.load("cnivpc-ipam"), config, DEL_ENV,
                         name="cnivpc-ipam")
    assert (code, doc) == (0, None), err
    with Store.open(str(data)) as store:
        assert store.allocations() == []


# -- CNIVPC_AFTERWARDS=inline ------------------------------------------------------------------

def test_inline_runs_the_work_in_this_process_even_where_it_would_detach(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise AssertionError("inline must not fork")

    monkeypatch.setattr(os, "fork", no_fork)
    seen: list[int] = []

    def add(req: Request[Any]) -> Result:
        req.after_answer(lambda: seen.append(os.getpid()))
        return Result(ips=[IPConfig(address="10.1.2.3/32")])

    plugin = Plugin(name="fake", conf_model=NetConf, add=add, delete=add, check=add,
                    status=add, gc=add)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/var/run/netns/x",
           "CNI_IFNAME": "eth0", "CNIVPC_AFTERWARDS": "inline"}
    out = io.StringIO()
    # detach=True: what a real exec gets (its own stdout is the runtime's pipe).
    code = Dispatcher("fake", lambda: plugin, getenv=env.get, detach=True,
                      stdin=io.BytesIO(b'{"cniVersion": "1.0.0", "name": "n"}'), stdout=out,
                      stderr=io.StringIO()).run()
    assert code == 0 and json.loads(out.getvalue())["ips"]
    assert seen == [os.getpid()]
