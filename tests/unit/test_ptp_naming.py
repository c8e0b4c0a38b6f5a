"""Pure naming logic of the ptp plugin: stable names, alias and comment round trips, the
deterministic table probe, and the iptables rule builders."""

from __future__ import annotations

import hashlib
import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from cnivpc.cni.env import CONTAINER_ID_RE
from cnivpc.plugins.ptp import naming

ids = st.from_regex(CONTAINER_ID_RE, fullmatch=True).filter(lambda s: len(s) <= 64)
ifnames = st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)


@given(ids, ifnames)
def test_host_veth_name_is_stable_short_and_ours(cid: str, ifname: str) -> None:
    name = naming.host_veth_name(cid, ifname)
    assert name == naming.host_veth_name(cid, ifname)
    assert len(name) == 15 and name.startswith("cnp")
    assert naming.is_host_veth_name(name)


def test_host_veth_name_depends_on_both_parts() -> None:
    names = {naming.host_veth_name(c, i) for c in ("a", "b") for i in ("eth0", "eth1")}
    assert len(names) == 4
    assert not naming.is_host_veth_name("cnp0123")
    assert not naming.is_host_veth_name("veth0123456789a")
    assert not naming.is_host_veth_name("cnpXYZ456789abc")


@given(st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,20}", fullmatch=True), ids, ifnames)
def test_alias_round_trip(network: str, cid: str, ifname: str) -> None:
    alias = naming.veth_alias(network, cid, ifname)
    assert naming.parse_alias(alias) == (network, cid, ifname)
    assert len(alias) <= 255  # IFALIASZ - 1


def test_parse_alias_rejects_others() -> None:
    for alias in ("", "cnivpc-ptp:a:b", "other:a:b:c", "cnivpc-ptp::b:c", "cnivpc-ptp:a:b:c:d"):
        assert naming.parse_alias(alias) is None


def test_masq_chain_matches_the_reference_plugins() -> None:
    digest = hashlib.sha512(b"mynetabc123").hexdigest()
    assert naming.masq_chain("mynet", "abc123") == "CNI-" + digest[:24]
    assert len(naming.masq_chain("mynet", "abc123")) == 28


@given(st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,20}", fullmatch=True), ids)
def test_comment_round_trip(network: str, cid: str) -> None:
    comment = naming.masq_comment(network, cid)
    assert comment == f'name: "{network}" id: "{cid}"'
    assert naming.parse_masq_comment(comment) == (network, cid)


def test_parse_comment_rejects_others() -> None:
    assert naming.parse_masq_comment(None) is None
    assert naming.parse_masq_comment("NodePort Mark") is None
    assert naming.parse_masq_comment('name: "a" id: "b" extra') is None


def test_masq_rules() -> None:
    ip = ipaddress.ip_address("10.0.16.23")
    rules = naming.masq_chain_rules(ip, "c")
    assert rules == [["-d", "10.0.16.23/32", "-j", "ACCEPT", "-m", "comment", "--comment", "c"],
                     ["!", "-d", "224.0.0.0/4", "-j", "MASQUERADE",
                      "-m", "comment", "--comment", "c"]]
    v6 = naming.masq_chain_rules(ipaddress.ip_address("fd00::1"), "c")
    assert v6[0][1] == "fd00::1/128" and v6[1][2] == "ff00::/8"
    assert naming.masq_jump_rule(ip, "CNI-x", "c") == \
        ["-s", "10.0.16.23", "-j", "CNI-x", "-m", "comment", "--comment", "c"]


def test_pod_masq_rule_random_fully_only_when_supported() -> None:
    assert "--random-fully" in naming.pod_masq_rule("eth0", True)
    assert "--random-fully" not in naming.pod_masq_rule("eth0", False)
    assert naming.pod_masq_rule("eth0", False)[:4] == ["-o", "eth0", "-j", "MASQUERADE"]


def test_nodeport_rules() -> None:
    tcp, udp, restore = naming.nodeport_rules("ens5", "30000:32767", 0x2000)
    assert tcp[:6] == ["-i", "ens5", "-p", "tcp", "--dport", "30000:32767"]
    assert udp[3] == "udp"
    assert tcp[tcp.index("--set-mark") + 1] == "0x2000"
    # Replies come back from *our* veths: the restore matches our prefix, not "veth+".
    assert restore[:2] == ["-i", "cnp+"] and "--restore-mark" in restore


@given(st.integers(1, 1 << 20), st.text(max_size=20), st.integers(1, 300))
def test_table_candidates_cover_the_range_once(start: int, key: str, span: int) -> None:
    got = list(naming.table_candidates(start, key, span))
    expected = set(range(start, start + span)) - naming.RESERVED_TABLES
    assert sorted(got) == sorted(expected)
    assert got == list(naming.table_candidates(start, key, span))  # deterministic


def test_choose_table() -> None:
    first = naming.choose_table(256, "cnpabc", set())
    assert first is not None and 256 <= first < 256 + naming.TABLE_SPAN
    second = naming.choose_table(256, "cnpabc", {first})
    assert second is not None and second != first
    assert naming.choose_table(256, "k", set(range(256, 256 + 8)), span=8) is None
    # Reserved tables are never chosen, even when the range covers them.
    for key in map(str, range(50)):
        assert naming.choose_table(250, key, set(), span=8) not in naming.RESERVED_TABLES
