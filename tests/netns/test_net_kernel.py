"""The net layer in-process against a throw-away netns: every call goes through
``netns.iproute(path)`` / ``run_in(path)``, so these tests also prove that work aimed at
another namespace never lands in the test process's own (the host's)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cnivpc.net import arp, links, netns, routes, sysctl
from cnivpc.net.errors import LinkExists, NetnsNotFound, RouteExists
from cnivpc.net.iptables import Iptables

from .conftest import sh

pytestmark = pytest.mark.netns


@pytest.fixture
def ns_pair(require_root: None) -> Iterator[tuple[str, str]]:
    """Name: ns_pair. Scope: function. Depends: require_root.

    Two empty namespaces (lo up) as paths; deleted afterwards."""
    names = [f"cnt-{secrets.token_hex(4)}-a", f"cnt-{secrets.token_hex(4)}-b"]
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            sh("ip", "link", "set", "lo", "up", netns=name)
        yield f"/run/netns/{names[0]}", f"/run/netns/{names[1]}"
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)


def test_veth_routes_rules_in_another_netns(ns_pair: tuple[str, str]) -> None:
    a, b = ns_pair
    host_links = {link.name for link in _host_links()}
    with netns.iproute(a) as ipa, netns.iproute(b) as ipb, netns.open_fd(b) as fd_b:
        links.create_veth(ipa, "cnptest0", "peer0", fd_b, 1400)
        with pytest.raises(LinkExists):
            links.create_veth(ipa, "cnptest0", "peer1", fd_b, 1400)
        va, vb = links.get(ipa, "cnptest0"), links.get(ipb, "peer0")
        assert va.kind == vb.kind == "veth" and va.mtu == vb.mtu == 1400
        assert va.peer_index == vb.index and vb.peer_index == va.index
        links.set_alias(ipa, va.index, "cnivpc-ptp:n:c:eth0")
        links.set_up(ipa, va.index)
        assert links.get(ipa, "cnptest0").alias == "cnivpc-ptp:n:c:eth0"
        assert links.get(ipa, "cnptest0").up

        links.add_address(ipa, va.index, ipaddress.ip_interface("192.0.2.1/24"))
        links.add_address(ipa, va.index, ipaddress.ip_interface("192.0.2.2/24"))
        links.add_address(ipa, va.index, ipaddress.ip_interface("fe80::1/64"), nodad=True)
        assert [str(x) for x in links.addresses(ipa, va.index)][:3] == \
            ["192.0.2.1/24", "192.0.2.2/24", "fe80::1/64"]  # primary, secondary, then v6

        route = routes.Route(dst=ipaddress.ip_network("10.1.0.0/16"), oif=va.index,
                             gateway=ipaddress.ip_address("192.0.2.9"), table=3000)
        routes.add(ipa, route)
        with pytest.raises(RouteExists):
            routes.add(ipa, route)
        assert routes.list_routes(ipa, socket.AF_INET, 3000) == [route]
        rule = routes.Rule(family=socket.AF_INET, priority=1024, table=3000,
                           iifname="cnptest0")
        routes.add_rule(ipa, rule)
        assert rule in routes.list_rules(ipa)
        assert {3000, 254} <= routes.tables_in_use(ipa)
        assert routes.delete_rule(ipa, rule) and not routes.delete_rule(ipa, rule)
        assert routes.flush_table(ipa, 3000) == 1 and routes.flush_table(ipa, 3000) == 0
        with pytest.raises(ValueError):
            routes.flush_table(ipa, 254)

        assert links.delete(ipa, "cnptest0") and not links.delete(ipa, "cnptest0")
        assert links.find(ipb, "peer0") is None  # a veth's peer goes with it
    assert {link.name for link in _host_links()} == host_links


def _host_links() -> list[links.Link]:
    with netns.iproute() as ipr:
        return links.list_links(ipr)


def test_sysctl_iptables_and_arp_act_in_the_target_netns(ns_pair: tuple[str, str]) -> None:
    a, _ = ns_pair
    host_forward = sysctl.read("net/ipv4/ip_forward")
    sysctl.write("net/ipv4/ip_forward", "0" if host_forward == "1" else "1", a)
    assert sysctl.read("net/ipv4/ip_forward", a) != host_forward
    assert sysctl.read("net/ipv4/ip_forward") == host_forward

    ipt = Iptables(netns_path=a)
    assert ipt.append_unique("nat", "POSTROUTING", ["-o", "lo", "-j", "ACCEPT"])
    assert not ipt.append_unique("nat", "POSTROUTING", ["-o", "lo", "-j", "ACCEPT"])
    assert ipt.listing("nat")[1] == [("POSTROUTING", ["-o", "lo", "-j", "ACCEPT"])]
    assert "-o lo" not in Iptables().must("-t", "nat", "-S", "POSTROUTING")  # host untouched
    ipt.apply({"nat": [["-N", "CNI-test"]]})
    assert "CNI-test" in ipt.listing("nat")[0] and "CNI-absent" not in ipt.listing("nat")[0]
    assert "CNI-test" not in Iptables().listing("nat")[0]  # host untouched
    ipt.apply({"nat": [["-F", "CNI-test"], ["-X", "CNI-test"]]})
    assert "CNI-test" not in ipt.listing("nat")[0]
    assert ipt.delete("nat", "POSTROUTING", ["-o", "lo", "-j", "ACCEPT"])

    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
       netns=os.path.basename(a))
    sh("ip", "link", "set", "v0", "up", netns=os.path.basename(a))
    sh("ip", "link", "set", "v1", "up", netns=os.path.basename(a))
    with netns.iproute(a) as ipa:
        v0 = links.get(ipa, "v0")
    # The frames must really leave (the sending socket is never bound): a packet socket on
    # the peer end, bound before they are sent, receives both.
    ips = [ipaddress.IPv4Address("192.0.2.7"), ipaddress.IPv4Address("192.0.2.8")]
    capture = netns.run_in(a, lambda: socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW, socket.htons(arp.ETH_P_ARP)))
    with capture:
        netns.run_in(a, lambda: capture.bind(("v1", arp.ETH_P_ARP)))
        capture.settimeout(10)
        arp.announce("v0", v0.mac, ips, a)
        seen = [capture.recv(2048) for _ in ips]
    assert seen == [arp.frame(v0.mac, ip) for ip in ips]


def test_missing_netns_is_never_created(require_root: None) -> None:
    path = f"/run/netns/cnt-{secrets.token_hex(4)}-missing"
    with pytest.raises(NetnsNotFound), netns.iproute(path):
        pass
    with pytest.raises(NetnsNotFound):
        sysctl.read("net/ipv4/ip_forward", path)
    assert not os.path.exists(path)


# A process with one thread: run_in moves that thread itself (no helper thread) and always
# brings it back, after a result and after an exception; with another thread running, a helper
# thread does the work and the caller never moves. Run as its own interpreter so the thread
# count is known (pytest's process may hold threads of its own).
_ONE_THREAD_PROBE = r"""
import json, os, sys, threading
from cnivpc.net import netns

