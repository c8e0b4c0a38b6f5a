"""``cnivpc doctor``'s cni-version check: the conflist's cniVersion against the libcni of the
container runtimes found on the node (cnivpc/cli/runtimes.py). The runtimes here are small
executables printing what the real ones print for ``--version``, on a PATH of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnivpc.cli import runtimes
from cnivpc.cli.doctor import Doctor
from cnivpc.plugins.ipam.config import IpamConf

# What each prints for --version (containerd: package name or module path first).
OUTPUTS = {
    ("containerd", "1.7.13"): "containerd github.com/containerd/containerd v1.7.13 7c3aca7a",
    ("containerd", "1.6.28"): "containerd containerd.io 1.6.28 ae07eda36dd25f8a1b98dfbf58",
    ("containerd", "2.0.0"): "containerd github.com/containerd/containerd/v2 v2.0.0 207ad71",
    ("crio", "1.29.1"): "crio version 1.29.1",
    ("crio", "1.31.0"): "crio version 1.31.0",
    ("podman", "4.3.1"): "podman version 4.3.1",
}


@pytest.fixture
def node_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty bin dir that is the whole search path (this machine's own podman is hidden)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(runtimes, "EXTRA_DIRS", ())
    return bin_dir


def install(bin_dir: Path, name: str, version: str) -> None:
    exe = bin_dir / name
    exe.write_text(f"#!/bin/sh\necho '{OUTPUTS[(name, version)]}'\n")
    exe.chmod(0o755)


def check(cni_version: str) -> tuple[bool | None, str, str]:
    doctor = Doctor(IpamConf.model_validate({"cniVersion": cni_version, "name": "cnivpc",
                                             "type": "cnivpc-ipam"}))
    doctor.cni_version()
    (found,) = doctor.checks
    assert found.name == "cni-version"
    return found.ok, found.detail, found.hint


@pytest.mark.parametrize(("name", "version", "newest"), [
    ("containerd", "1.6.28", "1.0.0"), ("containerd", "1.7.13", "1.0.0"),
    ("containerd", "2.0.0", "1.1.0"), ("crio", "1.29.1", "1.0.0"), ("crio", "1.31.0", "1.1.0"),
    ("podman", "4.3.1", "1.0.0"),
])
def test_versions_map_to_their_libcni(node_bin: Path, name: str, version: str,
                                      newest: str) -> None:
    install(node_bin, name, version)
    (found,) = runtimes.installed()
    assert found.name == name and found.text == f"{name} {version}"
    assert runtimes.newest_cni_version(found.name, found.version) == newest


def test_a_cri_runtime_too_old_for_the_conflist_fails(node_bin: Path) -> None:
    install(node_bin, "containerd", "1.7.13")
    ok, detail, hint = check("1.1.0")
    assert ok is False
    assert 'newer than containerd 1.7.13 parses (up to "1.0.0")' in detail
    assert 'set "cniVersion": "1.0.0"' in hint and "unsupported CNI result version" in hint
    assert check("1.0.0")[0] is True
    assert check("0.4.0")[0] is True


def test_containerd_2_parses_1_1(node_bin: Path) -> None:
    install(node_bin, "containerd", "2.0.0")
    assert check("1.1.0")[:2] == (True, 'conflist cniVersion "1.1.0" parses in containerd 2.0.0')


def test_the_oldest_runtime_decides(node_bin: Path) -> None:
    install(node_bin, "containerd", "2.0.0")
    install(node_bin, "crio", "1.29.1")
    ok, detail, hint = check("1.1.0")
    assert ok is False and "crio 1.29.1" in detail and "containerd" not in detail
    assert 'set "cniVersion": "1.0.0"' in hint


def test_podman_alone_is_a_note_not_a_failure(node_bin: Path) -> None:
    install(node_bin, "podman", "4.3.1")
    ok, detail, _ = check("1.1.0")
    assert ok is None and "podman 4.3.1" in detail


def test_nothing_to_compare_with(node_bin: Path) -> None:
    ok, detail, _ = check("1.1.0")
    assert ok is None and "no containerd, CRI-O or podman found" in detail


def test_an_unknown_release_is_not_guessed(node_bin: Path) -> None:
    exe = node_bin / "crio"
    exe.write_text("#!/bin/sh\necho 'crio version 2.0.0'\n")
    exe.chmod(0o755)
    ok, detail, _ = check("1.1.0")
    assert ok is None and "libcni unknown" in detail
