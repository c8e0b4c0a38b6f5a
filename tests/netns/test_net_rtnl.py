"""net.rtnl against the real kernel, in a throw-away netns: what its dumps return matches
``ip -j`` (links, addresses, routes of every table, rules), dumps that take many datagrams come
back whole, and the kernel's errors arrive typed (EEXIST, ENODEV) with its extended-ACK text.
The reply loop's corner cases (interrupted dumps, stale replies) are tests/unit/test_net_rtnl.py.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from collections.abc import Iterator

import pytest

from cnivpc.net import _nl, links, netns, routes
from cnivpc.net.errors import LinkNotFound, NetlinkFailure, RouteExists

from .conftest import ip_json, sh

pytestmark = pytest.mark.netns


@pytest.fixture
def ns(require_root: None) -> Iterator[str]:
    """Name: ns. Scope: function. Depends: require_root.

    One namespace with lo up, a veth pair (v0 192.0.2.1/24 + 2001:db8::1/64 up, v1), routes in
    main and in table 3000 and a few rules; its name. Deleted afterwards."""
    name = f"cnt-{secrets.token_hex(4)}-rtnl"
    sh("ip", "netns", "add", name)
    try:
        script = [
            "link set lo up",
            "link add v0 type veth peer name v1",
            "link set v0 up mtu 1400 alias some-alias",
            "addr add 192.0.2.1/24 dev v0",
            "addr add 192.0.2.2/24 dev v0",
            "addr add 2001:db8::1/64 dev v0 nodad",
            "route add 10.1.0.0/16 via 192.0.2.9 dev v0 table 3000",
            "route add 10.2.0.1 dev v0 scope link",
            "route add default via 192.0.2.254",
            "route add 2001:db8:1::/64 via 2001:db8::9 dev v0 table 3000",
            "rule add iif v0 lookup 3000 priority 1024",
            "rule add fwmark 0x80 lookup main priority 1023",
        ]
        sh("ip", "-n", name, "-batch", "-", input="\n".join(script) + "\n")
        sh("ip", "-n", name, "-6", "rule", "add", "iif", "v0", "lookup", "3000", "priority",
           "1024")
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


def test_link_dump_and_get_match_ip(ns: str) -> None:
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        mine = {link.name: link for link in links.list_links(ipr)}
        by_name = links.get(ipr, "v0")
        assert links.by_index(ipr, by_name.index) == by_name
    theirs = {link["ifname"]: link for link in ip_json(ns, "-d", "link", "show")}
    assert set(mine) == set(theirs) == {"lo", "v0", "v1"}
    for name, link in theirs.items():
        assert mine[name].index == link["ifindex"]
        assert mine[name].mtu == link["mtu"]
        assert mine[name].mac == link["address"]
        assert mine[name].up == ("UP" in link["flags"])
        assert mine[name].alias == link.get("ifalias", "")
        assert mine[name].kind == link.get("linkinfo", {}).get("info_kind", "")
    assert mine["v0"] == by_name and by_name.alias == "some-alias" and by_name.mtu == 1400
    assert mine["v0"].peer_index == mine["v1"].index


def test_address_dump_matches_ip(ns: str) -> None:
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        v0 = links.get(ipr, "v0")
        mine = links.addresses(ipr, v0.index)
    theirs = [f"{a['local']}/{a['prefixlen']}" for a in ip_json(ns, "addr", "show", "dev", "v0")[0]
              ["addr_info"]]
    assert sorted(map(str, mine)) == sorted(theirs)
    assert [str(a) for a in mine[:3]] == ["192.0.2.1/24", "192.0.2.2/24", "2001:db8::1/64"]


def test_route_dump_matches_ip_in_every_table(ns: str) -> None:
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        ifnames = {link.index: link.name for link in links.list_links(ipr)}
        for family, flag in ((socket.AF_INET, "-4"), (socket.AF_INET6, "-6")):
            mine = {(str(r.dst), ifnames.get(r.oif, ""), str(r.gateway or ""), r.table)
                    for r in routes.list_routes(ipr, family)}
            theirs = set()
            for r in ip_json(ns, flag, "route", "show", "table", "all"):
                if r.get("type", "unicast") != "unicast" or "dev" not in r:
                    continue
                dst = r["dst"]
                if dst == "default":
                    dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
                table = {"main": 254, "local": 255}.get(r.get("table", "main"))
                theirs.add((str(ipaddress.ip_network(dst, strict=False)), r["dev"],
                            r.get("gateway", ""), table or int(r["table"])))
            assert len(theirs) >= 2 and theirs <= mine, (family, theirs, mine)
        assert routes.list_routes(ipr, socket.AF_INET, 3000) == [routes.Route(
            dst=ipaddress.ip_network("10.1.0.0/16"), oif=links.get(ipr, "v0").index,
            gateway=ipaddress.ip_address("192.0.2.9"), table=3000)]


def test_rule_dump_matches_ip(ns: str) -> None:
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        mine = routes.list_rules(ipr)
    for family, flag in ((socket.AF_INET, "-4"), (socket.AF_INET6, "-6")):
        theirs = []
        for r in ip_json(ns, flag, "rule", "show"):
            table = {"main": 254, "local": 255, "default": 253}.get(r["table"]) or int(r["table"])
            mark = r.get("fwmark")
            theirs.append(routes.Rule(family=family, priority=r["priority"], table=table,
                                      iifname=r.get("iif", ""),
                                      fwmark=int(mark, 16) if mark else None))
        assert [r for r in mine if r.family == family] == theirs


def test_a_dump_of_many_datagrams_comes_back_whole(ns: str) -> None:
    count = 1500  # ~100 bytes each: several datagrams
    sh("ip", "-n", ns, "-batch", "-",
       input="".join(f"addr add 10.{i // 250}.{i % 250}.1/32 dev v1\n" for i in range(count)))
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        v1 = links.get(ipr, "v1")
        found = links.addresses(ipr, v1.index)
        assert len(found) == count
        # The socket is clean afterwards: the next request gets its own answer.
        assert links.get(ipr, "v0").name == "v0"


def test_kernel_errors_arrive_typed_with_the_kernels_text(ns: str) -> None:
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        v0 = links.get(ipr, "v0")
        with pytest.raises(LinkNotFound) as gone:
            _nl.call("delete link #99999", ipr.link, "del", index=99999)
        assert gone.value.errno == 19  # ENODEV
        assert links.by_index(ipr, 99999) is None and links.find(ipr, "nope0") is None
        route = routes.Route(dst=ipaddress.ip_network("10.1.0.0/16"), oif=v0.index,
                             gateway=ipaddress.ip_address("192.0.2.9"), table=3000)
        with pytest.raises(RouteExists) as dup:
            routes.add(ipr, route)
        assert dup.value.errno == 17  # EEXIST
        rule = routes.Rule(family=socket.AF_INET, priority=1024, table=3000, iifname="v0")
        with pytest.raises(RouteExists):
            routes.add_rule(ipr, rule)
        # A gateway on no connected network: the kernel says why (extended ACK).
        with pytest.raises(NetlinkFailure) as why:
            routes.add(ipr, routes.Route(dst=ipaddress.ip_network("10.9.0.0/16"),
                                         oif=v0.index, gateway=ipaddress.ip_address("10.77.0.1")))
        assert why.value.errno == 101  # ENETUNREACH
        assert why.value.details.startswith(os.strerror(101) + " (")
        assert "gateway" in why.value.details.lower()
        # After all those errors the same client still works, on the same socket.
        assert routes.delete_rule(ipr, rule) and not routes.delete_rule(ipr, rule)
        assert routes.delete(ipr, route) and not routes.delete(ipr, route)


def test_delete_matches_routes_of_any_scope(ns: str) -> None:
    # IPRoute sent scope 0 on delete, which IPv4 reads as "universe only": the scope-link
    # route of the fixture could not be deleted (ESRCH, reported as "was not there").
    with netns.iproute(f"/run/netns/{ns}") as ipr:
        v0 = links.get(ipr, "v0")
        onlink = routes.Route(dst=ipaddress.ip_network("10.2.0.1/32"), oif=v0.index,
                              scope=routes.SCOPE_LINK)
        assert onlink in routes.list_routes(ipr, socket.AF_INET, routes.RT_TABLE_MAIN)
        assert routes.delete(ipr, onlink) and not routes.delete(ipr, onlink)
        assert onlink not in routes.list_routes(ipr, socket.AF_INET, routes.RT_TABLE_MAIN)
        routes.add(ipr, routes.Route(dst=onlink.dst, oif=v0.index, scope=routes.SCOPE_LINK,
                                     table=3001))
        assert routes.flush_table(ipr, 3001) == 1
