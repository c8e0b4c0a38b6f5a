"""Result conversion between spec versions (cnivpc.cni.convert, through the Result model):
round trips over every supported version, generated with hypothesis, plus the fixed rules."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnivpc.cni import convert, versions
from cnivpc.cni.errors import DecodingFailure, InternalError
from cnivpc.cni.types import Result

MODERN = [v for v in versions.SUPPORTED_VERSIONS if versions.at_least(v, "0.3.0")]
LEGACY = [v for v in versions.SUPPORTED_VERSIONS if not versions.at_least(v, "0.3.0")]

v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)


@st.composite
def cidrs(draw: st.DrawFn, family: int) -> str:
    ip = draw(v4 if family == 4 else v6)
    prefix = draw(st.integers(0, 32 if family == 4 else 128))
    return str(ipaddress.ip_interface(f"{ip}/{prefix}"))


@st.composite
def ip_configs(draw: st.DrawFn, family: int, n_interfaces: int, legacy: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"address": draw(cidrs(family))}
    if draw(st.booleans()):
        out["gateway"] = draw(v4 if family == 4 else v6)
    if n_interfaces and not legacy and draw(st.booleans()):
        out["interface"] = draw(st.integers(0, n_interfaces - 1))
    return out


@st.composite
def routes(draw: st.DrawFn, family: int, legacy: bool) -> dict[str, Any]:
    net = ipaddress.ip_interface(draw(cidrs(family))).network
    out: dict[str, Any] = {"dst": str(net)}
    if draw(st.booleans()):
        out["gw"] = draw(v4 if family == 4 else v6)
    if not legacy:
        for key in ("mtu", "priority", "table"):
            if draw(st.booleans()):
                out[key] = draw(st.integers(1, 9000))
    return out


names = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=15)
dns = st.fixed_dictionaries({}, optional={
    "nameservers": st.lists(v4, min_size=1, max_size=2),
    "domain": names,
    "search": st.lists(names, min_size=1, max_size=2),
    "options": st.lists(names, min_size=1, max_size=2),
})


@st.composite
def results(draw: st.DrawFn, legacy: bool = False) -> dict[str, Any]:
    """A current (1.1) result as JSON. ``legacy``: what 0.1/0.2 can carry without loss: no
    interfaces, at most one IP per family, routes only in a family that has an IP."""
    out: dict[str, Any] = {}
    families = draw(st.lists(st.sampled_from([4, 6]), min_size=1 if legacy else 0, max_size=3,
                             unique=legacy))
    interfaces: list[dict[str, Any]] = []
    if not legacy:
        for _ in range(draw(st.integers(0, 2))):
            iface: dict[str, Any] = {"name": draw(names)}
            if draw(st.booleans()):
                iface["mac"] = "0a:58:0a:00:00:01"
            if draw(st.booleans()):
                iface["sandbox"] = "/var/run/netns/x"
            if draw(st.booleans()):
                iface["mtu"] = draw(st.integers(68, 9001))
            if draw(st.booleans()):
                iface["socketPath"] = "/run/x.sock"
            if draw(st.booleans()):
                iface["pciID"] = "0000:00:05.0"
            interfaces.append(iface)
    if interfaces:
        out["interfaces"] = interfaces
    ips = [draw(ip_configs(f, len(interfaces), legacy)) for f in families]
    if ips:
        out["ips"] = ips
    route_families = sorted(set(families)) if legacy else [4, 6]
    rts = [draw(routes(f, legacy)) for f in route_families for _ in range(draw(st.integers(0, 2)))]
    if rts:
        out["routes"] = rts
    d = draw(dns)
    if d:
        out["dns"] = d
    return out


def dropped_for(result: dict[str, Any], version: str) -> dict[str, Any]:
    """What a round trip through ``version`` keeps: 1.1-only interface fields go below 1.1."""
    if versions.at_least(version, "1.1.0") or "interfaces" not in result:
        return result
    out = dict(result)
    out["interfaces"] = [{k: v for k, v in i.items() if k not in ("mtu", "socketPath", "pciID")}
                         for i in result["interfaces"]]
    return out


def by_family(doc: dict[str, Any]) -> dict[str, Any]:
    """0.1/0.2 group IPs and routes by family: compare in that order."""
    out = dict(doc)
    key = lambda item: ipaddress.ip_interface(item.get("address") or item["dst"]).version  # noqa: E731
    for field in ("ips", "routes"):
        if field in out:
            out[field] = sorted(out[field], key=key)
    return out


@settings(max_examples=150, deadline=None, database=None)
@given(result=results(), version=st.sampled_from(MODERN))
def test_round_trip_modern_versions(result: dict[str, Any], version: str) -> None:
    model = Result.model_validate(result)
    printed = model.to_version(version)
    assert printed["cniVersion"] == version
    for ip in printed.get("ips", []):
        # 0.3.x/0.4.0 carry the family; 1.x does not.
        if versions.at_least(version, "1.0.0"):
            assert "version" not in ip
        else:
            assert ip["version"] == str(ipaddress.ip_interface(ip["address"]).version)
    back = Result.from_version(printed, version)
    assert back.to_json() == dropped_for(model.to_json(), version)


@settings(max_examples=100, deadline=None, database=None)
@given(result=results(legacy=True), version=st.sampled_from(LEGACY))
def test_round_trip_legacy_versions(result: dict[str, Any], version: str) -> None:
    model = Result.model_validate(result)
    printed = model.to_version(version)
    assert set(printed) <= {"cniVersion", "ip4", "ip6", "dns"}
    assert printed["cniVersion"] == version
    back = Result.from_version(printed, version)
    assert by_family(back.to_json()) == by_family(model.to_json())


@settings(max_examples=100, deadline=None, database=None)
@given(result=results())
def test_to_current_undoes_from_current_as_dicts(result: dict[str, Any]) -> None:
    canonical = Result.model_validate(result).to_json()
    for version in MODERN:
        lowered = convert.from_current(canonical, version)
        lifted = convert.to_current(lowered, version)
        assert "cniVersion" not in lifted
        # to_current may add an empty "ips" list; the model's output drops it again.
        assert Result.model_validate(lifted).to_json() == dropped_for(canonical, version)


def test_legacy_shape() -> None:
    result = {"ips": [{"address": "fd00::5/64", "gateway": "fd00::1"},
                      {"address": "10.0.0.5/24", "gateway": "10.0.0.1"},
                      {"address": "10.0.0.6/24"}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1400},
                         {"dst": "::/0"}, {"dst": "192.168.0.0/16"}],
              "interfaces": [{"name": "eth0"}],
              "dns": {"nameservers": ["10.0.0.2"]}}
    assert convert.from_current(result, "0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.0.0.5/24", "gateway": "10.0.0.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "192.168.0.0/16"}]},
        "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
        "dns": {"nameservers": ["10.0.0.2"]},
    }


def test_legacy_needs_an_ip() -> None:
    with pytest.raises(InternalError):
        convert.from_current({"interfaces": [{"name": "eth0"}]}, "0.1.0")


def test_1_0_drops_1_1_interface_fields_only() -> None:
    result = {"interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "mtu": 9001,
                              "socketPath": "/s", "pciID": "0000:00:05.0"}]}
    assert convert.from_current(result, "1.0.0")["interfaces"] == [
        {"name": "eth0", "mac": "0a:00:00:00:00:01"}]
    assert convert.from_current(result, "1.1.0")["interfaces"] == result["interfaces"]


def test_input_is_not_modified() -> None:
    result = {"ips": [{"address": "10.0.0.5/24"}], "cniVersion": "0.4.0"}
    before = repr(result)
    convert.to_current(result, "0.4.0")
    convert.from_current({"ips": [{"address": "10.0.0.5/24"}]}, "0.3.1")
    assert repr(result) == before


@pytest.mark.parametrize("bad", [[1], "x", {"ips": "nope"}, {"ips": [{"version": "4"}]}])
def test_unreadable_prev_result(bad: Any) -> None:
    with pytest.raises((DecodingFailure, ValueError)):
        Result.from_version(bad, "0.4.0")


@pytest.mark.parametrize("bad", [{"ip4": "x"}, {"ip4": {"gateway": "10.0.0.1"}}])
def test_unreadable_legacy_result_is_code_6(bad: Any) -> None:
    with pytest.raises(DecodingFailure) as info:
        convert.to_current(bad, "0.2.0")
    assert info.value.code == 6