target = sys.argv[1]
def ino(): return os.stat("/proc/thread-self/ns/net").st_ino
home, want = ino(), os.stat(target).st_ino
started = []
_start = threading.Thread.start
def start(self): started.append(self.name); _start(self)
threading.Thread.start = start
def where(): return ino(), threading.current_thread() is threading.main_thread()
seen = netns.run_in(target, where)
after = ino()
def boom(): raise KeyError(ino())
try:
    netns.run_in(target, boom)
except KeyError as exc:
    inside_error = exc.args[0]
after_error = ino()
hold = threading.Event()
other = threading.Thread(target=hold.wait, name="other")
other.start()
seen_threaded = netns.run_in(target, where)
after_threaded = ino()
hold.set(); other.join()
print(json.dumps({"home": home, "want": want, "seen": seen, "after": after, "started": started,
                  "inside_error": inside_error, "after_error": after_error,
                  "seen_threaded": seen_threaded, "after_threaded": after_threaded}))
"""


def test_run_in_moves_a_lone_thread_and_brings_it_back(ns_pair: tuple[str, str]) -> None:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", _ONE_THREAD_PROBE, ns_pair[0]], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": repo})
    r = json.loads(out.stdout)
    assert r["home"] != r["want"]
    # One thread: the main thread itself was in the target, and back home afterwards.
    assert r["seen"] == [r["want"], True]
    assert r["after"] == r["home"]
    assert r["inside_error"] == r["want"] and r["after_error"] == r["home"]
    # Another thread running: a helper thread went, the caller never moved.
    assert r["seen_threaded"] == [r["want"], False]
    assert r["after_threaded"] == r["home"]
    assert r["started"] == ["other", "cnivpc-netns"]
