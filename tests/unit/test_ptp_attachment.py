"""Facts the ptp plugin derives from a request, shared by ADD and CHECK: which prevResult IPs
are the pod's, the per-pod table's routes, and the routes on each veth end."""

from __future__ import annotations

import ipaddress

import pytest

from cnivpc.cni.errors import InvalidConfig
from cnivpc.cni.types import Result
from cnivpc.plugins.ptp import attachment
from cnivpc.plugins.ptp.attachment import host_routes, pod_ips, pod_routes, table_routes

ip = ipaddress.ip_address
net = ipaddress.ip_network


def test_pod_ips_keep_ifname_or_unbound_addresses() -> None:
    prev = Result.model_validate({
        "interfaces": [{"name": "eth0"}, {"name": "net1"}],
        "ips": [{"address": "10.0.0.5/24", "interface": 0},
                {"address": "10.1.0.5/24", "interface": 1},
                {"address": "10.2.0.5/24"},
                {"address": "10.3.0.5/24", "interface": 7},  # out of range: kept
                {"address": "fd00::5/64", "interface": 0},
                {"address": "10.0.0.5/24", "interface": 0}]})
    assert [str(a) for a in pod_ips(prev, "eth0")] == \
        ["10.0.0.5", "10.2.0.5", "10.3.0.5", "fd00::5"]


def test_no_pod_ip_is_invalid_config() -> None:
    prev = Result.model_validate({"interfaces": [{"name": "net1"}],
                                  "ips": [{"address": "10.1.0.5/24", "interface": 0}]})
    with pytest.raises(InvalidConfig, match="no IP"):
        pod_ips(prev, "eth0")
    with pytest.raises(InvalidConfig, match="chained"):
        attachment.require_prev(None)


def test_table_routes_sorted_via_first_ipv4_and_ipv6_link_local() -> None:
    prev = Result.model_validate({
        "ips": [{"address": "10.0.0.5/24"}, {"address": "10.0.0.6/24"}],
        "routes": [{"dst": "10.9.0.0/16"}, {"dst": "10.1.0.0/16"}, {"dst": "fd00::/8"},
                   {"dst": "10.1.0.0/16", "gw": "10.0.0.1"}]})
    v4_only = table_routes(prev, pod_ips(prev, "eth0"))
    assert v4_only == [(net("10.1.0.0/16"), ip("10.0.0.5")), (net("10.9.0.0/16"), ip("10.0.0.5"))]
    dual = table_routes(prev, [*pod_ips(prev, "eth0"), ip("fd00::5")])
    assert dual[-1] == (net("fd00::/8"), ip("fe80::2"))


def test_pod_routes() -> None:
    host = [ip("10.0.1.10"), ip("10.0.1.11"), ip("fe80::aa"), ip("fd00:1::10")]
    assert pod_routes(host, ip("10.0.1.10"), {4}) == [
        (net("10.0.1.10/32"), None), (net("10.0.1.11/32"), None),
        (net("0.0.0.0/0"), ip("10.0.1.10"))]
    # IPv6: the host's link-locals belong to its own link; everything goes via fe80::1.
    assert pod_routes(host, None, {6}) == [
        (net("fd00:1::10/128"), ip("fe80::1")), (net("::/0"), ip("fe80::1"))]


def test_host_routes() -> None:
    assert host_routes([ip("10.0.16.23"), ip("fd00::23")]) == [
        (net("10.0.16.23/32"), None), (net("fd00::23/128"), ip("fe80::2"))]
