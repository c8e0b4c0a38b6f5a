"""net.rtnl, our NETLINK_ROUTE client, against a scripted fake socket (no root, no kernel):
the reply loop (sequence numbers, ACK/DONE, errors with extended-ACK text, interrupted dumps
read to their end and retried by ``_nl.dump``, datagrams larger than the buffer), the keyword
checking, and what a request looks like on the wire. The same client against the real kernel
is tests/netns/test_net_rtnl.py."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from cnivpc.net import _nl, links, routes, rtnl
from cnivpc.net.errors import LinkExists, LinkNotFound, NetlinkFailure, RouteExists

HDR = struct.Struct("=IHHII")
NLM_F_MULTI = 0x2  # set by the kernel on each part of a dump


def nlmsg(msg_type: int, seq: int, body: bytes = b"", flags: int = 0) -> bytes:
    data = HDR.pack(HDR.size + len(body), msg_type, flags, seq, 4242) + body
    return data + b"\0" * (-len(data) % 4)


def link_msg(seq: int, index: int, name: str, flags: int = NLM_F_MULTI
             ) -> bytes:
    """An RTM_NEWLINK reply for link ``index`` called ``name``, encoded by pyroute2."""
    msg = _nl.message_class("ifinfmsg")()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", 1500)]
    msg["header"].update(type=rtnl.RTM_NEWLINK, flags=flags, sequence_number=seq, pid=4242)
    msg.encode()
    return bytes(msg.data)


def done(seq: int, flags: int = NLM_F_MULTI) -> bytes:
    return nlmsg(rtnl.NLMSG_DONE, seq, struct.pack("=i", 0), flags)


def error(seq: int, code: int, text: str = "") -> bytes:
    """NLMSG_ERROR as a kernel with NETLINK_CAP_ACK and NETLINK_EXT_ACK sends it."""
    body = struct.pack("=i", -code) + HDR.pack(32, 16, 5, seq, 4242)
    flags = rtnl.NLM_F_CAPPED
    if text:
        raw = text.encode() + b"\0"
        body += struct.pack("=HH", 4 + len(raw), rtnl.NLMSGERR_ATTR_MSG) + raw
        body += b"\0" * (-len(body) % 4)
        flags |= rtnl.NLM_F_ACK_TLVS
    return nlmsg(rtnl.NLMSG_ERROR, seq, body, flags)


def ack(seq: int) -> bytes:
    return error(seq, 0)


class FakeSocket:
    """Answers each request with the datagrams ``script(seq, request)`` returns."""

    def __init__(self, script: Callable[[int, bytes], list[bytes]]) -> None:
        self.script = script
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []
        self.options: list[tuple[int, int, int]] = []
        self.closed = False

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        seq = HDR.unpack_from(data)[3]
        self.queue.extend(self.script(seq, bytes(data)))
        return len(data)

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        assert self.queue, "the client read past the end of the replies"
        data = self.queue[0] if flags & socket.MSG_PEEK else self.queue.pop(0)
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        return len(data) if flags & socket.MSG_TRUNC else n

    def close(self) -> None:
        self.closed = True


def client(script: Callable[[int, bytes], list[bytes]]) -> tuple[rtnl.Rtnl, FakeSocket]:
    sock = FakeSocket(script)
    return rtnl.Rtnl(sock), sock  # type: ignore[arg-type]


def request_of(data: bytes, kind: str) -> Any:
    msg = _nl.message_class(kind)(data)
    msg.decode()
    return msg


def test_socket_options_ask_for_extended_acks_and_capped_errors() -> None:
    ipr, sock = client(lambda seq, req: [])
    assert (rtnl.SOL_NETLINK, rtnl.NETLINK_EXT_ACK, 1) in sock.options
    assert (rtnl.SOL_NETLINK, rtnl.NETLINK_CAP_ACK, 1) in sock.options
    with ipr:
        pass
    assert sock.closed


def test_get_returns_the_decoded_reply_and_stops_at_the_ack() -> None:
    ipr, sock = client(lambda seq, req: [link_msg(seq, 7, "eth7", 0) + ack(seq)])
    [msg] = ipr.link("get", ifname="eth7")
    assert (msg["index"], msg.get("IFLA_IFNAME"), msg.get("IFLA_MTU")) == (7, "eth7", 1500)
    req = request_of(sock.sent[0], "ifinfmsg")
    assert req["header"]["type"] == rtnl.RTM_GETLINK
    assert req["header"]["flags"] == rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    assert req.get_attr("IFLA_IFNAME") == "eth7"
    assert sock.queue == []


def test_replies_of_other_sequence_numbers_are_skipped() -> None:
    # Leftovers of an abandoned request (an older seq) come first: they are not ours.
    ipr, _ = client(lambda seq, req: [link_msg(seq - 1, 1, "old") + ack(seq - 1),
                                      link_msg(seq, 2, "new", 0), ack(seq)])
    assert [m.get("IFLA_IFNAME") for m in ipr.link("get", index=2)] == ["new"]


def test_dump_spans_datagrams_until_done() -> None:
    ipr, sock = client(lambda seq, req: [link_msg(seq, 1, "lo") + link_msg(seq, 2, "eth0"),
                                         link_msg(seq, 3, "eth1"), done(seq)])
    assert [m["index"] for m in ipr.link("dump")] == [1, 2, 3]
    assert request_of(sock.sent[0], "ifinfmsg")["header"]["flags"] == rtnl.DUMP


def test_datagram_bigger_than_the_buffer_is_received_whole() -> None:
    def script(seq: int, req: bytes) -> list[bytes]:
        return [b"".join(link_msg(seq, i, f"veth{i}") for i in range(1, 2001)), done(seq)]

    ipr, sock = client(script)
    assert len(script(1, b"")[0]) > rtnl.RECV_BUFFER
    assert [m["index"] for m in ipr.link("dump")] == list(range(1, 2001))
    assert sock.queue == []


@pytest.mark.parametrize(("code", "exists", "raised"), [
    (errno.EEXIST, LinkExists, LinkExists),
    (errno.EEXIST, RouteExists, RouteExists),
    (errno.ENODEV, LinkExists, LinkNotFound),
    (errno.EPERM, LinkExists, NetlinkFailure),
])
def test_errors_become_typed_failures_with_the_kernel_text(
        code: int, exists: type[NetlinkFailure], raised: type[NetlinkFailure]) -> None:
    ipr, _ = client(lambda seq, req: [error(seq, code, "the kernel explains")])
    with pytest.raises(raised) as info:
        _nl.call("do it", ipr.link, "set", exists=exists, index=3, mtu=9000)
    assert type(info.value) is raised
    assert info.value.errno == code
    assert info.value.details == f"{os.strerror(code)} (the kernel explains)"


def test_error_without_extended_ack_has_the_plain_reason() -> None:
    ipr, _ = client(lambda seq, req: [error(seq, errno.ENODEV)])
    with pytest.raises(LinkNotFound) as info:
        _nl.call("get link #9", ipr.link, "get", index=9)
    assert info.value.details == "No such device"


def test_uncapped_error_finds_the_text_after_the_echoed_request() -> None:
    def script(seq: int, req: bytes) -> list[bytes]:
        raw = b"bad attribute\0\0\0"
        body = (struct.pack("=i", -errno.EINVAL) + req
                + struct.pack("=HH", 4 + 14, rtnl.NLMSGERR_ATTR_MSG) + raw)
        return [nlmsg(rtnl.NLMSG_ERROR, seq, body, rtnl.NLM_F_ACK_TLVS)]

    ipr, _ = client(script)
    with pytest.raises(NetlinkFailure) as info:
        _nl.call("set", ipr.link, "set", index=3, ifalias="x")
    assert info.value.details == "Invalid argument (bad attribute)"


def test_interrupted_dump_is_read_to_its_end_and_retried() -> None:
    attempts: list[int] = []

    def script(seq: int, req: bytes) -> list[bytes]:
        attempts.append(seq)
        if len(attempts) == 1:  # the table changed during the first dump
            intr = NLM_F_MULTI | rtnl.NLM_F_DUMP_INTR
            return [link_msg(seq, 1, "lo"), link_msg(seq, 2, "gone", intr), done(seq, intr)]
        return [link_msg(seq, 1, "lo") + link_msg(seq, 3, "new"), done(seq)]

    ipr, sock = client(script)
    found = links.list_links(ipr)
    assert [link.name for link in found] == ["lo", "new"]
    assert len(attempts) == 2 and sock.queue == []  # the first dump was drained


def test_dump_interrupted_every_time_gives_up() -> None:
    intr = NLM_F_MULTI | rtnl.NLM_F_DUMP_INTR
    ipr, sock = client(lambda seq, req: [link_msg(seq, 1, "lo", intr), done(seq, intr)])
    with pytest.raises(NetlinkFailure) as info:
        links.list_links(ipr)
    assert info.value.errno == errno.EINTR and "interrupted" in info.value.msg
    assert len(sock.sent) == _nl.DUMP_ATTEMPTS and sock.queue == []


def test_failed_dump_reports_the_done_error() -> None:
    ipr, _ = client(lambda seq, req: [nlmsg(rtnl.NLMSG_DONE, seq,
                                            struct.pack("=i", -errno.EBUSY), 2)])
    with pytest.raises(NetlinkFailure) as info:
        routes.list_rules(ipr, [socket.AF_INET])
    assert info.value.errno == errno.EBUSY


@pytest.mark.parametrize(("call", "kwargs"), [
    ("link", {"ifname": "x", "kind": "veth", "peer": {"ifname": "y"}, "master": 3}),
    ("link", {"ifname": "x", "kind": "veth", "peer": {"ifname": "y", "address": "02:00"}}),
    ("addr", {"index": 1, "address": ipaddress.ip_address("192.0.2.1"), "prefixlen": 24,
              "scope": 0}),
    ("route", {"dst": ipaddress.ip_network("10.0.0.0/8"), "table": 254, "oif": 1,
               "scope": 0, "priority": 5}),
    ("rule", {"family": 2, "priority": 1, "table": 3, "oifname": "eth0"}),
])
def test_unknown_keyword_is_a_type_error_and_sends_nothing(call: str,
                                                           kwargs: dict[str, Any]) -> None:
    ipr, sock = client(lambda seq, req: [ack(seq)])
    with pytest.raises(TypeError):
        getattr(ipr, call)("add", **kwargs)
    assert sock.sent == []


def test_unknown_command_and_bad_combinations() -> None:
    ipr, sock = client(lambda seq, req: [ack(seq)])
    with pytest.raises(ValueError):
        ipr.link("update", index=1)
    with pytest.raises(TypeError):
        ipr.link("get", index=1, ifname="x")
    with pytest.raises(TypeError):
        ipr.link("add", ifname="x", kind="ipvlan", ipvlan_mode=0)  # no master link
    with pytest.raises(ValueError):
        ipr.link("add", ifname="x", kind="bridge")
    with pytest.raises(TypeError):
        ipr.route("dump")  # family is required
    assert sock.sent == []


def test_veth_request_on_the_wire() -> None:
    ipr, sock = client(lambda seq, req: [ack(seq)])
    links.create_veth(ipr, "cnp0", "eth1", 9, 1400)
    req = request_of(sock.sent[0], "ifinfmsg")
    assert req["header"]["type"] == rtnl.RTM_NEWLINK
    assert req["header"]["flags"] == rtnl.CREATE
    assert req.get("IFLA_IFNAME") == "cnp0" and req.get("IFLA_MTU") == 1400
    info = req.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "eth1" and peer.get_attr("IFLA_MTU") == 1400
    assert peer.get_attr("IFLA_NET_NS_FD") == 9


def test_route_and_rule_requests_on_the_wire() -> None:
    ipr, sock = client(lambda seq, req: [ack(seq)])
    routes.add(ipr, routes.Route(dst=ipaddress.ip_network("10.1.0.0/16"), oif=4,
                                 gateway=ipaddress.ip_address("10.0.0.1"), table=3000))
    routes.add_rule(ipr, routes.Rule(family=socket.AF_INET6, priority=1024, table=3000,
                                     iifname="cnp0"))
    route = request_of(sock.sent[0], "rtmsg")
    assert (route["family"], route["dst_len"], route["table"], route["proto"],
            route["type"]) == (socket.AF_INET, 16, 0, rtnl.RTPROT_STATIC, rtnl.RTN_UNICAST)
    assert (route.get("RTA_DST"), route.get("RTA_TABLE"), route.get("RTA_OIF"),
            route.get("RTA_GATEWAY")) == ("10.1.0.0", 3000, 4, "10.0.0.1")
    rule = request_of(sock.sent[1], "fibmsg")
    assert (rule["family"], rule["table"], rule["action"]) == (socket.AF_INET6, 252, 1)
    assert (rule.get("FRA_TABLE"), rule.get("FRA_PRIORITY"), rule.get("FRA_IIFNAME"),
            rule.get("FRA_FWMARK")) == (3000, 1024, "cnp0", None)
    with pytest.raises(ValueError):
        routes.add(ipr, routes.Route(dst=ipaddress.ip_network("fd00::/8"), oif=4,
                                     gateway=ipaddress.ip_address("10.0.0.1")))


def test_plugin_netlink_path_imports_no_iproute_and_no_asyncio() -> None:
    code = (
        "import sys\n"
        "from cnivpc.net import netns, links, routes\n"
        "with netns.iproute() as ipr:\n"
        "    links.get(ipr, 'lo'); links.addresses(ipr, 1); routes.tables_in_use(ipr)\n"
        "bad = sorted(m for m in sys.modules if m == 'asyncio' or m.startswith("
        "('asyncio.', 'pyroute2.iproute', 'pyroute2.requests', 'pyroute2.netlink.nlsocket')))\n"
        "assert not bad, bad\n"
        "assert 'pyroute2.netlink.rtnl.ifinfmsg' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
