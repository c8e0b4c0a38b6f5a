"""The CNI_* environment table (cnivpc.cni.env) and CNI_ARGS parsing (cnivpc.cni.args)."""

from __future__ import annotations

import pytest

from cnivpc.cni.args import PodRef, parse_cni_args
from cnivpc.cni.env import read_env, validate_container_id, validate_ifname
from cnivpc.cni.errors import ErrorCode, InvalidEnvironment

FULL = {
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "K8S_POD_NAME=p",
    "CNI_PATH": "/opt/cni/bin",
}


def test_reads_every_variable() -> None:
    cmd = read_env("ADD", FULL.get)
    assert (cmd.command, cmd.container_id, cmd.netns, cmd.ifname, cmd.args, cmd.path) == (
        "ADD", "abc123", "/var/run/netns/x", "eth0", "K8S_POD_NAME=p", "/opt/cni/bin")


@pytest.mark.parametrize(("command", "required"), [
    ("ADD", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
    ("CHECK", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
    # DEL may come after the netns is gone: CNI_NETNS is optional for it.
    ("DEL", ["CNI_CONTAINERID", "CNI_IFNAME"]),
])
def test_every_missing_variable_in_one_code_4_error(command: str, required: list[str]) -> None:
    with pytest.raises(InvalidEnvironment) as info:
        read_env(command, dict[str, str]().get)
    assert info.value.code == ErrorCode.INVALID_ENVIRONMENT and int(info.value.code) == 4
    for name in required:
        assert name in info.value.msg
    for name in {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"} - set(required):
        assert name not in info.value.msg
    assert "CNI_PATH" not in info.value.msg and "CNI_ARGS" not in info.value.msg


@pytest.mark.parametrize("command", ["STATUS", "GC"])
def test_status_and_gc_need_no_container(command: str) -> None:
    cmd = read_env(command, dict[str, str]().get)
    assert cmd.command == command and cmd.container_id == "" and cmd.ifname == ""


def test_missing_and_invalid_reported_together() -> None:
    env = {"CNI_CONTAINERID": "-bad", "CNI_IFNAME": "a/b"}
    with pytest.raises(InvalidEnvironment) as info:
        read_env("ADD", env.get)
    msg = info.value.msg
    assert "CNI_NETNS" in msg and "missing" in msg
    assert "CNI_CONTAINERID='-bad'" in msg and "CNI_IFNAME='a/b'" in msg


def test_empty_counts_as_missing() -> None:
    env = dict(FULL, CNI_IFNAME="")
    with pytest.raises(InvalidEnvironment, match="CNI_IFNAME"):
        read_env("ADD", env.get)


@pytest.mark.parametrize("ifname", ["eth0", "a", "x" * 15, "veth-1.2_3", "é" * 7])
def test_valid_ifnames(ifname: str) -> None:
    assert validate_ifname(ifname) is None


@pytest.mark.parametrize("ifname", ["x" * 16, ".", "..", "a/b", "a:b", "a b", "a\tb", "é" * 8])
def test_invalid_ifnames(ifname: str) -> None:
    assert validate_ifname(ifname) is not None


@pytest.mark.parametrize("cid", ["abc", "0", "a.b-c_d", "A" * 64])
def test_valid_container_ids(cid: str) -> None:
    assert validate_container_id(cid) is None


@pytest.mark.parametrize("cid", ["-abc", ".abc", "_a", "a b", "a/b", "a;b", "ab\n"])
def test_invalid_container_ids(cid: str) -> None:
    assert validate_container_id(cid) is not None


def test_netns_must_be_absolute() -> None:
    with pytest.raises(InvalidEnvironment, match="CNI_NETNS"):
        read_env("ADD", dict(FULL, CNI_NETNS="run/netns/x").get)


def test_cni_args_pairs() -> None:
    assert parse_cni_args("A=1;B=;;C=x") == {"A": "1", "B": "", "C": "x"}
    assert parse_cni_args("") == {}


# "C=x=y": libcni's LoadArgs splits a pair on every '=' and wants exactly two parts.
@pytest.mark.parametrize("raw", ["A", "A=1;B", "=1", "C=x=y"])
def test_cni_args_bad_pair_is_code_4(raw: str) -> None:
    with pytest.raises(InvalidEnvironment):
        parse_cni_args(raw)


def test_pod_ref_from_args() -> None:
    ref = PodRef.from_cni_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns;"
                               "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1")
    assert ref == PodRef("kube-system", "dns", "abc", "u-1")
    assert str(ref) == "kube-system/dns"
    assert str(PodRef.from_cni_args("")) == ""
    # what podman sends: the container's name, no namespace
    assert str(PodRef.from_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web")) == "web"
