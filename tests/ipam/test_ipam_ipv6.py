"""Dual-stack IPAM (``ipv6``) through the built zipapp on a lab node whose VPC and subnets have
IPv6 (the lab's Amazon-provided /56, a /64 per subnet): the pod ENI comes with a /80 of its own,
each attachment gets one address of it beside its IPv4 (a repeated ADD the same), a DEL frees
both, an ENI from before ``ipv6`` gets its /80 on the first dual-stack ADD, and the audit is
clean."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import Cli, audit, calls_of

pytestmark = [pytest.mark.netns, pytest.mark.artifact]


def pod_eni(c: Cli) -> dict[str, Any]:
    (eni,) = [e for e in c.ipam.enis() if e["Attachment"]["DeviceIndex"] >= 1]
    return eni


def ipv6_of(reply: Any) -> str:
    (v6,) = [ip["address"] for ip in reply.doc["ips"] if ":" in ip["address"]]
    return str(v6)


def test_dual_stack_pods_get_an_ipv6_out_of_their_enis_80(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", ipv6=True, warmIPTarget=0)
    first, second = c.ipam.add("pod-a"), c.ipam.add("pod-b")
    assert first.code == 0 and second.code == 0, (first.doc, second.doc)
    eni = pod_eni(c)
    (prefix,) = [p["Ipv6Prefix"] for p in eni["Ipv6Prefixes"]]
    assert ipaddress.ip_network(prefix).prefixlen == 80
    a6, b6 = ipv6_of(first), ipv6_of(second)
    assert a6 != b6 and a6.endswith("/128")
    for v6 in (a6, b6):
        assert ipaddress.ip_interface(v6).ip in ipaddress.ip_network(prefix)
    # The pod's IPv6 goes out over its ENI: the default route via the VPC router.
    assert {"dst": "::/0", "gw": "fe80::1"} in first.doc["routes"]
    assert ipv6_of(c.ipam.add("pod-a")) == a6  # a repeated ADD: the same addresses
    # The /80 came with the ENI: no AssignIpv6Addresses call.
    assert calls_of(c.ipam, "AssignIpv6Addresses") == 0
    assert c.ipam.delete("pod-a").code == 0
    with c.ipam.db() as db:
        held = [r[0] for r in db.execute("SELECT ipv6 FROM ips WHERE ipv6 IS NOT NULL")]
    assert held == [b6.split("/")[0]]
    assert audit(c) == []


def test_an_eni_from_before_ipv6_gets_its_80_on_the_first_dual_stack_add(
        node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", warmIPTarget=0)
    assert c.ipam.add("pod-a").code == 0  # IPv4 only: the ENI has no IPv6
    assert pod_eni(c).get("Ipv6Prefixes", []) == []
    reply = c.ipam.add("pod-b", conf=c.ipam.config(ipv6=True))
    assert reply.code == 0, reply.doc
    (prefix,) = [p["Ipv6Prefix"] for p in pod_eni(c)["Ipv6Prefixes"]]
    assert ipaddress.ip_interface(ipv6_of(reply)).ip in ipaddress.ip_network(prefix)
    assert calls_of(c.ipam, "AssignIpv6Addresses") == 1
    assert audit(c) == []
