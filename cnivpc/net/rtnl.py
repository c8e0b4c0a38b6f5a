"""A small NETLINK_ROUTE client: the requests cnivpc makes (links, addresses, routes, rules)
over a plain netlink socket, encoded and decoded with pyroute2's message classes.

Why not pyroute2's ``IPRoute``: importing ``pyroute2.iproute.linux`` costs ~120-180 ms and
~240 modules (asyncio, the mock backend, tc classes, request filters) on every plugin exec,
while the message classes alone (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``, ``fibmsg``) cost about
a third of that. The protocol part we need is small: one request, replies with its sequence
number until the ACK (or ``NLMSG_DONE`` for a dump), ``NLMSG_ERROR`` with a negative errno.

Each method takes only the keywords cnivpc uses and maps each one to its field or NLA
explicitly; anything else is a ``TypeError`` (pyroute2's encoder silently skips attributes it
does not know, so a typo would otherwise drop a part of the request). Failures raise pyroute2's
``NetlinkError`` (``code`` = errno, the second argument the kernel's extended-ACK message when
it sent one), and a dump the kernel marked inconsistent (``NLM_F_DUMP_INTR``) raises
``NetlinkDumpInterrupted`` after the whole dump was read; ``_nl.call`` and ``_nl.dump`` turn
them into the typed errors of ``net.errors`` and retry interrupted dumps.

The socket is created by the caller (``netns.netlink_socket``) in the namespace it must act in;
this module never changes namespace. Not thread-safe: one client per thread of use.

Imports nothing of cnivpc but ``net._nl``; pyroute2 (through ``_nl``) on first request only.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from . import _nl

# Netlink header and flags (linux/netlink.h).
_HEADER = struct.Struct("=IHHII")  # length, type, flags, seq, pid
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300  # ROOT | MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request is not echoed back
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR / NLMSG_DONE: extended-ACK attributes follow
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

# rtnetlink message types (linux/rtnetlink.h).
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
# The pyroute2 class that decodes each reply type we ask for.
_REPLY_CLASS = {RTM_NEWLINK: "ifinfmsg", RTM_NEWADDR: "ifaddrmsg", RTM_NEWROUTE: "rtmsg",
                RTM_NEWRULE: "fibmsg"}

IFF_UP = 0x1
RTPROT_STATIC = 4  # what pyroute2's IPRoute stamped on our routes: "proto static" in ``ip``
RTN_UNICAST = 1
RT_SCOPE_NOWHERE = 255
FR_ACT_TO_TBL = 1
RT_TABLE_UNSPEC = 0
RT_TABLE_COMPAT = 252  # fibmsg's 8-bit table field when the real one is in FRA_TABLE

REQUEST = NLM_F_REQUEST | NLM_F_ACK
CREATE = REQUEST | NLM_F_CREATE | NLM_F_EXCL  # never replace: EEXIST tells the caller
DUMP = NLM_F_REQUEST | NLM_F_DUMP  # a dump ends with NLMSG_DONE, no ACK

# Datagrams are at most ~32 KiB for dumps, but a single huge message (a link with many VFs)
# can be bigger: the receive path peeks at the real size first and grows the buffer.
RECV_BUFFER = 64 * 1024

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _family(ip: IPNetwork | IPAddress) -> int:
    return socket.AF_INET if ip.version == 4 else socket.AF_INET6


def _nested(attrs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {"attrs": attrs}


_Handlers = dict[str, Callable[..., list[Any]]]


def _dispatch(what: str, handlers: _Handlers, command: str, kwargs: dict[str, Any]
              ) -> list[Any]:
    handler = handlers.get(command)
    if handler is None:
        raise ValueError(f"unknown {what} command {command!r}")
    return handler(**kwargs)  # an unknown keyword is a TypeError


class Rtnl:
    """rtnetlink requests on one NETLINK_ROUTE socket (which this object owns and closes)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0
        self._buf = bytearray(RECV_BUFFER)
        for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            # Older kernels (< 4.12 / 4.3) lack them: plain errors, the request echoed back.
            with suppress(OSError):
                sock.setsockopt(SOL_NETLINK, option, 1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- links

    def link(self, command: str, **kwargs: Any) -> list[Any]:
        """``get`` (index= or ifname=), ``dump``, ``add``, ``set``, ``del``: see ``_link_*``."""
        handlers: _Handlers = {"get": self._link_get, "dump": self._link_dump,
                               "add": self._link_add, "set": self._link_set,
                               "del": self._link_del}
        return _dispatch("link", handlers, command, kwargs)

    def _link_get(self, *, index: int = 0, ifname: str = "") -> list[Any]:
        if bool(index) == bool(ifname):
            raise TypeError("link get needs exactly one of index= and ifname=")
        msg = self._msg("ifinfmsg", index=index)
        if ifname:
            msg["attrs"] = [("IFLA_IFNAME", ifname)]
        return self._request(msg, RTM_GETLINK, REQUEST)

    def _link_dump(self) -> list[Any]:
        return self._request(self._msg("ifinfmsg"), RTM_GETLINK, DUMP)

    def _link_add(self, *, ifname: str, kind: str, mtu: int = 0, link: int = 0,
                  net_ns_fd: int | None = None, ipvlan_mode: int | None = None,
                  peer: dict[str, Any] | None = None) -> list[Any]:
        """A ``veth`` (with ``peer``: ifname, mtu, net_ns_fd, so the peer is created directly
        in that netns) or an ``ipvlan`` slave of ``link`` (``ipvlan_mode``), itself created
        in ``net_ns_fd`` when given."""
        attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", ifname)]
        if mtu:
            attrs.append(("IFLA_MTU", mtu))
        if link:
            attrs.append(("IFLA_LINK", link))
        if net_ns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", net_ns_fd))
        if kind == "veth":
            if peer is None or ipvlan_mode is not None:
                raise TypeError("a veth needs peer= and takes no ipvlan_mode=")
            data: list[tuple[str, Any]] = [
                ("VETH_INFO_PEER", _nested(self._peer_attrs(**peer)))]
        elif kind == "ipvlan":
            if ipvlan_mode is None or peer is not None or not link:
                raise TypeError("an ipvlan needs link= and ipvlan_mode=, and takes no peer=")
            data = [("IFLA_IPVLAN_MODE", ipvlan_mode)]
        else:
            raise ValueError(f"unsupported link kind {kind!r}")
        attrs.append(("IFLA_LINKINFO", _nested([("IFLA_INFO_KIND", kind),
                                                ("IFLA_INFO_DATA", _nested(data))])))
        msg = self._msg("ifinfmsg")
        msg["attrs"] = attrs
        return self._request(msg, RTM_NEWLINK, CREATE)

    @staticmethod
    def _peer_attrs(*, ifname: str, mtu: int = 0, net_ns_fd: int | None = None
                    ) -> list[tuple[str, Any]]:
        attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", ifname)]
        if mtu:
            attrs.append(("IFLA_MTU", mtu))
        if net_ns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", net_ns_fd))
        return attrs

    def _link_set(self, *, index: int, state: str | None = None, mtu: int = 0,
                  ifalias: str | None = None, ifname: str = "") -> list[Any]:
        msg = self._msg("ifinfmsg", index=index)
        if state is not None:
            if state not in ("up", "down"):
                raise ValueError(f"link state must be 'up' or 'down', not {state!r}")
            msg["flags"] = IFF_UP if state == "up" else 0
            msg["change"] = IFF_UP
        attrs: list[tuple[str, Any]] = []
        if mtu:
            attrs.append(("IFLA_MTU", mtu))
        if ifalias is not None:
            attrs.append(("IFLA_IFALIAS", ifalias))
        if ifname:
            attrs.append(("IFLA_IFNAME", ifname))
        msg["attrs"] = attrs
        return self._request(msg, RTM_NEWLINK, REQUEST)

    def _link_del(self, *, index: int) -> list[Any]:
        return self._request(self._msg("ifinfmsg", index=index), RTM_DELLINK, REQUEST)

    # ------------------------------------------------------------------------- addresses

    def addr(self, command: str, **kwargs: Any) -> list[Any]:
        """``add`` or ``dump`` (every address of the netns; callers filter)."""
        handlers: _Handlers = {"add": self._addr_add, "dump": self._addr_dump}
        return _dispatch("addr", handlers, command, kwargs)

    def _addr_add(self, *, index: int, address: IPAddress, prefixlen: int,
                  flags: int | None = None, broadcast: ipaddress.IPv4Address | None = None
                  ) -> list[Any]:
        family = _family(address)
        msg = self._msg("ifaddrmsg", family=family, prefixlen=prefixlen, index=index)
        attrs: list[tuple[str, Any]] = [("IFA_ADDRESS", str(address))]
        if family == socket.AF_INET:
            attrs.append(("IFA_LOCAL", str(address)))  # what an IPv4 address really is
        if broadcast is not None:
            attrs.append(("IFA_BROADCAST", str(broadcast)))
        if flags is not None:
            attrs.append(("IFA_FLAGS", flags))  # 32-bit flags (IFA_F_NODAD...)
        msg["attrs"] = attrs
        return self._request(msg, RTM_NEWADDR, CREATE)

    def _addr_dump(self) -> list[Any]:
        return self._request(self._msg("ifaddrmsg"), RTM_GETADDR, DUMP)

    # ---------------------------------------------------------------------------- routes

    def route(self, command: str, **kwargs: Any) -> list[Any]:
        """``add``, ``del`` (matching dst, table, and oif/gateway when given), ``dump``
        (family=; every table)."""
        handlers: _Handlers = {"add": self._route_add, "del": self._route_del,
                               "dump": self._route_dump}
        return _dispatch("route", handlers, command, kwargs)

    def _route_msg(self, dst: IPNetwork, table: int, oif: int,
                   gateway: IPAddress | None, **fields: int) -> Any:
        if gateway is not None and gateway.version != dst.version:
            raise ValueError(f"gateway {gateway} is not of the family of {dst}")
        # The 8-bit rtm_table cannot hold tables >= 256: RTA_TABLE carries the real one.
        msg = self._msg("rtmsg", family=_family(dst), dst_len=dst.prefixlen,
                        table=table if table < 256 else RT_TABLE_UNSPEC, **fields)
        attrs: list[tuple[str, Any]] = []
        if dst.prefixlen:
            attrs.append(("RTA_DST", str(dst.network_address)))
        attrs.append(("RTA_TABLE", table))
        if oif:
            attrs.append(("RTA_OIF", oif))
        if gateway is not None:
            attrs.append(("RTA_GATEWAY", str(gateway)))
        msg["attrs"] = attrs
        return msg

    def _route_add(self, *, dst: IPNetwork, table: int, oif: int, scope: int,
                   gateway: IPAddress | None = None) -> list[Any]:
        msg = self._route_msg(dst, table, oif, gateway, scope=scope, proto=RTPROT_STATIC,
                              type=RTN_UNICAST)
        return self._request(msg, RTM_NEWROUTE, CREATE)

    def _route_del(self, *, dst: IPNetwork, table: int, oif: int = 0,
                   gateway: IPAddress | None = None) -> list[Any]:
        # Match any scope, protocol and type, as ``ip route del`` does: for IPv4 the kernel
        # reads scope 0 as "universe only", so a scope-link route would never match
        # (RT_SCOPE_NOWHERE is its wildcard); proto and type 0 are wildcards already.
        msg = self._route_msg(dst, table, oif, gateway, scope=RT_SCOPE_NOWHERE)
        return self._request(msg, RTM_DELROUTE, REQUEST)

    def _route_dump(self, *, family: int) -> list[Any]:
        return self._request(self._msg("rtmsg", family=family), RTM_GETROUTE, DUMP)

    # ----------------------------------------------------------------------------- rules

    def rule(self, command: str, **kwargs: Any) -> list[Any]:
        """``add``, ``del`` (one rule with these selectors), ``dump`` (family=)."""
        handlers: _Handlers = {"add": self._rule_add, "del": self._rule_del,
                               "dump": self._rule_dump}
        return _dispatch("rule", handlers, command, kwargs)

    def _rule_msg(self, family: int, priority: int, table: int, iifname: str,
                  fwmark: int | None) -> Any:
        msg = self._msg("fibmsg", family=family, action=FR_ACT_TO_TBL,
                        table=table if table < 256 else RT_TABLE_COMPAT)
        attrs: list[tuple[str, Any]] = [("FRA_TABLE", table), ("FRA_PRIORITY", priority)]
        if iifname:
            attrs.append(("FRA_IIFNAME", iifname))
        if fwmark is not None:
            attrs.append(("FRA_FWMARK", fwmark))
        msg["attrs"] = attrs
        return msg

    def _rule_add(self, *, family: int, priority: int, table: int, iifname: str = "",
                  fwmark: int | None = None) -> list[Any]:
        return self._request(self._rule_msg(family, priority, table, iifname, fwmark),
                             RTM_NEWRULE, CREATE)

    def _rule_del(self, *, family: int, priority: int, table: int, iifname: str = "",
                  fwmark: int | None = None) -> list[Any]:
        return self._request(self._rule_msg(family, priority, table, iifname, fwmark),
                             RTM_DELRULE, REQUEST)

    def _rule_dump(self, *, family: int) -> list[Any]:
        return self._request(self._msg("fibmsg", family=family), RTM_GETRULE, DUMP)

    # -------------------------------------------------------------------------- protocol

    @staticmethod
    def _msg(kind: str, **fields: int) -> Any:
        msg = _nl.message_class(kind)()
        for name, value in fields.items():
            msg[name] = value
        return msg

    def _request(self, msg: Any, msg_type: int, flags: int) -> list[Any]:
        """Send ``msg`` and collect the replies to it, decoded (ACKs not included)."""
        self._seq += 1
        seq = self._seq
        header = msg["header"]
        header["type"], header["flags"] = msg_type, flags
        header["sequence_number"], header["pid"] = seq, 0
        msg.encode()
        self._sock.send(msg.data)
        raw = self._replies(seq)
        decoded = []
        for reply_type, data in raw:
            reply = _nl.message_class(_REPLY_CLASS[reply_type])(data)
            reply.decode()
            decoded.append(reply)
        return decoded

    def _replies(self, seq: int) -> list[tuple[int, bytes]]:
        """The (type, bytes) of the messages answering request ``seq``, read up to its ACK,
        error or NLMSG_DONE. Messages of other sequence numbers (left over from a request
        abandoned half way) are skipped. A dump is always read to its end before an
        interruption is reported, so the socket is clean for the next request."""
        exceptions = _nl.exceptions()
        found: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            data = self._recv()
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, msg_type, flags, msg_seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size or offset + length > len(data):
                    raise exceptions.NetlinkError(
                        71, f"malformed netlink message (length {length})")  # EPROTO
                start, offset = offset, offset + ((length + 3) & ~3)
                if msg_seq != seq:
                    continue
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if msg_type in (NLMSG_ERROR, NLMSG_DONE):
                    body = data[start + _HEADER.size:start + length]
                    code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    if code > 0:
                        raise exceptions.NetlinkError(code, _extack(msg_type, flags, body))
                    if interrupted:
                        raise exceptions.NetlinkDumpInterrupted()
                    return found
                if msg_type in _REPLY_CLASS:
                    found.append((msg_type, data[start:start + length]))

    def _recv(self) -> bytes:
        """One datagram, whole: peek at its real size (MSG_TRUNC) and grow the buffer first
        when it would not fit, instead of losing the end of it."""
        size = self._sock.recv_into(self._buf, 0, socket.MSG_PEEK | socket.MSG_TRUNC)
        if size > len(self._buf):
            self._buf = bytearray(size)
        size = self._sock.recv_into(self._buf)
        return bytes(memoryview(self._buf)[:size])


def _extack(msg_type: int, flags: int, body: bytes) -> str | None:
    """The kernel's NLMSGERR_ATTR_MSG text of an error, if it sent one."""
    if not flags & NLM_F_ACK_TLVS:
        return None
    if msg_type == NLMSG_DONE:
        offset = 4
    elif flags & NLM_F_CAPPED:
        offset = 4 + _HEADER.size  # error code + the request's header only
    elif len(body) >= 4 + _HEADER.size:
        offset = 4 + ((_HEADER.unpack_from(body, 4)[0] + 3) & ~3)  # + the whole request
    else:
        return None
    while offset + 4 <= len(body):
        length, attr_type = struct.unpack_from("=HH", body, offset)
        if length < 4:
            break
        if attr_type & 0x3FFF == NLMSGERR_ATTR_MSG:
            text = body[offset + 4:offset + length].split(b"\0", 1)[0]
            return text.decode("utf-8", "replace") or None
        offset += (length + 3) & ~3
    return None
