"""Spec versions and command gating (cnivpc.cni.versions), as pure functions; the same rules
seen through the dispatcher are in test_cni_dispatch.py."""

from __future__ import annotations

import pytest

from cnivpc.cni import versions
from cnivpc.cni.errors import ErrorCode, IncompatibleVersion


def test_supported_versions_are_sorted_and_end_with_current() -> None:
    parsed = [versions.parse(v) for v in versions.SUPPORTED_VERSIONS]
    assert parsed == sorted(parsed)
    assert versions.SUPPORTED_VERSIONS[-1] == versions.CURRENT_VERSION == "1.1.0"
    assert {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"} <= set(
        versions.SUPPORTED_VERSIONS)


@pytest.mark.parametrize("bad", ["1.0", "1.0.0.0", "a.b.c", "", "1.0.-1", "v1.0.0"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        versions.parse(bad)


def test_compare_numerically_not_as_strings() -> None:
    assert versions.at_least("0.10.0", "0.4.0")
    assert not versions.at_least("0.3.1", "0.4.0")
    assert versions.at_least("1.0.0", "1.0.0")


@pytest.mark.parametrize("version", versions.SUPPORTED_VERSIONS)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
def test_gating_matrix(version: str, command: str) -> None:
    allowed = versions.at_least(version, versions.COMMAND_SINCE[command])
    if allowed:
        versions.require_supported(version, command)
        return
    with pytest.raises(IncompatibleVersion) as info:
        versions.require_supported(version, command)
    assert info.value.code == ErrorCode.INCOMPATIBLE_VERSION and int(info.value.code) == 1
    assert command in info.value.msg
    assert version in info.value.details and versions.COMMAND_SINCE[command] in info.value.details


def test_gates_are_the_spec_ones() -> None:
    assert not versions.has_check("0.3.1") and versions.has_check("0.4.0")
    assert not versions.has_status_and_gc("1.0.0") and versions.has_status_and_gc("1.1.0")
    assert not versions.has_chaining("0.2.0") and versions.has_chaining("0.3.0")


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "1.0", "junk"])
def test_unsupported_version_is_code_1(version: str) -> None:
    with pytest.raises(IncompatibleVersion) as info:
        versions.require_supported(version, "ADD")
    assert info.value.code == 1
    assert version in info.value.details
