"""The lab's VPC fabric: node network namespaces, ENI hot-plug, subnet gateways and "internet".

Owns every kernel object the lab creates, all of them inside network namespaces named
``cnl-<lab id>-<role>`` so that teardown (and the next lab after a SIGKILL) can find them by name:

* ``cnl-<id>-vpc``: the VPC router. Bridge ``br0`` is the fabric every ENI is plugged into; the
  ``.1`` of every subnet sits on it (AWS's VPC router answers at subnet base + 1). ENI ports are
  isolated from each other and the router proxy-ARPs for everything, so all traffic, even
  within a subnet, is routed here (the VPC is L3), and ``set_addresses`` makes the router
  deliver each IP to the ENI EC2 assigned it to.
* ``cnl-<id>-inet``: an "internet" host (``198.51.100.10``, TEST-NET-2) outside the VPC, linked to
  the VPC router by ``igw0``. Only sources registered as public (a node's primary private IP,
  which on AWS has a public IP / NAT mapping) are routed to it (policy routing, table 100), so
  traffic from a pod's secondary IP only reaches the internet after the node SNATs it to its
  primary IP, exactly the property cnivpc's SNAT rules exist for.
* IPv6 (always on; unused by IPv4-only labs): the router answers at ``fe80::1`` on br0 and at
  base + 1 of every subnet /64 (``add_subnet`` with an IPv6 CIDR); each node's ``eth0`` gets
  ``default via fe80::1`` (AWS's RA gives nodes the same). The VPC's IPv6 is public on AWS, so
  every VPC IPv6 source reaches the internet host (``2001:db8:ffff::10``) with its own address,
  through an *egress-only* gateway: ip6tables conntrack on ``igw0`` lets in only replies, so
  the internet cannot open a connection to anything in the VPC (the DROP rule's counter is
  :meth:`Fabric.egress_only_drops`). Addresses are delivered to the ENI holding them as for
  IPv4 (``set_addresses``: a /128 or /80 route via the ENI's EUI-64 link-local address, which
  has a permanent neighbour entry with the ENI's MAC), and only those: the router holds no
  on-link /64, so an address EC2 did not assign gets nothing. The subnet /64 is not on-link
  for nodes either (no proxy NDP): give ENI addresses as /128 and route via ``fe80::1``
  [inf].
* ``cnl-<id>-vpce``: the gateway endpoint for AWS services (``add_gateway_endpoint``): it holds
  every address of the CIDRs given (the S3/DynamoDB prefix lists), and the router sends those
  CIDRs there from any VPC source (policy table 101 at pref 900, before the public table), as a
  VPC route table with a gateway endpoint does. ``set_endpoint_route(False)`` takes that route
  away: the CIDRs are then reached over the internet (public sources only), where the internet
  host holds them too. A whoami probe tagged ``vpce`` / ``internet`` tells which one answered
  and which source it saw.
* ``cnl-<id>-<node>``: one per simulated instance. ``eth0`` is the primary ENI (its MAC, primary
  IP and subnet prefix from EC2, default route via the subnet's ``.1``). Hot-plugged ENIs are veth
  ends carrying the ENI's MAC, created straight inside the node netns, the other end a port of
  ``br0``. ``imds0`` + route ``169.254.169.254 dev imds0 src <primary IP>`` lead to
* ``cnl-<id>-<node>-md``: where the node's IMDS and EC2 endpoint listen (on 169.254.169.254), one
  routed hop away like AWS's off-box IMDS, so the PUT response hop limit works as on AWS.

Interface naming in a node: the ENI at device index N appears as ``ethN`` (Amazon Linux 2 style;
Nitro kernels with predictable names would call it ``ens5+N``). If ``ethN`` is taken, the next free
``eth%d`` is used, as the kernel's own ``eth%d`` allocation would. Plugins must find ENIs by MAC
(as VPC CNI does), never by name. A hot-plugged interface appears DOWN, without addresses, like a
fresh NIC: configuring it is cnivpc's job. MTU is 9001 (ENA's jumbo default) on every VPC link.

Ownership of a lab id is recorded in ``/run/cnivpc-lab/<id>.pid`` (pid and process start time);
the lab keeps its control socket (``<id>.sock``) and nodes' boot ids (``<id>/``) next to it.
``cleanup_stale`` removes namespaces and those files whose owner is gone (a SIGKILLed lab),
``cleanup_all`` also stops live owners (``python -m cnivpc.lab down``).

Uses the ``ip`` command (iproute2), ``ip6tables`` (the egress-only gateway) and ``setns(2)``
through ctypes; nothing else. Must not import moto, botocore, or cnivpc plugin code (the UML
tests build a fabric without any EC2).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

PREFIX = "cnl-"
NETNS_DIR = Path("/run/netns")
REGISTRY = Path("/run/cnivpc-lab")
VPC_MTU = 9001
INET_ADDR = "198.51.100.10"
INET_GW = "198.51.100.1"
INET_NET = "198.51.100.0/24"
PUBLIC_TABLE = 100
ROUTER_MAC = "02:00:5e:00:00:01"
IMDS_ADDR = "169.254.169.254"
# IPv6. The VPC router answers at fe80::1 on every link [inf: AWS's router answers at a
# link-local address and at the subnet /64's first address (base + 1), like IPv4's base + 1].
ROUTER_LL6 = "fe80::1"
INET6_ADDR = "2001:db8:ffff::10"  # the internet host over IPv6 (2001:db8::/32, documentation)
INET6_GW = "2001:db8:ffff::1"
INET6_NET = "2001:db8:ffff::/64"
# The gateway endpoint (S3, DynamoDB): a host behind the VPC router holding the AWS service
# CIDRs it is given (add_gateway_endpoint); its link to the router is a /30 of TEST-NET-1.
VPCE_GW = "192.0.2.253"
VPCE_ADDR = "192.0.2.254"
VPCE_LINK = "192.0.2.252/30"
ENDPOINT_TABLE = 101
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class FabricError(RuntimeError):
    """An ``ip`` command (or a namespace operation) failed."""


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n NS] ARGS``; return stdout. Raises FabricError with stderr on failure."""
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise FabricError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def ip_batch(lines: list[str], ns: str | None = None, force: bool = False) -> None:
    """Several ``ip`` commands in one exec (each exec costs 50-90 ms inside UML); ``force``
    goes on past failing lines and does not raise (for idempotent syncs)."""
    cmd = ["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"]
    res = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if res.returncode != 0 and not force:
        raise FabricError(f"ip -batch in {ns or 'root'}: {res.stderr.strip()}\n" + "\n".join(lines))


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a short-lived thread that has joined network namespace ``netns``.

    setns(CLONE_NEWNET) changes only the calling thread, so the lab process (and its other
    threads) stays where it is; sockets created by ``fn`` stay bound to ``netns`` for life.
    Python 3.11 has no os.setns, hence ctypes.
    """
    box: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({netns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            err.append(exc)

    t = threading.Thread(target=run, name=f"setns-{netns}")
    t.start()
    t.join()
    if err:
        raise err[0]
    return box[0]


def listen_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket bound to ``host:port`` inside ``netns``."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        return s

    return in_netns(netns, make)


def write_sysctl(netns: str, key: str, value: str) -> None:
    """Write /proc/sys/<key> as seen from ``netns`` (net.* sysctls are per namespace and are
    resolved against the writing thread's namespace)."""

    def write() -> None:
        Path("/proc/sys", key.replace(".", "/")).write_text(value + "\n")

    in_netns(netns, write)


# ---------------------------------------------------------------------------------------------
# Ownership registry and stale cleanup
# ---------------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22 (starttime) counted after the ")" that ends the command name
    return stat.rsplit(")", 1)[1].split()[19]


def _running(pid: int) -> bool:
    # A dead child stays in /proc as a zombie until its parent reaps it: that is gone, too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _owner_alive(lab_id: str) -> int | None:
    """The pid of the live process owning ``lab_id``, else None."""
    try:
        pid_s, start = (REGISTRY / f"{lab_id}.pid").read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    # pid reuse: the owner is alive only if the start time matches too
    return pid if _start_time(pid) == start and _running(pid) else None


def live_labs() -> list[str]:
    """Ids of the labs whose owning process is alive."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(f.stem for f in REGISTRY.glob("*.pid") if _owner_alive(f.stem) is not None)
    return []


def lab_namespaces() -> dict[str, list[str]]:
    """lab id -> its namespace names, for every ``cnl-*`` namespace on the host."""
    out: dict[str, list[str]] = {}
    with contextlib.suppress(FileNotFoundError):
        for name in sorted(os.listdir(NETNS_DIR)):
            if name.startswith(PREFIX) and name.count("-") >= 2:
                out.setdefault(name.split("-")[1], []).append(name)
    return out


def _delete_netns(name: str) -> None:
    ip("netns", "del", name, check=False)


def cleanup_stale() -> list[str]:
    """Delete namespaces (and registry files) of labs whose owning process is gone."""
    removed: list[str] = []
    for lab_id, names in lab_namespaces().items():
        if _owner_alive(lab_id) is None:
            for n in names:
                _delete_netns(n)
                removed.append(n)
    with contextlib.suppress(FileNotFoundError):
        for f in REGISTRY.iterdir():
            # <id>.pid, the control socket <id>.sock and the boot id directory <id>/
            if _owner_alive(f.name.split(".", 1)[0]) is None:
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)
    return removed


def cleanup_all(timeout: float = 10.0) -> list[str]:
    """Stop every live lab (SIGTERM, then SIGKILL) and remove everything any lab left."""
    with contextlib.suppress(FileNotFoundError):
        return _stop_owners([f.stem for f in REGISTRY.glob("*.pid")], timeout)
    return cleanup_stale()


def cleanup_lab(lab_id: str, timeout: float = 10.0) -> list[str]:
    """Stop one lab's owner and remove that lab's namespaces (other labs are left alone)."""
    _stop_owners([lab_id], timeout, clean=False)
    names = lab_namespaces().get(lab_id, [])
    for n in names:
        _delete_netns(n)
    for suffix in (".pid", ".sock"):
        (REGISTRY / f"{lab_id}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(REGISTRY / lab_id, ignore_errors=True)
    return names


def _stop_owners(lab_ids: list[str], timeout: float, clean: bool = True) -> list[str]:
    owners: set[int] = set()
    for lab_id in lab_ids:
        pid = _owner_alive(lab_id)
        if pid is not None and pid != os.getpid():
            owners.add(pid)
    for pid in owners:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while owners and time.monotonic() < deadline:
        owners = {p for p in owners if _running(p)}
        time.sleep(0.1)
    for pid in owners:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.1 if owners else 0)
    return cleanup_stale() if clean else []


# ---------------------------------------------------------------------------------------------
# The fabric
# ---------------------------------------------------------------------------------------------


@dataclass
class Port:
    """One plugged ENI: ``port`` on br0 in the VPC netns, ``ifname`` in the node netns."""

    key: str
    port: str
    ifname: str
    mac: str


@dataclass
class Node:
    name: str
    netns: str
    mac: str
    ip: str
    prefixlen: int
    gateway: str
    imds_netns: str  # where 169.254.169.254 lives for this node (see add_node)
    ports: dict[str, Port] = field(default_factory=dict)
    forwarding: bool = True  # net.ipv4.ip_forward at boot


class Fabric:
    """One lab's VPC: create, add subnets and nodes, hot-plug ENIs, destroy. Thread-safe."""

    def __init__(self, lab_id: str | None = None) -> None:
        self.lab_id = lab_id or secrets.token_hex(2)
        self.vpc_ns = f"{PREFIX}{self.lab_id}-vpc"
        self.inet_ns = f"{PREFIX}{self.lab_id}-inet"
        self.vpce_ns = f"{PREFIX}{self.lab_id}-vpce"
        self.endpoint_cidrs: dict[str, tuple[str, ...]] = {}  # add_gateway_endpoint()
        self._endpoint_routed = False
        self._v6_owners: dict[str, str] = {}  # set_addresses(): IPv6 address/prefix -> mac
        self.subnets: dict[str, str] = {}  # cidr -> gateway
        self.nodes: dict[str, Node] = {}
        self.extra: list[str] = []  # add_netns()
        self._owners: dict[str, str] = {}  # set_addresses(): ip -> mac
        self._lock = threading.RLock()
        self._port_seq = 0
        self._created = False

    # -- lifecycle ----------------------------------------------------------------------------

    def create(self) -> Fabric:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        (REGISTRY / f"{self.lab_id}.pid").write_text(f"{pid} {_start_time(pid)}\n")
        self._created = True
        try:
            for ns in (self.vpc_ns, self.inet_ns):
                ip("netns", "add", ns)
            ip_batch(
                [
                    "link set lo up",
                    # A fixed MAC: a bridge otherwise takes its lowest port MAC, so a hot-plug
                    # could change the router's MAC, which flushes its neighbour table
                    # (permanent entries included) and leaves stale router MACs in every node.
                    f"link add br0 address {ROUTER_MAC} type bridge",
                    f"link set br0 mtu {VPC_MTU} up",
                    f"link add igw0 type veth peer name eth0 netns {self.inet_ns}",
                    "link set igw0 up",
                    # /32 only: no connected route in main, the internet is reachable only via
                    # the public table, i.e. only from registered public sources.
                    f"addr add {INET_GW}/32 dev igw0",
                    f"route add {INET_NET} dev igw0 src {INET_GW} table {PUBLIC_TABLE}",
                    # IPv6: the router's link-local on the VPC fabric, the internet over igw0
                    # (VPC IPv6 is public: the main table, no source restriction)
                    f"addr add {ROUTER_LL6}/64 dev br0 nodad",
                    f"addr add {INET6_GW}/64 dev igw0 nodad",
                ],
                ns=self.vpc_ns,
            )
            ip_batch(
                [
                    "link set lo up",
                    f"addr add {INET_ADDR}/24 dev eth0",
                    "link set eth0 up",
                    f"route add default via {INET_GW}",
                    f"addr add {INET6_ADDR}/64 dev eth0 nodad",
                    f"route add default via {INET6_GW}",
                ],
                ns=self.inet_ns,
            )
            # The egress-only internet gateway: stateful, outbound-initiated only. A packet
            # from the internet is forwarded only as part of a connection the VPC opened.
            ip6tables(self.vpc_ns, "-A", "FORWARD", "-i", "igw0", "-m", "conntrack",
                      "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
            ip6tables(self.vpc_ns, "-A", "FORWARD", "-i", "igw0", "-j", "DROP")
            # Linux has no IPv6 twin of send_redirects=0: a router forwarding out of the port a
            # packet came in on tells the sender to go direct, which isolated ports cannot do.
            # AWS's router never redirects.
            ip6tables(self.vpc_ns, "-A", "OUTPUT", "-p", "icmpv6", "--icmpv6-type", "redirect",
                      "-j", "DROP")
            for key, value in (
                ("net.ipv4.ip_forward", "1"),
                # the VPC router sees asymmetric paths (pod traffic leaves one ENI, replies come
                # to another); AWS doesn't reverse-path filter, so neither do we
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                ("net.ipv4.conf.br0.rp_filter", "0"),
                # L3 like a VPC: ENI ports are isolated from each other, so every frame goes
                # through the router, which answers all ARP on br0 (proxy ARP back out of the
                # same interface = "private VLAN" proxy ARP), at once (proxy_delay defaults to
                # up to 0.8 s), and never tells nodes to talk directly (no redirects).
                ("net.ipv4.conf.br0.proxy_arp", "1"),
                ("net.ipv4.conf.br0.proxy_arp_pvlan", "1"),
                ("net.ipv4.neigh.br0.proxy_delay", "0"),
                ("net.ipv4.conf.all.send_redirects", "0"),
                ("net.ipv4.conf.br0.send_redirects", "0"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv6.conf.br0.accept_dad", "0"),
                # no ICMPv6 redirects either (nodes must keep sending everything here)
                ("net.ipv6.conf.all.accept_redirects", "0"),
            ):
                write_sysctl(self.vpc_ns, key, value)
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        """Delete every namespace of this lab (their links go with them) and the registry entry."""
        with self._lock:
            for node in list(self.nodes.values()):
                _delete_netns(node.netns)
                _delete_netns(node.imds_netns)
            self.nodes.clear()
            for ns in (*self.extra, self.vpce_ns, self.inet_ns, self.vpc_ns):
                _delete_netns(ns)
            self.extra.clear()
            # a namespace that was never registered in self.nodes (crash mid-add)
            for n in lab_namespaces().get(self.lab_id, []):
                _delete_netns(n)
            if self._created:
                (REGISTRY / f"{self.lab_id}.pid").unlink(missing_ok=True)
                self._created = False

    def __enter__(self) -> Fabric:
        return self if self._created else self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- topology -----------------------------------------------------------------------------

    def add_subnet(self, cidr: str) -> str:
        """Put the subnet's router address (base + 1) on the fabric bridge; return it.
        IPv4 or IPv6 (a subnet's /64: its base + 1 is where the router answers, besides
        ``fe80::1``)."""
        with self._lock:
            if cidr in self.subnets:
                return self.subnets[cidr]
            net = ipaddress.ip_network(cidr)
            gw = str(net.network_address + 1)
            if net.version == 6:
                # a /128: no connected /64, so the router has no neighbour discovery to fall back
                # on and delivers only what EC2 assigned (set_addresses), as AWS does
                ip("addr", "add", f"{gw}/128", "dev", "br0", "nodad", ns=self.vpc_ns)
            else:
                ip("addr", "add", f"{gw}/{net.prefixlen}", "dev", "br0", ns=self.vpc_ns)
            self.subnets[cidr] = gw
            return gw

    def add_node(self, name: str, *, mac: str, ip_addr: str, subnet: str,
                 public: bool = True, forwarding: bool = True) -> Node:
        """Create node netns ``cnl-<id>-<name>`` whose eth0 is the primary ENI.

        ``public``: the primary IP may reach the internet host (AWS: it has a public IP or a NAT
        gateway path). ``forwarding``: net.ipv4.ip_forward=1, as on every Kubernetes node.
        """
        with self._lock:
            gw = self.add_subnet(subnet)
            prefixlen = ipaddress.ip_network(subnet).prefixlen
            netns = f"{PREFIX}{self.lab_id}-{name}"
            md_ns = f"{netns}-md"
            node = Node(name, netns, mac.lower(), ip_addr, prefixlen, gw, md_ns,
                        forwarding=forwarding)
            ip("netns", "add", md_ns)
            self.nodes[name] = node
            self._boot(node)
            if public:
                self.set_public(ip_addr, True)
            return node

    def reboot_node(self, name: str) -> None:
        """The node's OS restarts: its netns is made anew as at boot.

        Every link in it goes (hot-plugged ENI netdevs, pods' host-side veths, so pods lose
        their network), with every address, route, rule and iptables rule; then ``eth0`` (the
        primary ENI) and ``imds0`` come back configured, as the OS's boot does. The caller
        re-plugs the ENIs still attached in EC2 (:meth:`plug`): they come back DOWN without
        addresses, as fresh NICs. The ``-md`` netns, where the lab's listening sockets live,
        stays.
        """
        with self._lock:
            node = self.nodes[name]
            # Delete the fabric ends first: a process still inside the old netns (a detached
            # refill) would keep it, and its veths on br0, alive past `ip netns del`.
            for port in node.ports.values():
                ip("link", "del", port.port, ns=self.vpc_ns, check=False)
            ip("link", "del", "imds0", ns=node.netns, check=False)
            node.ports.clear()
            _delete_netns(node.netns)
            self._boot(node)

    def _boot(self, node: Node) -> None:
        """Create the node netns with eth0 (primary ENI) and imds0 configured (add and reboot)."""
        netns, md_ns = node.netns, node.imds_netns
        ip("netns", "add", netns)
        node.ports["primary"] = self._plug_link(node, "eth0", node.mac, key="primary")
        ip_batch(
            [
                "link set lo up",
                f"link set eth0 mtu {VPC_MTU} up",
                f"addr add {node.ip}/{node.prefixlen} dev eth0",
                f"route add default via {node.gateway} dev eth0",
                # what AWS's router advertisement gives every instance
                f"route add default via {ROUTER_LL6} dev eth0",
                f"link add imds0 type veth peer name eth0 netns {md_ns}",
                "link set imds0 up",
                f"route add {IMDS_ADDR}/32 dev imds0 src {node.ip}",
            ],
            ns=netns,
        )
        # IMDS (and the lab's EC2 endpoint) live in their own netns behind `imds0`, one
        # routed hop from the node as on AWS (where they are off-box): a pod's packets are
        # *forwarded* by the node, so the token response's TTL (the hop limit) is
        # decremented on the way to a pod and a hop limit of 1 silences pods, not the node.
        ip_batch(
            [
                "link set lo up",
                f"addr add {IMDS_ADDR}/32 dev eth0",
                "link set eth0 up",
                "route add default dev eth0",
            ],
            ns=md_ns,
        )
        # replies to pod IPs: the node answers ARP for what it routes elsewhere
        write_sysctl(netns, "net.ipv4.conf.imds0.proxy_arp", "1")
        if node.forwarding:
            write_sysctl(netns, "net.ipv4.ip_forward", "1")

    def remove_node(self, name: str) -> None:
        with self._lock:
            node = self.nodes.pop(name, None)
            if node is None:
                return
            self.set_public(node.ip, False)
            _delete_netns(node.netns)  # its veth ends die with it, taking the br0 ports along
            _delete_netns(node.imds_netns)

    def add_netns(self, name: str) -> str:
        """An extra namespace ``cnl-<id>-<name>`` (e.g. a pod) that dies with this fabric."""
        netns = f"{PREFIX}{self.lab_id}-{name}"
        ip("netns", "add", netns)
        ip("link", "set", "lo", "up", ns=netns)
        with self._lock:
            self.extra.append(netns)
        return netns

    def set_public(self, addr: str, public: bool) -> None:
        """Allow (or stop) ``addr`` as a source towards the internet host."""
        rule = ["rule", "add" if public else "del", "from", f"{addr}/32",
                "lookup", str(PUBLIC_TABLE), "pref", "1000"]
        ip(*rule, ns=self.vpc_ns, check=public)

    # -- hot-plug -----------------------------------------------------------------------------

    def plug(self, node_name: str, key: str, mac: str, device_index: int) -> str:
        """Hot-plug an ENI (identified by ``key``, e.g. its ENI id) into a node; return ifname."""
        with self._lock:
            node = self.nodes[node_name]
            if key in node.ports:
                return node.ports[key].ifname
            ifname = self._free_ifname(node, device_index)
            node.ports[key] = self._plug_link(node, ifname, mac, key=key)
            return ifname

    def unplug(self, node_name: str, key: str) -> bool:
        """Remove a hot-plugged ENI's netdev; False when it was not plugged."""
        with self._lock:
            node = self.nodes.get(node_name)
            port = node.ports.pop(key, None) if node else None
            if port is None:
                return False
            # Deleting the fabric end deletes the pair, wherever the node end is now.
            ip("link", "del", port.port, ns=self.vpc_ns, check=False)
            return True

    def _free_ifname(self, node: Node, device_index: int) -> str:
        taken = set(node_links(node.netns))
        want = f"eth{device_index}"
        if want not in taken:
            return want
        n = 0
        while f"eth{n}" in taken:
            n += 1
        return f"eth{n}"

    def _plug_link(self, node: Node, ifname: str, mac: str, *, key: str) -> Port:
        self._port_seq += 1
        # br0 port names must be unique in the VPC netns and <= 15 chars (IFNAMSIZ - 1)
        port = f"p{self._port_seq}-{node.name}"[:15]
        ip_batch(
            [
                f"link add {port} mtu {VPC_MTU} type veth peer name {ifname} "
                f"address {mac.lower()} mtu {VPC_MTU} netns {node.netns}",
                f"link set {port} master br0 up",
                f"link set {port} type bridge_slave isolated on",
            ],
            ns=self.vpc_ns,
        )
        return Port(key, port, ifname, mac.lower())

    # -- delivery by EC2's address map ----------------------------------------------------------

    def set_addresses(self, owners: dict[str, str]) -> None:
        """Deliver each VPC IP to the ENI (MAC) that EC2 says owns it: ``{ip or prefix: mac}``.

        AWS's VPC never ARPs: it knows which ENI holds which private IP. With permanent
        neighbour entries the router does the same, so an IP configured on the wrong ENI (or
        answered for by another interface of the node, Linux's "ARP flux") gets no traffic, as
        on AWS. A key that is a CIDR (an IPv4 prefix EC2 delegated, ``10.0.16.32/28``) delivers
        every address in it to that ENI, as AWS does for pods holding addresses out of a /28.
        IPs not in the map fall back to ordinary ARP (the fabric-only tests use that). Only the
        difference to the previous call is applied.

        IPv6 keys (addresses and /80 prefixes) are routes (/128, /80) via the ENI's EUI-64
        link-local address, itself a permanent neighbour entry with the ENI's MAC (no
        per-address entries for the 2^48 addresses of a prefix). Unlike IPv4 there is no
        fallback: an IPv6 address EC2 did not assign is not delivered at all.
        """
        v6 = {k: m for k, m in owners.items() if ":" in k}
        owners = {k: m for k, m in owners.items() if ":" not in k}
        self._set_v6_addresses(v6)
        wanted: dict[str, str] = {}
        for key, mac in owners.items():
            if "/" in key:
                for member in ipaddress.ip_network(key):
                    wanted.setdefault(str(member), mac.lower())
            else:
                wanted[key] = mac.lower()  # an ENI's own IP wins over a prefix overlapping it
        with self._lock:
            lines: list[str] = []
            for addr in set(self._owners) - set(wanted):
                lines.append(f"neigh del {addr} dev br0")
            for addr, mac in wanted.items():
                if self._owners.get(addr) != mac:
                    lines.append(f"neigh replace {addr} lladdr {mac} dev br0 nud permanent")
            if lines:
                ip_batch(lines, ns=self.vpc_ns, force=True)
            self._owners = wanted

    def _set_v6_addresses(self, owners: dict[str, str]) -> None:
        wanted = {key: mac.lower() for key, mac in owners.items()}
        with self._lock:
            lines: list[str] = []
            for key in set(self._v6_owners) - set(wanted):
                lines.append(f"route del {key} dev br0")
            for key, mac in wanted.items():
                if self._v6_owners.get(key) == mac:
                    continue
                hop = eui64_link_local(mac)
                lines.append(f"neigh replace {hop} lladdr {mac} dev br0 nud permanent")
                lines.append(f"route replace {key} via {hop} dev br0")
            if lines:
                ip_batch(lines, ns=self.vpc_ns, force=True)
            self._v6_owners = wanted

    # -- AWS service gateway endpoint -----------------------------------------------------------

    def add_gateway_endpoint(self, cidrs: dict[str, tuple[str, ...]]) -> str:
        """Create the gateway-endpoint host holding every address of ``cidrs`` (service name ->
        CIDRs, e.g. the S3 and DynamoDB prefix lists), routed from the whole VPC; the internet
        host holds them too, for when the endpoint route is taken away. Returns its netns."""
        with self._lock:
            if self.endpoint_cidrs:
                return self.vpce_ns
            all_cidrs = [c for values in cidrs.values() for c in values]
            ip("netns", "add", self.vpce_ns)
            ip_batch(
                [
                    f"link add vpce0 type veth peer name eth0 netns {self.vpce_ns}",
                    f"addr add {VPCE_GW}/30 dev vpce0",
                    "link set vpce0 up",
                    # the CIDRs leave through the internet for public sources only (table 100)
                    *(f"route add {c} dev igw0 src {INET_GW} table {PUBLIC_TABLE}"
                      for c in all_cidrs),
                    f"rule add lookup {ENDPOINT_TABLE} pref 900",
                ],
                ns=self.vpc_ns,
            )
            local = [f"route add local {c} dev lo" for c in all_cidrs]
            ip_batch(["link set lo up", f"addr add {VPCE_ADDR}/30 dev eth0", "link set eth0 up",
                      f"route add default via {VPCE_GW}", *local], ns=self.vpce_ns)
            ip_batch(local, ns=self.inet_ns)
            self.endpoint_cidrs = {k: tuple(v) for k, v in cidrs.items()}
            self.set_endpoint_route(True)
            return self.vpce_ns

    def set_endpoint_route(self, routed: bool) -> None:
        """Route the endpoint's CIDRs to it (True, a route table with the gateway endpoint) or
        not (False: they go to the internet, like a subnet whose route table lacks it)."""
        with self._lock:
            cidrs = [c for values in self.endpoint_cidrs.values() for c in values]
            verb = "replace" if routed else "del"
            ip_batch([f"route {verb} {c} via {VPCE_ADDR} table {ENDPOINT_TABLE}" for c in cidrs],
                     ns=self.vpc_ns, force=not routed)
            self._endpoint_routed = routed

    def egress_only_drops(self) -> int:
        """Packets the egress-only gateway dropped (connections the internet tried to open)."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.vpc_ns, *_ip6tables_cmd(), "-w", "-L", "FORWARD",
             "-v", "-x", "-n"],
            capture_output=True, text=True, check=True,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "DROP" and "igw0" in parts:
                return int(parts[0])
        return 0

    # -- introspection ------------------------------------------------------------------------

    def node_ns(self, name: str) -> str:
        return self.nodes[name].netns

    def namespaces(self) -> list[str]:
        nodes = [ns for n in self.nodes.values() for ns in (n.netns, n.imds_netns)]
        vpce = [self.vpce_ns] if self.endpoint_cidrs else []
        return [self.vpc_ns, self.inet_ns, *vpce, *nodes, *self.extra]


def eui64_link_local(mac: str) -> str:
    """The EUI-64 link-local address a NIC with ``mac`` gives itself (RFC 4291 appendix A)."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = [f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2)]
    return str(ipaddress.IPv6Address("fe80::" + ":".join(groups)))


def _ip6tables_cmd() -> list[str]:
    # legacy first: nf_tables NAT/filter families are missing in the UML kernel (harness.md),
    # and the VPC netns is the lab's own, so nothing else there uses the other backend.
    return ["ip6tables-legacy"] if shutil.which("ip6tables-legacy") else ["ip6tables"]


def ip6tables(netns: str, *args: str) -> None:
    """Run ip6tables in ``netns`` (``ip netns exec``)."""
    cmd = ["ip", "netns", "exec", netns, *_ip6tables_cmd(), "-w", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise FabricError(f"{' '.join(cmd)}: {res.stderr.strip()}")


def node_links(netns: str) -> dict[str, str]:
    """ifname -> MAC of every link in ``netns`` (``ip -o link``)."""
    out: dict[str, str] = {}
    for line in ip("-o", "link", "show", ns=netns).splitlines():
        parts = line.split()
        name = parts[1].rstrip(":").split("@", 1)[0]
        mac = parts[parts.index("link/ether") + 1] if "link/ether" in parts else ""
        out[name] = mac
    return out


@contextlib.contextmanager
def fabric(lab_id: str | None = None) -> Iterator[Fabric]:
    """A created fabric, destroyed on exit."""
    f = Fabric(lab_id).create()
    try:
        yield f
    finally:
        f.destroy()
