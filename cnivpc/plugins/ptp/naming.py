"""Pure naming and rule-building logic of the ptp plugin: everything that decides *what* the
kernel state of one attachment is called, so ADD, CHECK, DEL and GC agree on it without
storing anything. No I/O; stdlib only.

One attachment (container ID + CNI_IFNAME) owns:
- host veth ``cnp`` + 12 hex of sha256(containerID/ifname), alias
  ``cnivpc-ptp:<network>:<containerID>:<ifname>`` (how GC maps a veth back to its attachment);
- policy rule ``iif <host veth> lookup <T> priority 1024`` and table T, chosen from a
  deterministic probe sequence starting at a hash of the veth name;
- with IPv6 pod addresses, link-locals fe80::1 (host end) and fe80::2 (pod end);
- with ipMasq, nat chain ``CNI-`` + 24 hex of sha512(network + containerID) (the name the
  reference plugins use) and POSTROUTING jumps to it, commented ``name: "<n>" id: "<id>"``.
Shared by every attachment (never deleted): the NodePort CONNMARK rules, rp_filter=2 on the
host interface and rule ``fwmark <mark> lookup main priority 512``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from ..digest import sha256_hex, sha512_hex

HOST_VETH_PREFIX = "cnp"
ALIAS_PREFIX = "cnivpc-ptp"
IIF_RULE_PRIORITY = 1024
FWMARK_RULE_PRIORITY = 512
# Route tables probed per attachment: start + [0, TABLE_SPAN).
TABLE_SPAN = 4096
RESERVED_TABLES = frozenset({0, 253, 254, 255})
NODEPORT_COMMENT = "NodePort Mark"
POD_MASQ_COMMENT = "kube-proxy SNAT"
MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
# IPv6 next hops across the veth. IPv4 can be truly unnumbered because a host answers ARP for
# any of its addresses on any link; IPv6 neighbour discovery only answers for addresses of the
# receiving link. So each end gets a fixed link-local (no DAD: nothing else is on the link),
# and IPv6 routes go *via* the other end's link-local, as Calico does.
HOST_LINK_LOCAL = ipaddress.IPv6Interface("fe80::1/64")
POD_LINK_LOCAL = ipaddress.IPv6Interface("fe80::2/64")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_COMMENT_RE = re.compile(r'^name: "([^"]*)" id: "([^"]*)"$')


def host_veth_name(container_id: str, ifname: str) -> str:
    """Stable host-side veth name of one attachment (15 chars, the kernel's IFNAMSIZ-1)."""
    digest = sha256_hex(f"{container_id}/{ifname}".encode())
    return HOST_VETH_PREFIX + digest[:12]


def is_host_veth_name(name: str) -> bool:
    return (len(name) == len(HOST_VETH_PREFIX) + 12 and name.startswith(HOST_VETH_PREFIX)
            and all(c in "0123456789abcdef" for c in name[len(HOST_VETH_PREFIX):]))


def veth_alias(network: str, container_id: str, ifname: str) -> str:
    # ':' cannot occur in any part: network names and container IDs are [a-zA-Z0-9_.-],
    # and libcni rejects ':' in interface names.
    return f"{ALIAS_PREFIX}:{network}:{container_id}:{ifname}"


def parse_alias(alias: str) -> tuple[str, str, str] | None:
    """(network, containerID, ifname) of one of our aliases, else None."""
    parts = alias.split(":")
    if len(parts) != 4 or parts[0] != ALIAS_PREFIX or not all(parts[1:]):
        return None
    return parts[1], parts[2], parts[3]


def masq_chain(network: str, container_id: str) -> str:
    """The reference plugins' per-container nat chain name (``utils.FormatChainName``)."""
    return "CNI-" + sha512_hex((network + container_id).encode())[:24]


def masq_comment(network: str, container_id: str) -> str:
    return f'name: "{network}" id: "{container_id}"'


def parse_masq_comment(comment: str | None) -> tuple[str, str] | None:
    """(network, containerID) from a masq rule comment, else None."""
    match = _COMMENT_RE.match(comment or "")
    return (match.group(1), match.group(2)) if match else None


def _prefix(ip: IPAddress) -> str:
    return f"{ip}/{ip.max_prefixlen}"


def masq_chain_rules(ip: IPAddress, comment: str) -> list[list[str]]:
    """The two rules of the per-container chain for one pod IP: traffic to the pod itself is
    left alone; everything else but multicast is masqueraded to the node address."""
    tag = ["-m", "comment", "--comment", comment]
    return [["-d", _prefix(ip), "-j", "ACCEPT", *tag],
            ["!", "-d", MULTICAST[ip.version], "-j", "MASQUERADE", *tag]]


def masq_jump_rule(ip: IPAddress, chain: str, comment: str) -> list[str]:
    """The nat POSTROUTING rule sending the pod's traffic through its chain."""
    return ["-s", str(ip), "-j", chain, "-m", "comment", "--comment", comment]


def pod_masq_rule(ifname: str, random_fully: bool) -> list[str]:
    """The pod-side nat POSTROUTING rule: traffic the pod forwards out of its VPC interface
    (service traffic sent back by the per-pod table) leaves with the pod's own IP."""
    rule = ["-o", ifname, "-j", "MASQUERADE"]
    if random_fully:
        rule.append("--random-fully")  # avoids conntrack source-port races (lyft #58)
    return [*rule, "-m", "comment", "--comment", POD_MASQ_COMMENT]


def nodeport_rules(host_interface: str, ports: str, mark: int) -> list[list[str]]:
    """mangle PREROUTING: mark connections arriving for a NodePort on the host interface, and
    restore that mark on replies coming back from our veths, so rule 512 routes those replies
    by the main table instead of the pod's table."""
    tag = ["-m", "comment", "--comment", NODEPORT_COMMENT]
    marks = [["-i", host_interface, "-p", proto, "--dport", ports,
              "-j", "CONNMARK", "--set-mark", f"{mark:#x}", *tag] for proto in ("tcp", "udp")]
    restore = ["-i", HOST_VETH_PREFIX + "+", "-j", "CONNMARK", "--restore-mark", *tag]
    return [*marks, restore]


def table_candidates(start: int, key: str, span: int = TABLE_SPAN) -> Iterator[int]:
    """Every table ID in [start, start + span) once, beginning at a point fixed by ``key``
    and going up (wrapping), reserved IDs skipped. Deterministic: the same attachment probes
    the same sequence, and different attachments usually start far apart."""
    offset = int(sha256_hex(key.encode())[:8], 16) % span
    for i in range(span):
        table = start + (offset + i) % span
        if table not in RESERVED_TABLES:
            yield table


def choose_table(start: int, key: str, used: set[int], span: int = TABLE_SPAN) -> int | None:
    """The first candidate not in ``used``; None when the whole range is taken."""
    return next((t for t in table_candidates(start, key, span) if t not in used), None)
